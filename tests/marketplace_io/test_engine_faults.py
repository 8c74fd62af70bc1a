"""The engine through storage faults, on the in-memory journal that fails on cue (no threads,
autojump clock): a failed batch fails every waiter and memory goes back to the journal; while
degraded, commands are refused at once and reads see the journal; the store is retried on
the schedule and commands resume by themselves; a snapshot that fails degrades nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

from marketplace.core.invariants import check_invariants
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind, WorkerKey
from marketplace.durability import RetryPolicy, StorageHealth, StorageState, StorageUnavailable
from marketplace.engine import Engine
from marketplace.scheduler import SchedulerConfig

from .fakes import MemoryJournal
from .helpers import (
    BTC,
    MH,
    SHA,
    Running,
    make_market,
    make_share,
    standard_order,
    start_engine,
)


async def replayed(journal: MemoryJournal) -> Market:
    """What a restart would hold: the journal folded into a fresh market."""
    market = make_market()
    async for entry in journal.replay():
        market.apply(Market.decode_event(entry.body))
    return market


async def until(health: StorageHealth, state: StorageState, *, within_s: float = 60) -> None:
    """Wait (on trio's clock, bounded) until ``health`` is in ``state``."""
    with trio.fail_after(within_s):
        while health.state is not state:
            await health.wait_changed()


async def mended(journal: MemoryJournal, engine: Engine, *, within_s: float = 60) -> None:
    """Mend the store and wait until the engine has found out; memory is the journal's."""
    journal.mend_store()
    await until(engine.health, StorageState.HEALTHY, within_s=within_s)
    market = engine.components["market"]
    assert market.encode_state() == (await replayed(journal)).encode_state()


async def let_pass(seconds: float) -> None:
    """Let ``seconds`` of trio's autojump clock pass (virtual time: the engine's retry timers
    run in between, in order; no wall time is spent and nothing is waited for by luck)."""
    await trio.sleep(seconds)


def deposit(run: Running, amount_msat: int = 1) -> Callable[[], None]:
    """A command that emits an event (so it reaches the store)."""
    return lambda: run.market.deposit(account="buyer", amount_msat=amount_msat, now_ms=1)


async def refused(fn: Callable[[], Any], engine: Engine) -> StorageUnavailable:
    with pytest.raises(StorageUnavailable) as caught:
        await engine.execute(fn)
    return caught.value


@asynccontextmanager
async def serving(journal: MemoryJournal) -> AsyncIterator[Running]:
    """A restored engine, funded buyer, its scheduler and the engine's fault service."""
    run = await start_engine(journal)
    market, engine = run.market, run.engine

    def fund() -> None:
        market.create_account(account="buyer", now_ms=engine.now_ms())
        market.deposit(account="buyer", amount_msat=BTC, now_ms=engine.now_ms())

    await engine.execute(fund)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        yield run
        nursery.cancel_scope.cancel()


async def test_a_failed_batch_fails_every_waiter_and_memory_goes_back_to_the_journal(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        market, engine = run.market, run.engine
        held = run.views  # the API holds views over these very components
        journal.break_store()
        outcomes: list[str] = []

        async def deposit(amount: int) -> None:
            try:
                await engine.execute(
                    lambda: market.deposit(account="buyer", amount_msat=amount, now_ms=1)
                )
            except StorageUnavailable as exc:
                outcomes.append(exc.cause)

        async def order() -> None:
            try:
                await engine.execute(lambda: standard_order(run, now_ms=1))
            except StorageUnavailable as exc:
                outcomes.append(exc.cause)

        async with trio.open_nursery() as nursery:
            # One batch and the ones queued behind it: every command has already applied its
            # events in memory when the store fails them.
            for amount in (1, 2, 3):
                nursery.start_soon(deposit, amount)
            nursery.start_soon(order)
        assert outcomes == ["database or disk is full (injected)"] * 4
        await until(engine.health, StorageState.DEGRADED, within_s=5)
        assert market.encode_state() == (await replayed(journal)).encode_state()
        assert market.balance("buyer").available_msat == BTC
        assert held.list_orders(account="buyer") == []


async def test_while_degraded_commands_are_refused_before_they_run(autojump_clock: Any) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine = run.engine
        journal.break_store()
        await refused(deposit(run), engine)
        ran: list[int] = []
        await until(engine.health, StorageState.DEGRADED, within_s=0.5)
        refusal = await refused(lambda: ran.append(1), engine)
        assert ran == []
        assert engine.health.readable
        assert 0 < refusal.retry_after_ms <= 1000  # the first retry comes 1 s after the failure
        assert engine.snapshot() is False  # no snapshot of a failing store either


async def test_the_store_is_retried_on_the_schedule_and_commands_resume_by_themselves(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    with capture_logs() as logs:
        async with serving(journal) as run:
            engine = run.engine
            journal.break_store()
            failed_at = trio.current_time()
            await refused(deposit(run), engine)
            await let_pass(100)
            gaps = [round(t - failed_at, 3) for t in journal.probed_at]
            # 1 s, doubling, at most 30 s: tries at 1, 3, 7, 15, 31, 61, 91 s.
            assert gaps == [1, 3, 7, 15, 31, 61, 91]
            assert not engine.health.ready
            await mended(journal, engine, within_s=31)
            recovered_at = trio.current_time()
            assert round(recovered_at - failed_at, 3) == 121
            await engine.execute(
                lambda: run.market.deposit(account="buyer", amount_msat=5, now_ms=2)
            )
            assert run.market.balance("buyer").available_msat == BTC + 5
    degraded = [e for e in logs if e["event"] == "journal.degraded"]
    recovered = [e for e in logs if e["event"] == "journal.recovered"]
    assert [e["cause"] for e in degraded] == ["database or disk is full (injected)"]
    assert recovered[0]["cause"] == "database or disk is full (injected)"
    assert recovered[0]["duration_s"] == 121


def test_the_retry_schedule_doubles_from_one_second_to_thirty() -> None:
    policy = RetryPolicy()
    assert [policy.delay_s(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    with pytest.raises(ValueError, match="first_s"):
        RetryPolicy(first_s=0)


async def test_a_store_that_fails_again_soon_continues_the_schedule(autojump_clock: Any) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine = run.engine
        for _ in range(3):
            journal.break_store()
            failed_at = trio.current_time()
            journal.probed_at.clear()
            await refused(deposit(run), engine)
            await let_pass(0.1)  # mended a moment after it failed, not in the same instant
            await mended(journal, engine)
        # The third failure came right after the second recovery: its first try waited 4 s.
        assert [round(t - failed_at, 3) for t in journal.probed_at] == [4]
        assert engine.health.episodes == 3
        await let_pass(31)  # a quiet spell resets the schedule
        journal.break_store()
        failed_at = trio.current_time()
        journal.probed_at.clear()
        await refused(deposit(run), engine)
        await mended(journal, engine)
        assert [round(t - failed_at, 3) for t in journal.probed_at] == [1]


async def test_a_snapshot_that_cannot_be_written_degrades_nothing(autojump_clock: Any) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine = run.engine
        journal.break_snapshots()
        assert engine.snapshot() is True
        await engine.execute(lambda: run.market.deposit(account="buyer", amount_msat=7, now_ms=3))
        assert engine.health.ready
        assert journal.snapshot is None
        assert journal.probed_at == []


async def test_a_journal_that_cannot_be_read_keeps_reads_refused_until_it_can(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine = run.engine
        journal.break_store()
        journal.break_reads()
        await refused(deposit(run), engine)
        await let_pass(10)
        # Memory may hold what the journal does not: nothing may be served from it.
        assert engine.health.state is StorageState.RESTORING
        assert not engine.health.readable
        journal.break_reads(None)
        await mended(journal, engine)


async def test_a_failed_commit_that_the_store_finished_later_is_in_memory_too(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine = run.engine
        before = journal.last_seq
        # The answer to the commit was lost, but the database finished it after the rebuild.
        journal.break_store(lands=True)
        refusal = await refused(
            lambda: run.market.deposit(account="buyer", amount_msat=9, now_ms=4), engine
        )
        assert "full" in refusal.cause
        await until(engine.health, StorageState.DEGRADED)
        assert journal.last_seq == before
        await mended(journal, engine)
        assert run.market.balance("buyer").available_msat == BTC + 9


async def test_the_fleet_holds_no_worker_for_an_order_the_rebuild_took_away(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    async with serving(journal) as run:
        engine, scheduler, fleet = run.engine, run.scheduler, run.fleet
        worker = WorkerKey(1, "seller", "rig", SHA)
        fleet.worker_joined(worker=worker, estimate_hs=MH, now_ms=engine.now_ms())
        journal.break_store()
        doomed: list[str] = []

        def order_then_connect() -> None:
            doomed.append(standard_order(run, now_ms=engine.now_ms()).id)
            # A miner connecting while the batch is in flight rebalances onto the new order.
            scheduler.rebalance()

        await refused(order_then_connect, engine)
        assert fleet.assignment(worker) == doomed[0]
        await until(engine.health, StorageState.DEGRADED, within_s=5)
        assert fleet.assignment(worker) is None  # still connected, idle
        assert fleet.connected(SHA) == 1
        check_invariants(run.market, fleet)


async def test_the_scheduler_skips_what_the_store_refuses_and_goes_on(
    autojump_clock: Any,
) -> None:
    journal = MemoryJournal()
    config = SchedulerConfig(settle_interval_s=10, expire_interval_s=1, rebalance_interval_s=5)
    run = await start_engine(journal, config=config)
    engine, market, fleet = run.engine, run.market, run.fleet
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        await nursery.start(run.scheduler.run)
        await engine.execute(lambda: market.create_account(account="buyer", now_ms=0))
        await engine.execute(lambda: market.deposit(account="buyer", amount_msat=BTC, now_ms=0))
        order = await engine.execute(lambda: standard_order(run, now_ms=engine.now_ms()))
        worker = WorkerKey(1, "seller", "rig", SHA)
        fleet.worker_joined(worker=worker, estimate_hs=MH, now_ms=engine.now_ms())
        run.scheduler.rebalance()
        share = make_share(worker, source=order.id, time_ms=engine.now_ms(), difficulty=0.01)
        await engine.execute(lambda: market.record_share(share, order_id=order.id))
        journal.break_store()
        with pytest.raises(StorageUnavailable):
            await engine.execute(deposit(run))
        await let_pass(25)  # two settlements and many expiries refused: the node goes on
        assert not [e for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE]
        assert fleet.assignment(worker) == order.id  # the ephemeral rebalance goes on too
        await mended(journal, engine)
        await let_pass(10)  # the next settlement charges what waited
        assert [e for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE]
        nursery.cancel_scope.cancel()
