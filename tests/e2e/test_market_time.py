"""Market time on the real program (control.md): a day of market history made to pass with
``admin.time.advance`` in well under a second, ending with the balances the same history has
in real time on trio's MockClock (``tests/marketplace_io/history.py``); a restart keeps the
market time; clients keep signing with the wall clock."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from marketplace.testing import Market, TrioMarket
from tests.marketplace_io.history import (
    DEPOSIT,
    DIFFICULTY,
    FIXED,
    LOWERED,
    SHARES,
    STANDARD,
    STEPS,
    TARGET_SHARE_INTERVAL_S,
    Outcome,
    run_on_mock_clock,
)
from tests.marketplace_io.miner import Notified, RawMiner

DAY_S = 86_400


def tag_of(job: Notified) -> str:
    """The order tag a job's coinbase carries (``/hashmarket/<tag>/``)."""
    text = bytes.fromhex(job.coinb1).decode("latin-1")
    start = text.index("/hashmarket/") + len("/hashmarket/")
    return text[start : text.index("/", start)]


async def rig(market: TrioMarket, name: str) -> RawMiner:
    stream = await trio.open_tcp_stream("127.0.0.1", market.stratum_port("sha256d"))
    miner = RawMiner(stream, timeout=10)
    await miner.login(name, f"d={DIFFICULTY}")
    return miner


def in_real_time() -> Outcome:
    """The history run in real time on trio's MockClock (its own trio run: call it in a
    thread)."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(run_on_mock_clock, clock=clock)


async def test_a_day_by_advance_ends_as_the_same_day_in_real_time() -> None:
    with trio.fail_after(120):
        expected = await trio.to_thread.run_sync(in_real_time)
        async with TrioMarket(target_share_interval=TARGET_SHARE_INTERVAL_S) as market:
            buyer = await market.buyer("buyer", deposit=DEPOSIT)
            seller = await market.buyer("seller", deposit=None)
            miners = {"seller.w1": await rig(market, "seller.w1")}
            miners["seller.w2"] = await rig(market, "seller.w2")
            start_ms = await buyer.client.market_time()
            standard = await buyer.client.create_order(
                algorithm="sha256d", type="standard", **STANDARD
            )
            fixed = await buyer.client.create_order(algorithm="sha256d", type="fixed", **FIXED)
            assert fixed.price == "1.10000000"  # the served standard price + 10%
            # The fixed order takes one worker (its limit), the other serves the standard one:
            # each worker has its order's job once it has been moved.
            serving = {w.name: w.order_id for w in await market.operator.connected_workers()}
            assert set(serving.values()) == {standard.id, fixed.id}
            for name, miner in miners.items():
                while tag_of(miner.latest) != serving[name]:
                    await miner.pump()

            lowered = iter(LOWERED)
            advancing = 0.0
            previous_s = 0
            for at_s, what in STEPS:
                # The time between two steps passes as one advance, so the second lowering
                # comes the full ten minutes after the first, as the price-down rule wants.
                started = trio.current_time()
                reached = await market.advance(at_s - previous_s)
                advancing += trio.current_time() - started
                previous_s = at_s
                # (each step also took a few ms of wall time, which market time counts too)
                assert 0 <= reached - (start_ms + at_s * 1000) < 5_000
                for miner in miners.values():
                    await miner.pump()  # the one new job an advance sends every worker
                if what == "shares":
                    for name, miner in miners.items():
                        for _ in range(SHARES):
                            assert await miner.submit(name) is True
                elif what == "lower":
                    await buyer.client.set_price(standard.id, next(lowered))

            balance = await buyer.client.balance()
            fixed_now = await buyer.client.get_order(fixed.id)
            standard_now = await buyer.client.get_order(standard.id)
            outcome = Outcome(
                buyer_available=balance.available,
                buyer_escrowed=balance.escrowed,
                seller_available=(await seller.client.balance()).available,
                fixed_status=fixed_now.status,
                fixed_spent=fixed_now.spent,
                standard_price=standard_now.price,
                standard_spent=standard_now.spent,
            )
    assert outcome == expected, (outcome, expected)
    assert outcome.fixed_status == "expired"
    assert outcome.seller_available != "0.00000000"
    # A day and a minute of market history: well under a second of wall time.
    assert advancing < 1.0, advancing


def test_a_restart_keeps_market_time_and_clients_sign_with_the_wall_clock(
    hashmarket: Market,
) -> None:
    buyer = hashmarket.buyer("alice", deposit="1.0")
    reached = hashmarket.advance(DAY_S)
    wall = buyer.client.server_time()
    assert reached - wall >= DAY_S * 1000 - 5_000
    # The client signs with its own (wall) clock: accepted a market day later.
    order = buyer.client.create_order(
        algorithm="sha256d", type="standard", price="0.001", limit="0", amount="0.01"
    )
    assert order.created_ms >= reached
    hashmarket.kill()  # a crash: the offset was journaled with the advance
    hashmarket.restart()
    assert buyer.client.market_time() >= reached
    assert buyer.client.get_order(order.id).created_ms == order.created_ms
    restored: list[dict[str, Any]] = hashmarket.events("node.restored")
    assert restored[-1]["market_offset_ms"] >= DAY_S * 1000 - 5_000
