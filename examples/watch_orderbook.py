"""Print a market's order book and statistics every few seconds (public calls: no key needed).

Run against a node::

    export HASHMARKET_URL=http://127.0.0.1:8645
    python examples/watch_orderbook.py --interval 5            # until Ctrl-C
    python examples/watch_orderbook.py --interval 2 --count 3  # three rounds, then exit
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import api_url

from marketplace.client import ApiError, MarketClient


def print_round(client: MarketClient, algorithm: str, round_no: int) -> None:
    book = client.orderbook(algorithm)
    stats = client.market_stats(algorithm)
    print(
        f"=== round {round_no} {time.strftime('%H:%M:%S')} {book.algorithm}:"
        f" {len(book.orders)} orders, {book.total_speed} {book.unit}/s in the book"
    )
    print(f"{'ORDER':12} {'TYPE':8} {'PRICE':>11} {'LIMIT':>9} {'SPEED':>9} {'WORKERS':>7}")
    for order in book.orders:
        print(
            f"{order.id:12} {order.type:8} {order.price:>11} {order.limit:>9}"
            f" {order.accepted_speed:>9} {order.workers:>7}"
        )
    rejected = sum(stats.rejected.values())
    print(
        f"stats workers={stats.workers} accepted_speed={stats.accepted_speed} {stats.unit}/s"
        f" shares_per_s={stats.shares_per_s} rejected={rejected}"
        f" active_orders={stats.active_orders} fixed_price={stats.fixed_price}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="sha256d", help="sha256d (default) or scrypt")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds")
    parser.add_argument("--count", type=int, default=None, help="stop after N rounds")
    args = parser.parse_args()

    with MarketClient(api_url()) as client:
        round_no = 0
        try:
            while args.count is None or round_no < args.count:
                if round_no:
                    time.sleep(args.interval)
                round_no += 1
                print_round(client, args.algorithm, round_no)
        except ApiError as error:
            print(f"error: {error.code} {error.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
