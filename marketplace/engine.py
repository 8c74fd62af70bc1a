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

Storage faults (``marketplace.durability``): when the journal fails a batch with
``StorageFault`` (the disk is full...), the events of that batch and of every batch queued
behind it are in memory but not on disk. Every caller waiting on them gets
``StorageUnavailable``, the engine's ``health`` goes to ``RESTORING`` and refuses commands, and
``run`` (the engine's service) puts memory back to exactly what the journal holds: it folds the
newest snapshot and the events after it into ``blank`` twins of the components, as a restart
would, and lets each component ``become`` its twin in one synchronous step, then tells the
rebuild listeners (the scheduler rebalances the fleet against the restored book). Reads are
served again (``DEGRADED``); ``run`` probes the store on the retry schedule and, once a write
gets through, commands run again (``HEALTHY``). A snapshot that cannot be written is the
journal's business alone: it never degrades the engine.
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
from marketplace.durability import RetryPolicy, StorageHealth, StorageState, StorageUnavailable
from marketplace.storage import Entry, JournalError, Record, Snapshot, StorageFault

T = TypeVar("T")

log = structlog.get_logger("marketplace.engine")


class Receipt(Protocol):
    """The journal's promise for one append: ``wait`` returns once it is durable."""

    async def wait(self) -> object:
        """Wait for the commit. Raises ``JournalError`` if it failed."""
        ...

    async def wait_uncancellable(self) -> object:
        """``wait``, which cancellation does not end (it takes effect after the commit)."""
        ...


class JournalPort(Protocol):
    """What the engine needs of a journal (``storage.Journal`` is the durable one).

    ``append_nowait`` and ``append_snapshot_nowait`` are synchronous, so the engine enqueues in
    the same atomic step as the command; records are stored in the order they were enqueued.
    A store that cannot take a batch fails it and every batch queued behind it with
    ``StorageFault``, refuses records with ``StorageFault`` until ``probe`` gets a write
    through, and reads (``replay``, ``latest_snapshot``) raise ``StorageFault`` when the
    store cannot be read. A snapshot that cannot be written fails its own receipt only.
    """

    @property
    def last_seq(self) -> int:
        """The seq of the last event stored (0: none)."""
        ...

    async def wait_capacity(self) -> None:
        """Wait until the queue has room. Raises ``StorageFault`` while the store fails,
        ``JournalError`` if the journal stopped."""
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

    async def probe(self) -> None:
        """Try one write; once it commits, records are taken again. Raises ``StorageFault``
        while the store still fails."""
        ...


class Committed(NamedTuple):
    """One event a command emitted, now durable, as the commit listeners hear it."""

    component: str
    event: Any


#: Called after every command that journaled events, with those events in order.
CommitListener = Callable[[list[Committed]], None]

#: Called after the components were rebuilt from the journal (``Engine.rebuild``).
RebuildListener = Callable[[], None]

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
        retry: RetryPolicy | None = None,
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
        self._rebuild_listeners: list[RebuildListener] = []
        self._restored = False
        #: Whether the store takes writes now (see ``marketplace.durability``).
        self.health = StorageHealth(retry)
        self._durable_seq = 0  # the last seq a restore or rebuild folded in
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

    def add_rebuild_listener(self, listener: RebuildListener) -> None:
        """Call ``listener()`` right after the components were rebuilt from the journal (in
        the same synchronous step, so it sees the restored state first)."""
        self._rebuild_listeners.append(listener)

    # ------------------------------------------------------------------ restore

    async def restore(self) -> int:
        """Load the newest usable snapshot into the components (which must be fresh) and
        replay the journal's events after it; return how many events were applied. Must be
        awaited once before ``execute``.

        Raises ``RuntimeError`` if called twice, ``JournalError`` for a journal
        naming a component this engine does not run (``StorageFault`` for one that cannot be
        read), ``msgspec.DecodeError`` for a body its component cannot decode.
        """
        if self._restored:
            raise RuntimeError("restore runs once, before any command")
        started = time.perf_counter()
        after, counts = await self._fold(self._components)
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

    async def rebuild(self) -> int:
        """Put every component back to exactly what the journal holds (see the module doc):
        the newest snapshot and the events after it folded into ``blank`` twins, which the
        components then ``become`` in one synchronous step; the rebuild listeners are told in
        that step. Returns how many events were replayed.

        Raises ``StorageFault`` if the journal cannot be read (nothing changed), as
        ``restore`` otherwise; ``RuntimeError`` before ``restore``.
        """
        if not self._restored:
            raise RuntimeError("await engine.restore() before a rebuild")
        started = time.perf_counter()
        twins = {name: component.blank() for name, component in self._components.items()}
        after, counts = await self._fold(twins)
        # From here on no checkpoint: nobody sees a half-rebuilt set of components.
        for name, component in self._components.items():
            component.become(twins[name])
        for listener in list(self._rebuild_listeners):
            listener()
        total = sum(counts.values())
        log.warning(
            "engine.rebuilt",
            snapshot_seq=after or None,
            events=total,
            last_seq=self._durable_seq,
            seconds=round(time.perf_counter() - started, 3),
        )
        return total

    async def _fold(
        self, components: Mapping[str, EventSourced[Any]]
    ) -> tuple[int, dict[str, int]]:
        """The newest usable snapshot and the events after it, applied to ``components``
        (fresh); (the snapshot's seq, events applied per component). Sets ``_durable_seq``."""
        counts: dict[str, int] = dict.fromkeys(components, 0)
        after = last = await self._load_snapshot(components)
        async for entry in self._journal.replay(after=after):
            _apply_entry(components, entry)
            counts[entry.component] += 1
            last = entry.seq
        self._durable_seq = last
        return after, counts

    @property
    def durable_seq(self) -> int:
        """The seq of the last journaled event memory holds, as far as a restore, rebuild or
        ``catch_up`` folded them in (a command's events are not counted here)."""
        return self._durable_seq

    async def catch_up(self) -> int:
        """Apply the events stored after ``durable_seq`` to the components: how a standby
        follows the journal another market writes (``marketplace.standby``). Returns how many
        it applied. Only for an engine that runs no commands (they would be applied twice).

        Raises ``RuntimeError`` before ``restore``, ``StorageFault`` if the journal cannot be
        read now (what was applied stays: each event is applied with its seq), as ``restore``
        otherwise.
        """
        if not self._restored:
            raise RuntimeError("await engine.restore() before catching up")
        applied = 0
        async for entry in self._journal.replay(after=self._durable_seq):
            _apply_entry(self._components, entry)
            self._durable_seq = entry.seq
            applied += 1
        return applied

    async def _load_snapshot(self, components: Mapping[str, EventSourced[Any]]) -> int:
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
            ours = self._state_formats()
            if envelope.format != _ENVELOPE_FORMAT or any(
                ours.get(name) != format for name, format in formats.items()
            ):
                raise ValueError(f"format {envelope.format} of {formats}")
            # Decode every state before importing any, so a bad one leaves all fresh. A
            # component the snapshot does not name is newer than the snapshot (it had no
            # events then): it stays fresh and replays what came after.
            states = {
                name: component.decode_state(envelope.states[name])
                for name, component in components.items()
                if name in envelope.states
            }
        except (msgspec.DecodeError, ValueError) as error:
            log.warning("engine.snapshot_ignored", seq=stored.seq, error=str(error)[:200])
            return 0
        for name, state in states.items():
            components[name].import_state(state)
        return stored.seq

    def _can_snapshot(self) -> bool:
        return all(c.state_type is not None for c in self._components.values())

    def _state_formats(self) -> dict[str, int]:
        return {name: c.state_format for name, c in self._components.items()}

    def snapshot(self) -> bool:
        """Queue a snapshot of every component behind the events journaled so far (durable
        with the next commit); False when a component cannot snapshot or the store is failing.
        Synchronous, so the state it encodes is exactly the one those events made. Raises
        ``RuntimeError`` before ``restore``, ``JournalError`` if the journal is closed or
        failed for another reason than the store."""
        if not self._restored:
            raise RuntimeError("await engine.restore() before taking a snapshot")
        if not self._can_snapshot() or not self.health.ready:
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
        try:
            self._journal.append_snapshot_nowait(body, time_ms=self._clock.now_ms())
        except StorageFault as fault:
            # The store failed a batch and its waiters have not run yet: memory is ahead.
            self._storage_failed(fault)
            return False
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
        Raises ``StorageUnavailable`` without running ``fn`` while the store is failing, and
        after running it if the store failed its events (which memory then drops, see the
        module doc); ``RuntimeError`` before ``restore``; ``JournalError`` if the commit
        failed for another reason.

        Cancellation ends ``execute`` only before ``fn`` runs (a cancelled caller then knows
        nothing happened); once it ran, the caller waits for the commit and hears the outcome,
        and the listeners hear the events, the cancellation taking effect at its next
        checkpoint. The Stratum driver relies on this: a share counted is a share recorded.
        """
        if not self._restored:
            raise RuntimeError("await engine.restore() before executing commands")
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            if not self.health.ready:
                raise self.health.unavailable()
            await self._journal.wait_capacity()
            if not self.health.ready:  # the wait for room was a checkpoint
                raise self.health.unavailable()
            # From here to append_nowait: no checkpoint, so nothing else runs in between.
            try:
                result = fn()
            except BaseException:
                records, _ = self._drain()
                if records:
                    log.error("engine.command_failed_after_emitting", events=len(records))
                    await self._journal_records(records)
                raise
            records, committed = self._drain()
            if not records:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return result
            await self._journal_records(records)
        except StorageFault as fault:
            raise self._storage_failed(fault) from fault
        for listener in list(self._listeners):
            listener(committed)
        return result

    async def _journal_records(self, records: list[Record]) -> None:
        ticket = self._journal.append_nowait(records)
        self.events_journaled += len(records)
        await ticket.wait_uncancellable()

    def _storage_failed(self, fault: StorageFault) -> StorageUnavailable:
        """The store failed events that memory holds: ``RESTORING`` (``run`` rebuilds); the
        refusal for the caller."""
        self.health.failed(fault.cause)
        return self.health.unavailable()

    # ------------------------------------------------------------------ storage faults

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep memory equal to the journal through storage faults, until cancelled (see the
        module doc): after a failed batch, rebuild the components from the journal, then try
        the store on the retry schedule until a write gets through. Started with
        ``nursery.start`` after ``restore``. Raises ``RuntimeError`` before ``restore``, and
        what a rebuild raises other than ``StorageFault`` (a journal this engine cannot read
        is a bug)."""
        if not self._restored:
            raise RuntimeError("await engine.restore() before running the engine")
        task_status.started()
        health = self.health
        while True:
            await health.wait_failed()
            health.announce()
            await self._recover()

    async def _recover(self) -> None:
        health = self.health
        while not health.ready:
            if health.state is StorageState.RESTORING:
                try:
                    await self.rebuild()
                except StorageFault as fault:
                    health.retry_failed(fault.cause)
                    await trio.sleep(health.next_delay_s())
                    continue
                health.restored()
                continue
            await trio.sleep(health.next_delay_s())
            try:
                await self._journal.probe()
            except StorageFault as fault:
                health.retry_failed(fault.cause)
                continue
            if self._journal.last_seq != self._durable_seq:
                # The failed commit reached the disk after all: memory must hold it too.
                health.failed(health.cause or "journal ahead of memory")
                continue
            health.recovered()


def _apply_entry(components: Mapping[str, EventSourced[Any]], entry: Entry) -> None:
    component = components.get(entry.component)
    if component is None:
        raise JournalError(f"journal seq {entry.seq} names unknown component {entry.component!r}")
    component.apply(component.decode_event(entry.body))
