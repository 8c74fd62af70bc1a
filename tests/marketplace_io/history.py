"""One market history, run two ways that must end with the same balances.

The history: a buyer with a standard order and a 24 h fixed order, two workers of one seller
serving one order each, three shares on each order after a minute, the standard order's
price lowered twice, ten minutes apart, three more shares on each, and the day running out.

``run_on_mock_clock`` runs it in real time on trio's ``MockClock`` over the market's own core
(engine, scheduler with its periodic settle and expire timers, in-memory journal): time
passes the way it does in a node left alone. ``tests/e2e/test_market_time.py`` runs it on a
real node driven by ``admin.time.advance``, and compares.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import trio

from marketplace.bridge import estimate_hs
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.market_time import MarketTime
from marketplace.core.model import MarketConfig, OrderStatus, OrderType, WorkerKey
from marketplace.core.money import format_btc, parse_btc, parse_speed
from marketplace.core.views import MarketViews
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm
from tests.clocks import T0, trio_clock

from .fakes import MemoryJournal

SHA = Algorithm.SHA256D
#: The share difficulty, and vardiff's target interval: a worker's start estimate.
DIFFICULTY: Final = 3e-6
TARGET_SHARE_INTERVAL_S: Final = 1.0
DEPOSIT: Final = "1"
STANDARD: Final = {"price": "1.00000000", "limit": "0", "amount": "0.01000000"}
FIXED: Final = {"limit": "0.01", "amount": "0.01000000", "duration_s": 86_400}
#: The standard order's price after each lowering (10% each, the most one step may take).
LOWERED: Final = ("0.90000000", "0.81000000")
SHARES: Final = 3

#: (seconds after the start, what happens)
STEPS: Final = (
    (60, "shares"),
    (300, "lower"),
    (900, "lower"),
    (960, "shares"),
    (86_460, "end"),
)


class Outcome(NamedTuple):
    """What the history ends with, as the API shows it."""

    buyer_available: str
    buyer_escrowed: str
    seller_available: str
    fixed_status: str
    fixed_spent: str
    standard_price: str
    standard_spent: str


async def run_on_mock_clock() -> Outcome:
    """The history in real time on trio's clock (run it under ``MockClock``, autojump)."""
    clock = trio_clock(T0)
    market = Market(config=MarketConfig(faucet=True, settle_interval_ms=10_000))
    market_time = MarketTime()
    engine = Engine(components=[market, market_time], journal=MemoryJournal(), clock=clock)
    fleet = Fleet(config=market.config)
    scheduler = MarketScheduler(
        engine=engine,
        market=market,
        fleet=fleet,
        config=SchedulerConfig(
            settle_interval_s=10,
            expire_interval_s=10,
            rebalance_interval_s=60,
            snapshot_interval_s=0,
        ),
    )
    await engine.restore()
    clock.follow(market_time)
    start = trio.current_time()
    workers = [WorkerKey(n, "seller", f"w{n}", SHA) for n in (1, 2)]
    async with trio.open_nursery() as nursery:
        await nursery.start(scheduler.run)

        def now() -> int:
            return engine.now_ms()

        def open_market() -> None:
            market.create_account(account="buyer", now_ms=now())
            market.deposit(account="buyer", amount_msat=parse_btc(DEPOSIT), now_ms=now())
            for key in workers:
                fleet.worker_joined(
                    worker=key,
                    estimate_hs=estimate_hs(DIFFICULTY, TARGET_SHARE_INTERVAL_S),
                    now_ms=now(),
                )

        await engine.execute(open_market)
        standard = await engine.execute(
            lambda: market.create_order(
                account="buyer",
                algorithm=SHA,
                type=OrderType.STANDARD,
                price_msat=parse_btc(STANDARD["price"]),
                limit_hs=0,
                amount_msat=parse_btc(STANDARD["amount"]),
                duration_s=None,
                now_ms=now(),
                fleet=fleet,
            )
        )
        fixed = await engine.execute(
            lambda: market.create_order(
                account="buyer",
                algorithm=SHA,
                type=OrderType.FIXED,
                price_msat=None,
                limit_hs=parse_speed(str(FIXED["limit"]), unit_hs=10**6),
                amount_msat=parse_btc(str(FIXED["amount"])),
                duration_s=int(FIXED["duration_s"]),
                now_ms=now(),
                fleet=fleet,
            )
        )
        lowered = iter(LOWERED)
        for at_s, what in STEPS:
            await trio.sleep_until(start + at_s)
            if what == "shares":
                for key, order_id in zip(workers, (fixed, standard), strict=True):
                    for _ in range(SHARES):
                        share = Share(
                            conn_id=key.conn_id, account=key.account, worker=key.worker,
                            algorithm=SHA, source=order_id, difficulty=DIFFICULTY,
                            accepted=True, reason=None, time_ms=now(),
                        )  # fmt: skip

                        def record(s: Share = share, o: str = order_id) -> None:
                            market.ensure_account(account=s.account, now_ms=s.time_ms)
                            market.record_share(s, order_id=o)

                        await engine.execute(record)
            elif what == "lower":
                price = parse_btc(next(lowered))
                await engine.execute(
                    lambda p=price: market.set_price(
                        account="buyer", order_id=standard, price_msat=p, now_ms=now()
                    )
                )
        nursery.cancel_scope.cancel()
    buyer = market.balance("buyer")
    views = {o.id: o for o in MarketViews(market, fleet).list_orders(account="buyer")}
    assert views[fixed].status is OrderStatus.EXPIRED
    return Outcome(
        buyer_available=format_btc(buyer.available_msat),
        buyer_escrowed=format_btc(buyer.escrowed_msat),
        seller_available=format_btc(market.balance("seller").available_msat),
        fixed_status=views[fixed].status.value,
        fixed_spent=format_btc(views[fixed].spent_msat),
        standard_price=format_btc(views[standard].price_msat),
        standard_spent=format_btc(views[standard].spent_msat),
    )
