"""The engine: the unit of work that runs commands against durable components and journals them.

Theory of operation
-------------------
The components (the ``Market``, the ``KeyRing``...) are pure and synchronous; they change
state only by applying events, which they also queue in their outbox. ``execute(fn)`` is the
one way to change them: it waits for room in the journal's queue, then, with no checkpoint in
between (so atomically under trio), runs ``fn()``, drains every component's outbox and enqueues
the events in the journal, and finally waits until their transaction has committed. Because
running and enqueueing are one atomic step, the journal's order is exactly the order in which
the events were applied in memory, and replaying it (``restore``) rebuilds the same state. A
``MarketError`` (any exception) from ``fn`` propagates; a command that refuses emits nothing,
so nothing is journaled. Many concurrent ``execute`` calls share a commit (the journal's group
commit), which is what makes one durable share per Stratum reply affordable. Once a command's
events are durable, the commit listeners hear them (``add_commit_listener``): that is how the
market scheduler (``marketplace.scheduler``) rebalances after a command changed an order book.

The engine knows no component in particular and no timer: the market's clock-based work
(settle, expire, rebalance, periodic snapshots) is the scheduler's. The journal is a seam
(``JournalPort``): the SQLite ``storage.Journal`` in a node, an in-memory one in tests. Time
comes from the node's injected ``Clock`` (market time, ``marketplace.clock``), used for records
whose event has no time and for snapshots.

Snapshots bound the restart time: ``snapshot()`` encodes every component's state and queues it
in the journal behind the events that made it (atomically, like a command). ``restore`` loads
the newest snapshot, if every component can read it (the envelope names each component's
``state_format``), and replays only the events after it; otherwise (no snapshot, one of
another format, a component that cannot snapshot) it replays the whole journal, which gives the
same state, only slower.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import msgspec
import structlog
import trio

from marketplace.clock import Clock
from marketplace.core.eventsourced import EventSourced
from marketplace.storage import Entry, JournalError, Record, Snapshot

T = TypeVar("T")

log = structlog.get_logger("marketplace.engine")


class Receipt(Protocol):
    """The journal's promise for one append: ``wait`` returns once it is durable."""

    async def wait(self) -> object:
        """Wait for the commit. Raises ``JournalError`` if it failed."""
        ...


class JournalPort(Protocol):
    """What the engine needs of a journal (``storage.Journal`` is the durable one).

    ``append_nowait`` and ``append_snapshot_nowait`` are synchronous, so the engine enqueues in
    the same atomic step as the command; records are stored in the order they were enqueued.
    """

    @property
    def last_seq(self) -> int:
        """The seq of the last event stored (0: none)."""
        ...

    async def wait_capacity(self) -> None:
        """Wait until the queue has room. Raises ``JournalError`` if the journal stopped."""
        ...

    def append_nowait(self, records: Sequence[Record]) -> Receipt:
        """Queue ``records``. Raises ``JournalError`` if the journal is closed or failed."""
        ...

    def append_snapshot_nowait(self, body: bytes, *, time_ms: int) -> Receipt:
        """Queue a snapshot of the state the records queued so far made."""
        ...

    async def latest_snapshot(self) -> Snapshot | None:
        """The newest stored snapshot, if any."""
        ...

    def replay(self, *, after: int = 0) -> AsyncIterator[Entry]:
        """Every stored event with a seq above ``after``, in order."""
        ...


class Committed(NamedTuple):
    """One event a command emitted, now durable, as the commit listeners hear it."""

    component: str
    event: Any


#: Called after every command that journaled events, with those events in order.
CommitListener = Callable[[list[Committed]], None]

#: Layout of the snapshot envelope itself; each component's state has its own format.
_ENVELOPE_FORMAT: Final = 1


class SnapshotEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """A stored snapshot: each component's ``encode_state`` bytes and ``state_format`` by
    name (a component missing from ``formats``, as in snapshots older than the field, is at
    format 1)."""

    format: int
    states: dict[str, msgspec.Raw]
    formats: dict[str, int] = msgspec.field(default_factory=dict)


class Engine:
    """Runs commands atomically and durably against a set of event-sourced components."""

    def __init__(
        self,
        *,
        components: Sequence[EventSourced[Any]],
        journal: JournalPort,
        clock: Clock | None = None,
    ) -> None:
        self._components: dict[str, EventSourced[Any]] = {}
        for component in components:
            name = component.component
            if name in self._components:
                raise ValueError(f"two components named {name!r}")
            self._components[name] = component
        self._journal = journal
        self._clock = clock or Clock()
        self._listeners: list[CommitListener] = []
        self._restored = False
        #: Events journaled since start (excluding replay), for logs and tests.
        self.events_journaled = 0
        self._events_at_snapshot = 0

    # ------------------------------------------------------------------ accessors

    @property
    def components(self) -> Mapping[str, EventSourced[Any]]:
        """The components by name (read-only)."""
        return MappingProxyType(self._components)

    @property
    def journal(self) -> JournalPort:
        return self._journal

    @property
    def clock(self) -> Clock:
        """The node's clock, as injected."""
        return self._clock

    def now_ms(self) -> int:
        """Market time now, in milliseconds (the injected clock's ``now_ms``)."""
        return self._clock.now_ms()

    @property
    def restored(self) -> bool:
        """Whether ``restore`` has run (commands and snapshots need it)."""
        return self._restored

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` after every command whose events are durable, before
        ``execute`` returns (synchronously, so it sees the state those events made)."""
        self._listeners.append(listener)

    def remove_commit_listener(self, listener: CommitListener) -> None:
        """Stop calling ``listener``. Raises ``ValueError`` if it was not added."""
        self._listeners.remove(listener)

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
            formats = {name: envelope.formats.get(name, 1) for name in envelope.states}
            if envelope.format != _ENVELOPE_FORMAT or formats != self._state_formats():
                raise ValueError(f"format {envelope.format} of {formats}")
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

    def _state_formats(self) -> dict[str, int]:
        return {name: c.state_format for name, c in self._components.items()}

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
        envelope = SnapshotEnvelope(
            format=_ENVELOPE_FORMAT, states=states, formats=self._state_formats()
        )
        body = msgspec.json.encode(envelope)
        self._journal.append_snapshot_nowait(body, time_ms=self._clock.now_ms())
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

    def _drain(self) -> tuple[list[Record], list[Committed]]:
        """Every component's outbox as journal records, and the events for the listeners."""
        records: list[Record] = []
        committed: list[Committed] = []
        now = None
        for name, component in self._components.items():
            for event, body in component.drain_encoded():
                time_ms = getattr(event, "time_ms", None)
                if not isinstance(time_ms, int):
                    now = self._clock.now_ms() if now is None else now
                    time_ms = now
                records.append(Record(name, time_ms, body))
                committed.append(Committed(name, event))
        return records, committed

    async def execute(self, fn: Callable[[], T]) -> T:
        """Run the synchronous command ``fn()`` atomically, journal the events it emitted and
        return its result once they are durable.

        If ``fn`` raises (a ``MarketError`` for a refused command), the exception propagates;
        a command that emitted nothing before raising journals nothing (one that did, by a
        bug, has its events journaled anyway so the journal keeps matching memory). After a
        command that emitted events, once they are durable, the commit listeners hear them.
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
        records, committed = self._drain()
        if records:
            ticket = self._journal.append_nowait(records)
            self.events_journaled += len(records)
            await ticket.wait()
            for listener in list(self._listeners):
                listener(committed)
        else:
            await trio.lowlevel.checkpoint()
        return result
