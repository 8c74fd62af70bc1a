"""The engine: runs commands against the durable components and journals what they emit.

Theory of operation
-------------------
The components (the ``Market``, the API's ``KeyRing``...) are pure and synchronous; they change
state only by applying events, which they also queue in their outbox. ``execute(fn)`` is the
one way to change them: it waits for room in the journal's queue, then, with no checkpoint in
between (so atomically under trio), runs ``fn()``, drains every component's outbox and enqueues
the events in the journal, and finally waits until their transaction has committed. Because
running and enqueueing are one atomic step, the journal's order is exactly the order in which
the events were applied in memory, and replaying it (``restore``) rebuilds the same state. A
``MarketError`` (any exception) from ``fn`` propagates; a command that refuses emits nothing,
so nothing is journaled. Many concurrent ``execute`` calls share a commit (the journal's group
commit), which is what makes one durable share per Stratum reply affordable.

The engine also drives the market's clock-based work, each step through ``execute``: settling
every settle interval, expiring orders whose duration is over, and rebalancing the allocation
on a periodic tick and right after any command that changed the order book. Rebalancing is
ephemeral (it emits no events); its moves go to the listeners (the Stratum bridges), which push
the moved workers their new jobs. Time comes from an injected ``clock`` (milliseconds), so tests
can run the engine on trio's ``MockClock``.

Snapshots bound the restart time: ``snapshot()`` encodes every component's state and queues it
in the journal behind the events that made it (atomically, like a command), and ``run`` takes
one every ``snapshot_interval_s`` once ``snapshot_min_events`` events have been journaled since
the last (the node takes one more on a clean shutdown). ``restore`` loads the newest snapshot,
if every component can read it, and replays only the events after it; otherwise (no snapshot,
one from another format, a component that cannot snapshot) it replays the whole journal, which
gives the same state, only slower.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import msgspec
import structlog
import trio

from marketplace.core.events import (
    AccountCreated,
    Deposited,
    Settled,
    ShareRecorded,
    Withdrawn,
)
from marketplace.core.eventsourced import EventSourced
from marketplace.core.market import Market
from marketplace.core.model import Assignment
from marketplace.storage import Journal, JournalError, Record
from stratum.core.shares import Algorithm

T = TypeVar("T")

#: Called with a market's algorithm and the moves of one of its rebalances.
RebalanceListener = Callable[[Algorithm, list[Assignment]], None]

#: Market events that cannot change the allocation (everything else may).
_ALLOCATION_NEUTRAL: Final = (ShareRecorded, AccountCreated, Deposited, Withdrawn, Settled)

log = structlog.get_logger("marketplace.engine")


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, from the system clock."""
    return time.time_ns() // 1_000_000


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Periods of the engine's background work, in seconds of trio time."""

    #: Settlement period; ``None`` = the market's ``settle_interval_ms``.
    settle_interval_s: float | None = None
    rebalance_interval_s: float = 5.0
    expire_interval_s: float = 1.0
    #: How often ``run`` considers a snapshot (0: never) ...
    snapshot_interval_s: float = 60.0
    #: ... and how many events since the last one make it worth taking.
    snapshot_min_events: int = 50_000


#: Format of the snapshot envelope; a snapshot of another format is ignored (full replay).
SNAPSHOT_FORMAT: Final = 1


class SnapshotEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """A stored snapshot: its format and each component's ``encode_state`` bytes by name."""

    format: int
    states: dict[str, msgspec.Raw]


class Engine:
    """Runs commands atomically and durably against a set of event-sourced components."""

    def __init__(
        self,
        *,
        components: Sequence[EventSourced[Any]],
        journal: Journal,
        clock: Callable[[], int] = wall_clock_ms,
        config: EngineConfig | None = None,
    ) -> None:
        self._components: dict[str, EventSourced[Any]] = {}
        for component in components:
            name = component.component
            if name in self._components:
                raise ValueError(f"two components named {name!r}")
            self._components[name] = component
        markets = [c for c in components if isinstance(c, Market)]
        if len(markets) > 1:
            raise ValueError("an engine runs at most one Market")
        self._market: Market | None = markets[0] if markets else None
        self._journal = journal
        self._clock = clock
        self._config = config or EngineConfig()
        self._listeners: list[RebalanceListener] = []
        self._rebalance_wanted = trio.Event()
        self._restored = False
        #: Events journaled since start (excluding replay), for logs and tests.
        self.events_journaled = 0
        self._events_at_snapshot = 0

    # ------------------------------------------------------------------ accessors

    @property
    def market(self) -> Market:
        """The engine's ``Market``. Raises ``RuntimeError`` if it runs none."""
        if self._market is None:
            raise RuntimeError("this engine runs no Market")
        return self._market

    @property
    def journal(self) -> Journal:
        return self._journal

    def now_ms(self) -> int:
        """The injected clock's current time in milliseconds."""
        return self._clock()

    # ------------------------------------------------------------------ restore

    async def restore(self) -> int:
        """Load the newest usable snapshot into the components (which must be fresh) and
        replay the journal's events after it; return how many events were applied. Must be
        awaited once before ``execute``.

        Raises ``RuntimeError`` if called twice, ``JournalError`` for a journal
        naming a component this engine does not run, ``msgspec.DecodeError`` for a body its
        component cannot decode.
        """
        if self._restored:
            raise RuntimeError("restore runs once, before any command")
        counts: dict[str, int] = dict.fromkeys(self._components, 0)
        started = time.perf_counter()
        after = await self._load_snapshot()
        async for entry in self._journal.replay(after=after):
            component = self._components.get(entry.component)
            if component is None:
                raise JournalError(
                    f"journal seq {entry.seq} names unknown component {entry.component!r}"
                )
            component.apply(component.decode_event(entry.body))
            counts[entry.component] += 1
        for component in self._components.values():
            # apply() never queues, but a component built with seed commands might have.
            leftover = component.drain_events()
            if leftover:
                raise RuntimeError(
                    f"{component.component} had {len(leftover)} unjournaled events before restore"
                )
        self._restored = True
        total = sum(counts.values())
        log.info(
            "engine.restored",
            snapshot_seq=after or None,
            events=total,
            seconds=round(time.perf_counter() - started, 3),
            **{f"events_{name}": n for name, n in counts.items()},
        )
        return total

    async def _load_snapshot(self) -> int:
        """Import the newest snapshot if every component reads it; the seq it covers (0:
        none, replay everything)."""
        if not self._can_snapshot():
            return 0
        stored = await self._journal.latest_snapshot()
        if stored is None:
            return 0
        try:
            envelope = msgspec.json.decode(stored.body, type=SnapshotEnvelope)
            if (
                envelope.format != SNAPSHOT_FORMAT
                or envelope.states.keys() != self._components.keys()
            ):
                raise ValueError(f"format {envelope.format} of {sorted(envelope.states)}")
            # Decode every state before importing any, so a bad one leaves all fresh.
            states = {
                name: component.decode_state(envelope.states[name])
                for name, component in self._components.items()
            }
        except (msgspec.DecodeError, ValueError) as error:
            log.warning("engine.snapshot_ignored", seq=stored.seq, error=str(error)[:200])
            return 0
        for name, component in self._components.items():
            component.import_state(states[name])
        return stored.seq

    def _can_snapshot(self) -> bool:
        return all(c.state_type is not None for c in self._components.values())

    def snapshot(self) -> bool:
        """Queue a snapshot of every component behind the events journaled so far (durable
        with the next commit); False when a component cannot snapshot. Synchronous, so the
        state it encodes is exactly the one those events made. Raises ``RuntimeError`` before
        ``restore``, ``JournalError`` if the journal is closed or failed."""
        if not self._restored:
            raise RuntimeError("await engine.restore() before taking a snapshot")
        if not self._can_snapshot():
            return False
        started = time.perf_counter()
        states = {
            name: msgspec.Raw(component.encode_state())
            for name, component in self._components.items()
        }
        body = msgspec.json.encode(SnapshotEnvelope(format=SNAPSHOT_FORMAT, states=states))
        self._journal.append_snapshot_nowait(body, time_ms=self._clock())
        self._events_at_snapshot = self.events_journaled
        log.info(
            "engine.snapshot",
            bytes=len(body),
            encode_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return True

    @property
    def events_since_snapshot(self) -> int:
        """Events journaled since the last snapshot this engine took (or since start)."""
        return self.events_journaled - self._events_at_snapshot

    # ------------------------------------------------------------------ commands

    def _drain(self) -> tuple[list[Record], bool]:
        """Every component's outbox as journal records; and whether the order book changed."""
        records: list[Record] = []
        book_changed = False
        now = None
        for name, component in self._components.items():
            for event, body in component.drain_encoded():
                time_ms = getattr(event, "time_ms", None)
                if not isinstance(time_ms, int):
                    now = self._clock() if now is None else now
                    time_ms = now
                records.append(Record(name, time_ms, body))
                if component is self._market and not isinstance(event, _ALLOCATION_NEUTRAL):
                    book_changed = True
        return records, book_changed

    async def execute(self, fn: Callable[[], T]) -> T:
        """Run the synchronous command ``fn()`` atomically, journal the events it emitted and
        return its result once they are durable.

        If ``fn`` raises (a ``MarketError`` for a refused command), the exception propagates;
        a command that emitted nothing before raising journals nothing (one that did, by a
        bug, has its events journaled anyway so the journal keeps matching memory). After a
        command that changed the order book the markets are rebalanced and the listeners told.
        Raises ``RuntimeError`` before ``restore``, ``JournalError`` if the commit failed.
        """
        if not self._restored:
            raise RuntimeError("await engine.restore() before executing commands")
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal.wait_capacity()
        # From here to append_nowait: no checkpoint, so nothing else runs in between.
        try:
            result = fn()
        except BaseException:
            records, _ = self._drain()
            if records:
                log.error("engine.command_failed_after_emitting", events=len(records))
                ticket = self._journal.append_nowait(records)
                self.events_journaled += len(records)
                await ticket.wait()
            raise
        records, book_changed = self._drain()
        if records:
            ticket = self._journal.append_nowait(records)
            self.events_journaled += len(records)
            await ticket.wait()
        else:
            await trio.lowlevel.checkpoint()
        if book_changed:
            self.rebalance()
        return result

    # ------------------------------------------------------------------ allocation

    def add_rebalance_listener(self, listener: RebalanceListener) -> None:
        """Call ``listener(algorithm, moves)`` after every rebalance that moved workers."""
        self._listeners.append(listener)

    def remove_rebalance_listener(self, listener: RebalanceListener) -> None:
        """Stop calling ``listener``. Raises ``ValueError`` if it was not added."""
        self._listeners.remove(listener)

    def request_rebalance(self) -> None:
        """Ask ``run`` to rebalance every market soon (without waiting for the tick)."""
        self._rebalance_wanted.set()

    def rebalance(self, algorithm: Algorithm | None = None) -> list[Assignment]:
        """Rebalance one market (or all), tell the listeners, return the moves.

        Synchronous: the allocation is ephemeral (no events), so nothing is journaled.
        """
        market = self.market
        algorithms = market.algorithms() if algorithm is None else [algorithm]
        now = self._clock()
        moved: list[Assignment] = []
        for alg in algorithms:
            moves = market.rebalance(alg, now_ms=now)
            if moves:
                moved.extend(moves)
                log.debug("engine.rebalanced", algorithm=alg.value, moves=len(moves))
                for listener in list(self._listeners):
                    listener(alg, moves)
        return moved

    # ------------------------------------------------------------------ background work

    async def settle(self) -> None:
        """Settle the market now (through ``execute``)."""
        market = self.market
        await self.execute(lambda: market.settle(now_ms=self._clock()))

    async def expire(self) -> list[str]:
        """End the orders whose duration is over (through ``execute``); return their ids."""
        market = self.market
        return await self.execute(lambda: market.expire(now_ms=self._clock()))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle, expire and rebalance periodically until cancelled; started with
        ``nursery.start`` after ``restore``. Raises ``RuntimeError`` before ``restore`` and
        whatever a step raises (a ``JournalError`` is fatal: memory no longer matches disk).
        """
        if not self._restored:
            raise RuntimeError("await engine.restore() before running the engine")
        market = self.market
        settle_s = self._config.settle_interval_s
        if settle_s is None:
            settle_s = market.config.settle_interval_ms / 1000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._every, settle_s, self.settle)
            nursery.start_soon(self._every, self._config.expire_interval_s, self.expire)
            nursery.start_soon(self._rebalance_loop)
            if self._config.snapshot_interval_s > 0:
                nursery.start_soon(self._snapshot_loop)
            task_status.started()

    @staticmethod
    async def _every(interval_s: float, step: Callable[[], Any]) -> None:
        deadline = trio.current_time()
        while True:
            deadline += interval_s
            await trio.sleep_until(deadline)
            await step()

    async def _snapshot_loop(self) -> None:
        deadline = trio.current_time()
        while True:
            deadline += self._config.snapshot_interval_s
            await trio.sleep_until(deadline)
            if self.events_since_snapshot >= self._config.snapshot_min_events:
                self.snapshot()

    async def _rebalance_loop(self) -> None:
        interval = self._config.rebalance_interval_s
        while True:
            with trio.move_on_after(interval):
                await self._rebalance_wanted.wait()
            self._rebalance_wanted = trio.Event()
            await self.execute(self.rebalance)
