"""Keep one standard order's price just above the best competing bid (``AsyncMarketClient``).

Every ``--interval`` seconds the bot reads ``market.orderbook``, finds the best price among the
other standard orders and aims at ``best + --step`` (the market minimum when nobody else bids),
never above ``--max-price``:

* outbid (target above our price): raise at once (raising is allowed any time);
* far above the target: lower, but as the market allows (``market.info``): at most
  ``price_down_step_bps`` (10%) of the current price per step, and at most once per
  ``price_down_interval_s``; so a large gap is closed in several steps. The interval is the
  market's time (``server.time``'s ``market_time_ms``), not the bot's: against a test market
  whose clock an operator advances (control.md), the bot keeps to the market's rule.

Run against a node::

    export HASHMARKET_URL=http://127.0.0.1:8645
    export HASHMARKET_ACCOUNT=buyer HASHMARKET_KEY_ID=... HASHMARKET_SECRET=...
    python examples/price_bot.py --order-id o-123 --max-price 0.01000000 --rounds 100
    # or let it place its own order first:
    python examples/price_bot.py --price 0.00200000 --amount 0.01000000 --limit 0.05

It stops after ``--rounds`` rounds (default: runs until Ctrl-C).
"""

from __future__ import annotations

import argparse
import sys
from decimal import ROUND_CEILING, Decimal

import trio
from _common import api_url, credentials_or_exit

from marketplace.client import ApiError, AsyncMarketClient

SAT = Decimal("0.00000001")
BPS = 10_000


def btc(value: Decimal) -> str:
    return str(value.quantize(SAT))


def lowest_allowed(price: Decimal, step_bps: int) -> Decimal:
    """The lowest price one lowering step may reach (rounded up to a satoshi, as the market)."""
    return (price * (BPS - step_bps) / BPS).quantize(SAT, rounding=ROUND_CEILING)


class PriceBot:
    def __init__(self, client: AsyncMarketClient, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.step = Decimal(args.step)
        self.max_price = Decimal(args.max_price)
        self.order_id: str = args.order_id or ""
        self.min_price = Decimal(0)
        self.step_bps = 1000
        self.interval_s = 600
        self.last_lowered_ms: int | None = None  # market time after our last lowering

    async def setup(self) -> None:
        info = await self.client.market_info()
        rules = next(m for m in info.markets if m.algorithm == self.args.algorithm)
        self.min_price = Decimal(rules.min_price)
        self.step_bps = rules.price_down_step_bps
        self.interval_s = rules.price_down_interval_s
        print(
            f"rules: min_price={rules.min_price} lower at most {self.step_bps / 100:g}%"
            f" once per {self.interval_s}s; step={btc(self.step)} max={btc(self.max_price)}",
            flush=True,
        )
        if not self.order_id:
            balance = await self.client.balance()
            if Decimal(balance.available) < Decimal(self.args.amount):
                await self.client.deposit(self.args.amount)
            order = await self.client.create_order(
                algorithm=self.args.algorithm,
                type="standard",
                price=self.args.price,
                limit=self.args.limit,
                amount=self.args.amount,
            )
            self.order_id = order.id
            print(f"placed order {order.id} at {order.price}", flush=True)

    async def target(self) -> tuple[Decimal | None, Decimal]:
        """(best competing price or None, the price we aim at)."""
        book = await self.client.orderbook(self.args.algorithm)
        others = [
            Decimal(o.price) for o in book.orders if o.id != self.order_id and o.type == "standard"
        ]
        best = max(others) if others else None
        aim = best + self.step if best is not None else self.min_price
        return best, min(max(aim, self.min_price), self.max_price)

    async def round(self, number: int) -> bool:
        """One look at the book and at most one price change; False once the order is over."""
        order = await self.client.get_order(self.order_id)
        if order.status != "active":
            print(f"round {number}: order {order.id} is {order.status}; stopping", flush=True)
            return False
        price = Decimal(order.price)
        best, aim = await self.target()
        shown = btc(best) if best is not None else "none"
        head = f"round {number}: best other={shown} ours={order.price} target={btc(aim)}"
        if aim > price:
            changed = await self.client.set_price(order.id, btc(aim))
            print(f"{head} raise {order.price} -> {changed.price}", flush=True)
        elif aim < price:
            now_ms = await self.client.market_time()
            wait = 0.0
            if self.last_lowered_ms is not None:
                wait = (self.last_lowered_ms + self.interval_s * 1000 - now_ms) / 1000
            if wait > 0:
                print(f"{head} hold (next lowering in {wait:.1f}s)", flush=True)
                return True
            new = max(aim, lowest_allowed(price, self.step_bps))
            try:
                changed = await self.client.set_price(order.id, btc(new))
            except ApiError as error:
                retry_at = error.data.get("retry_at_ms")
                if error.code != 4090 or not isinstance(retry_at, int):
                    raise
                # Our clock reading came just before the market's: it says when, exactly.
                self.last_lowered_ms = retry_at - self.interval_s * 1000
                print(f"{head} hold (the market says not before {retry_at})", flush=True)
                return True
            # The market recorded this lowering at now_ms or a little later: one interval from
            # now_ms is at worst a little early, and then the market says when (above).
            self.last_lowered_ms = now_ms
            print(f"{head} lower {order.price} -> {changed.price}", flush=True)
        else:
            print(f"{head} keep", flush=True)
        return True

    async def run(self) -> None:
        await self.setup()
        number = 0
        while self.args.rounds is None or number < self.args.rounds:
            if number:
                await trio.sleep(self.args.interval)
            number += 1
            if not await self.round(number):
                break
        final = await self.client.get_order(self.order_id)
        print(f"final: order {final.id} price={final.price} status={final.status}", flush=True)


async def run(args: argparse.Namespace) -> int:
    async with AsyncMarketClient(api_url(), credentials=credentials_or_exit()) as client:
        try:
            await PriceBot(client, args).run()
        except ApiError as error:
            print(f"error: {error.code} {error.message} {error.data}", file=sys.stderr)
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-id", default=None, help="the order to steer (default: place one)")
    parser.add_argument("--algorithm", default="sha256d", help="sha256d (default) or scrypt")
    parser.add_argument("--step", default="0.00000100", help="how far above the best bid, BTC")
    parser.add_argument("--max-price", default="0.01000000", help="never bid above this")
    parser.add_argument("--price", default="0.00100000", help="start price of a placed order")
    parser.add_argument("--amount", default="0.01000000", help="budget of a placed order")
    parser.add_argument("--limit", default="0", help="limit of a placed order (0 = none)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    parser.add_argument("--rounds", type=int, default=None, help="stop after N rounds")
    args = parser.parse_args()
    try:
        return trio.run(run, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
