"""Place a standard order and walk it through its life: the buyer API with ``MarketClient``.

Run against a node started with the faucet on (``hashmarket serve --faucet``)::

    export HASHMARKET_URL=http://127.0.0.1:8645
    export HASHMARKET_ACCOUNT=buyer HASHMARKET_KEY_ID=... HASHMARKET_SECRET=...
    python examples/place_order.py --price 0.00100000 --limit 0.05 --amount 0.01000000

Steps, each printed: deposit from the faucet if the balance is short, place the order, raise
its price, set its limit, refill it, show it, cancel it (its unspent budget is released).
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal

from _common import api_url, credentials_or_exit

from marketplace.client import ApiError, MarketClient, Order

SAT = Decimal("0.00000001")


def btc(value: Decimal) -> str:
    """A BTC amount as the API wants it: a plain string with 8 decimals."""
    return str(value.quantize(SAT))


def show(step: str, order: Order) -> None:
    print(
        f"{step:8} {order.id} status={order.status} price={order.price} limit={order.limit}"
        f" amount={order.amount} spent={order.spent} remaining={order.remaining}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="sha256d", help="sha256d (default) or scrypt")
    parser.add_argument("--price", default="0.00100000", help="BTC per unit/s per day")
    parser.add_argument("--raise-by", default="0.00010000", help="price increase, BTC")
    parser.add_argument("--limit", default="0.05", help="first limit, units/s (0 = none)")
    parser.add_argument("--new-limit", default="0.10", help="limit set afterwards")
    parser.add_argument("--amount", default="0.01000000", help="budget, BTC")
    parser.add_argument("--refill", default="0.00500000", help="refill amount, BTC")
    args = parser.parse_args()

    credentials = credentials_or_exit()
    with MarketClient(api_url(), credentials=credentials) as client:
        try:
            balance = client.balance()
            print(f"balance  available={balance.available} escrowed={balance.escrowed}")
            needed = Decimal(args.amount) + Decimal(args.refill)
            if Decimal(balance.available) < needed:
                moved = client.deposit(btc(needed - Decimal(balance.available)))
                print(
                    f"deposit  {moved.entry.amount} from the faucet;"
                    f" available={moved.balance.available}"
                )
            order = client.create_order(
                algorithm=args.algorithm,
                type="standard",
                price=args.price,
                limit=args.limit,
                amount=args.amount,
            )
            show("placed", order)
            new_price = btc(Decimal(order.price) + Decimal(args.raise_by))
            show("raised", client.set_price(order.id, new_price))
            show("limit", client.set_limit(order.id, args.new_limit))
            show("refilled", client.refill(order.id, args.refill))
            show("current", client.get_order(order.id))
            show("cancel", client.cancel_order(order.id))
            balance = client.balance()
            print(f"balance  available={balance.available} escrowed={balance.escrowed}")
        except ApiError as error:
            print(f"refused: {error.code} {error.message} {error.data}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
