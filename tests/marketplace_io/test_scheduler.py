"""The market scheduler on an in-memory journal (no threads): settle, expire, rebalance and
snapshot timers on trio's autojump clock, the rebalance after a command that changed the book,
and the engine's commit listeners it relies on."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from marketplace.core.errors import MarketError
from marketplace.core.events import AccountCreated, Deposited
from marketplace.core.fleet import Fleet
from marketplace.core.model import Assignment, LedgerKind, OrderStatus, WorkerKey
from marketplace.engine import Committed, Engine
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from stratum.core.shares import Algorithm
from tests.clocks import ManualClock

from .fakes import MemoryJournal
from .helpers import BTC, MH, SHA, make_market, make_share, standard_order, start_engine


async def test_periodic_settle_expire_and_rebalance(autojump_clock: Any) -> None:
    config = SchedulerConfig(settle_interval_s=100, rebalance_interval_s=50, expire_interval_s=10)
    moves: list[tuple[Algorithm, list[Assignment]]] = []
    run = await start_engine(MemoryJournal(), config=config)
    engine, market, fleet, views = run.engine, run.market, run.fleet, run.views
    async with trio.open_nursery() as nursery:
        await nursery.start(run.scheduler.run)
        run.scheduler.add_rebalance_listener(lambda alg, m: moves.append((alg, m)))
        started = trio.current_time()

        def fund() -> None:
            market.create_account(account="buyer", now_ms=engine.now_ms())
            market.deposit(account="buyer", amount_msat=BTC, now_ms=engine.now_ms())

        await engine.execute(fund)
        key = WorkerKey(1, "seller", "rig", SHA)
        fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=engine.now_ms())
        # Creating an order changes the book: the scheduler rebalances at once.
        order = await engine.execute(
            lambda: standard_order(run, duration_s=300, now_ms=engine.now_ms())
        )
        assert moves == [(SHA, [Assignment(key, order.id)])]
        for _ in range(5):
            share = make_share(key, source=order.id, time_ms=engine.now_ms(), difficulty=0.001)
            await engine.execute(lambda s=share: market.record_share(s, order_id=order.id))
        assert trio.current_time() - started < 50
        assert not [e for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE]
        await trio.sleep_until(started + 101)  # the first settlement period is over
        charges = [e for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE]
        assert len(charges) == 1
        earnings = [e for e in market.ledger("seller") if e.kind is LedgerKind.EARNING]
        assert sum(e.amount_msat for e in earnings) > 0
        assert views.get_order(account="buyer", order_id=order.id).status is OrderStatus.ACTIVE
        await trio.sleep_until(started + 311)  # the order's duration is over
        view = views.get_order(account="buyer", order_id=order.id)
        assert view.status is OrderStatus.EXPIRED
        assert moves[-1] == (SHA, [Assignment(key, None)])
        # A worker joining outside any command is picked up by the periodic tick.
        second = await engine.execute(lambda: standard_order(run, now_ms=engine.now_ms()))
        assert moves[-1] == (SHA, [Assignment(key, second.id)])
        other = WorkerKey(2, "seller", "rig2", SHA)
        fleet.worker_joined(worker=other, estimate_hs=MH, now_ms=engine.now_ms())
        assert fleet.assignment(other) is None
        await trio.sleep(51)
        assert fleet.assignment(other) == second.id
        assert moves[-1] == (SHA, [Assignment(other, second.id)])
        run.check()
        nursery.cancel_scope.cancel()


async def test_the_scheduler_snapshots_once_enough_events_have_been_journaled(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    config = SchedulerConfig(snapshot_interval_s=10, snapshot_min_events=3, history_sample_s=0)
    run = await start_engine(journal, config=config)
    engine, market = run.engine, run.market
    now = engine.now_ms
    async with trio.open_nursery() as nursery:
        await nursery.start(run.scheduler.run)
        await engine.execute(lambda: market.create_account(account="a", now_ms=now()))
        await trio.sleep(11)
        assert await journal.latest_snapshot() is None  # 1 event: not worth it yet
        for _ in range(3):
            await engine.execute(lambda: market.deposit(account="a", amount_msat=BTC, now_ms=now()))
        await trio.sleep(10)
        # Taken at the first tick after the 4th event, covering exactly the events before it.
        stored = await journal.latest_snapshot()
        assert stored is not None
        assert stored.seq == 4 == journal.last_seq
        assert engine.events_since_snapshot == 0
        nursery.cancel_scope.cancel()
    # The snapshot restores the same market, with nothing left to replay.
    again = await start_engine(journal)
    assert again.market.encode_state() == market.encode_state()
    assert engine.events_journaled == 4


async def test_a_rebalance_follows_book_changes_only(autojump_clock: Any) -> None:
    run = await start_engine(MemoryJournal())
    engine, market, fleet = run.engine, run.market, run.fleet
    rebalances: list[list[Assignment]] = []

    def listener(algorithm: Algorithm, moves: list[Assignment]) -> None:
        rebalances.append(moves)

    run.scheduler.add_rebalance_listener(listener)
    key = WorkerKey(1, "seller", "rig", SHA)
    fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=engine.now_ms())

    def fund() -> None:
        market.create_account(account="buyer", now_ms=engine.now_ms())
        market.deposit(account="buyer", amount_msat=BTC, now_ms=engine.now_ms())

    await engine.execute(fund)
    share = make_share(key, source="", time_ms=engine.now_ms())
    await engine.execute(lambda: market.record_share(share, order_id=None))
    # Accounts, money and shares cannot move a worker: the idle worker stays where it is.
    assert rebalances == []
    assert fleet.assignment(key) is None
    order = await engine.execute(lambda: standard_order(run, now_ms=engine.now_ms()))
    assert rebalances == [[Assignment(key, order.id)]]
    await engine.execute(
        lambda: market.cancel(account="buyer", order_id=order.id, now_ms=engine.now_ms())
    )
    assert rebalances[-1] == [Assignment(key, None)]
    # A refused command emits nothing, so nothing is heard and nothing moves.
    with pytest.raises(MarketError):
        await engine.execute(
            lambda: market.cancel(account="buyer", order_id=order.id, now_ms=engine.now_ms())
        )
    assert len(rebalances) == 2
    # A listener removed hears nothing more; the scheduler still rebalances.
    run.scheduler.remove_rebalance_listener(listener)
    second = await engine.execute(lambda: standard_order(run, now_ms=engine.now_ms()))
    assert len(rebalances) == 2
    assert fleet.assignment(key) == second.id


async def test_request_rebalance_moves_workers_before_the_tick(autojump_clock: Any) -> None:
    config = SchedulerConfig(rebalance_interval_s=3600)
    run = await start_engine(MemoryJournal(), config=config)
    engine, fleet = run.engine, run.fleet
    async with trio.open_nursery() as nursery:
        await nursery.start(run.scheduler.run)
        await engine.execute(lambda: run.market.create_account(account="buyer", now_ms=0))
        await engine.execute(lambda: run.market.deposit(account="buyer", amount_msat=BTC, now_ms=0))
        order = await engine.execute(lambda: standard_order(run, now_ms=engine.now_ms()))
        key = WorkerKey(1, "seller", "rig", SHA)
        fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=engine.now_ms())
        started = trio.current_time()
        run.scheduler.request_rebalance()
        await trio.sleep(1)
        assert fleet.assignment(key) == order.id
        assert trio.current_time() - started < 3600
        nursery.cancel_scope.cancel()


async def test_the_engine_tells_commit_listeners_what_became_durable() -> None:
    journal = MemoryJournal()
    market = make_market()
    engine = Engine(components=[market], journal=journal, clock=ManualClock(7))
    heard: list[tuple[int, list[Committed]]] = []
    engine.add_commit_listener(lambda events: heard.append((journal.last_seq, events)))
    await engine.restore()
    await engine.execute(lambda: market.create_account(account="a", now_ms=1))
    await engine.execute(lambda: market.deposit(account="a", amount_msat=5, now_ms=2))
    await engine.execute(lambda: market.balance("a"))  # emits nothing: nobody is told
    assert heard == [
        (1, [Committed("market", AccountCreated(account="a", time_ms=1))]),
        (2, [Committed("market", Deposited(account="a", amount_msat=5, time_ms=2))]),
    ]


async def test_the_scheduler_needs_the_engines_market_and_a_restore() -> None:
    journal = MemoryJournal()
    market = make_market()
    engine = Engine(components=[market], journal=journal)
    with pytest.raises(ValueError, match="does not run this market"):
        MarketScheduler(engine=engine, market=make_market(), fleet=Fleet(config=market.config))
    scheduler = MarketScheduler(engine=engine, market=market, fleet=Fleet(config=market.config))
    with pytest.raises(RuntimeError, match="restore"):
        await scheduler.run()
