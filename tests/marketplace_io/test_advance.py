"""Market time: the journaled offset, the clock that follows it, and the advance that steps
through everything due (order ends, settlements) in time order, on an in-memory journal."""

from __future__ import annotations

import pytest
import trio

from marketplace.clock import Clock
from marketplace.control.advance import MAX_ADVANCE_S, TimeMachine
from marketplace.core.errors import InvalidArgument
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.market_time import MarketTime, MarketTimeState, TimeAdvanced
from marketplace.core.model import LedgerKind, OrderStatus, WorkerKey
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler
from tests.clocks import T0, ManualClock

from .fakes import MemoryJournal
from .helpers import BTC, MH, SHA, Running, make_market, make_share, standard_order

DAY_MS = 86_400_000


class Machine(Running):
    """An engine over a market and its market time, the clock following it, and the
    advance."""

    def __init__(self, *, engine: Engine, scheduler: MarketScheduler, journal: MemoryJournal,
                 market_time: MarketTime, clock: ManualClock) -> None:  # fmt: skip
        super().__init__(engine=engine, scheduler=scheduler, journal=journal)
        self.market_time = market_time
        self.clock = clock
        self.machine = TimeMachine(
            clock=clock, engine=engine, market_time=market_time, scheduler=scheduler
        )


async def machine(journal: MemoryJournal | None = None, *, clock: ManualClock | None = None,
                  market: Market | None = None) -> Machine:  # fmt: skip
    journal = journal or MemoryJournal()
    clock = clock or ManualClock()
    market = market or make_market()
    market_time = MarketTime()
    engine = Engine(components=[market, market_time], journal=journal, clock=clock)
    fleet = Fleet(config=market.config)
    scheduler = MarketScheduler(engine=engine, market=market, fleet=fleet)
    await engine.restore()
    clock.follow(market_time)
    clock.add_jump_listener(fleet.clock_jumped)
    return Machine(engine=engine, scheduler=scheduler, journal=journal,
                   market_time=market_time, clock=clock)  # fmt: skip


def test_market_time_only_moves_forward_and_folds_to_the_latest() -> None:
    timeline = MarketTime()
    timeline.advance(offset_ms=5_000, time_ms=T0 + 5_000)
    timeline.advance(offset_ms=5_000, time_ms=T0 + 5_000)  # nothing new: no event
    assert timeline.drain_events() == [TimeAdvanced(offset_ms=5_000, time_ms=T0 + 5_000)]
    with pytest.raises(InvalidArgument, match="only moves forward"):
        timeline.advance(offset_ms=4_999, time_ms=T0 + 9_000)
    with pytest.raises(InvalidArgument):
        timeline.advance(offset_ms=6_000, time_ms=T0)
    assert timeline.drain_events() == []
    replayed = MarketTime()
    replayed.apply(TimeAdvanced(offset_ms=5_000, time_ms=T0 + 5_000))
    assert replayed.export_state() == MarketTimeState(offset_ms=5_000, time_ms=T0 + 5_000)
    restored = MarketTime()
    restored.import_state(restored.decode_state(replayed.encode_state()))
    assert restored.offset_ms == 5_000
    with pytest.raises(RuntimeError):
        restored.import_state(MarketTimeState(offset_ms=0, time_ms=0))


def test_the_clock_adds_the_offset_pins_and_tells_jumps() -> None:
    clock = ManualClock()
    jumps: list[int] = []
    clock.add_jump_listener(jumps.append)
    timeline = MarketTime()
    clock.follow(timeline)
    assert clock.now_ms() == clock.wall_ms() == T0
    timeline.advance(offset_ms=60_000, time_ms=T0 + 60_000)
    assert clock.now_ms() == T0 + 60_000
    assert clock.wall_ms() == T0
    clock.pin(T0 + 90_000)
    clock.advance(5_000)  # wall time moves on; a pinned market time does not
    assert clock.now_ms() == T0 + 90_000
    assert clock.pinned
    with pytest.raises(ValueError, match="cannot go back"):
        clock.pin(T0 + 89_999)
    clock.release()
    assert clock.now_ms() == T0 + 65_000
    assert jumps == [30_000]
    clock.remove_jump_listener(jumps.append)
    clock.pin(T0 + 100_000)
    assert jumps == [30_000]
    # A plain system clock: market time is wall time until something is followed.
    system = Clock()
    assert abs(system.now_ms() - system.wall_ms()) < 1000


async def test_a_day_ends_a_24h_order_settles_and_journals_the_offset() -> None:
    run = await machine()
    engine, market, fleet = run.engine, run.market, run.fleet
    key = WorkerKey(1, "seller", "rig", SHA)
    fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=engine.now_ms())

    def place() -> str:
        market.create_account(account="buyer", now_ms=engine.now_ms())
        market.deposit(account="buyer", amount_msat=BTC, now_ms=engine.now_ms())
        return standard_order(run, duration_s=86_400, now_ms=engine.now_ms()).id

    order_id = await engine.execute(place)
    await engine.execute(run.scheduler.rebalance)
    assert fleet.assignment(key) == order_id
    for _ in range(3):
        share = make_share(key, source=order_id, time_ms=engine.now_ms(), difficulty=0.001)
        await engine.execute(lambda s=share: market.record_share(s, order_id=order_id))
        fleet.share_accepted(worker=key, difficulty=0.001, time_ms=share.time_ms)  # as the bridge
    speed = fleet.worker_speed(key, now_ms=engine.now_ms())
    assert speed > MH  # the shares count

    reached = await run.machine.advance(86_400 + 60)

    assert reached == run.clock.now_ms() == T0 + (86_400 + 60) * 1000
    view = run.views.get_order(account="buyer", order_id=order_id)
    assert view.status is OrderStatus.EXPIRED
    assert view.ended_ms == T0 + DAY_MS  # ended at exactly its end, not at the next tick
    charges = [e for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE]
    assert [e.time_ms for e in charges] == [T0]  # the waiting spend, settled at once
    assert market.balance("buyer").escrowed_msat == 0
    assert market.balance("seller").available_msat > 0
    # The offset is journaled with the last step, and a replay finds it.
    assert run.market_time.offset_ms == (86_400 + 60) * 1000
    again = await machine(run.journal, clock=ManualClock())
    assert again.clock.now_ms() == reached
    # The jump is not time the worker was idle: its estimate is what it was.
    assert fleet.worker_speed(key, now_ms=engine.now_ms()) == speed


async def test_steps_in_time_order_and_bounded_by_the_orders() -> None:
    run = await machine()
    engine, market = run.engine, run.market
    await engine.execute(lambda: market.create_account(account="buyer", now_ms=T0))
    await engine.execute(lambda: market.deposit(account="buyer", amount_msat=BTC, now_ms=T0))
    durations = [3_600, 60, 600]
    ids = []
    for duration in durations:
        view = await engine.execute(
            lambda d=duration: standard_order(run, duration_s=d, now_ms=engine.now_ms())
        )
        ids.append(view.id)
    journaled = len(run.journal.entries)

    await run.machine.advance(400 * 86_400)

    ended = {
        order_id: run.views.get_order(account="buyer", order_id=order_id).ended_ms
        for order_id in ids
    }
    assert ended == {ids[i]: T0 + durations[i] * 1000 for i in range(3)}
    # One step per end plus the target, all in one command: what ended, then the offset.
    new = run.journal.entries[journaled:]
    assert [e.component for e in new] == ["market"] * 3 + ["clock"]
    ended_at = [Market.decode_event(e.body).time_ms for e in new[:3]]
    assert ended_at == sorted(ended_at)
    (advanced,) = [MarketTime.decode_event(e.body) for e in new[3:]]
    assert advanced.time_ms == T0 + MAX_ADVANCE_S * 1000


async def test_bad_seconds_are_refused_and_change_nothing() -> None:
    run = await machine()
    for seconds in (0, -1, MAX_ADVANCE_S + 1):
        with pytest.raises(InvalidArgument, match="400 days"):
            await run.machine.advance(seconds)
    assert run.journal.entries == []
    assert run.clock.now_ms() == T0


async def test_an_advance_finishes_even_when_its_caller_is_cancelled() -> None:
    run = await machine()
    with trio.CancelScope() as scope:
        scope.cancel()
        await run.machine.advance(600)
    assert run.clock.now_ms() == T0 + 600_000
    assert not run.clock.pinned
