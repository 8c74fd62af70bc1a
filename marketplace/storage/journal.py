"""The durable journal: an append-only table of events, written with group commit.

Theory of operation
-------------------
Every durable change in the marketplace is an event; the ``Journal`` stores them in order in
one table ``events(seq, component, time_ms, body)`` of a database: a SQLite file (the default)
or PostgreSQL. This module is the same for both; what differs is a small backend behind the
``Store`` seam (``store.py``: ``sqlite.py``, ``postgres.py``). One writer task owns the store's
writer connection (used from one worker thread at a time through ``trio.to_thread.run_sync``);
appenders never touch the database. An appender puts its records in the pending queue
(``append_nowait``, synchronous, so a caller can enqueue in the same atomic step as the command
that made the events) and then waits on its ticket. The writer takes everything pending at
once, writes it in one transaction and commits: while one commit is in the thread, new
appenders pile up and share the next one (group commit), so the commit's cost (an fsync, a
round trip to the server) is paid once per batch rather than once per record. A ticket resolves
only after its transaction committed, so with ``Synchronous.FULL`` an acknowledged record
survives kill -9 and power loss (with ``NORMAL`` it survives kill -9 of the market).

The writer's connection holds the database's single-writer lock for as long as it is open
(``Store.open_writer``): ``open`` raises ``NodeBusy`` while another market writes the database.

Sequence numbers are assigned by the writer in queue order, so the journal's order is exactly
the order in which records were enqueued. A snapshot (``append_snapshot_nowait``) takes its
place in the same queue and is stored in table ``snapshots`` under the seq of the last event
before it, in the same transaction as the events around it: it holds exactly the state those
events made. Only the newest snapshot is kept; events are never deleted.

The queue is bounded (``max_pending`` records): ``wait_capacity``/``append`` wait for room.
Shutdown (``close`` or cancellation) commits everything already queued before the writer
returns.

A failed transaction is rolled back, and what happens next depends on why it failed:

- **The store** (``Store.fault``: the disk is full, an I/O error, the database locked past
  ``busy_timeout_s``, the file gone, the connection to the server lost): a state, not a bug.
  Every ticket of the batch and every ticket queued behind it (their records were made on top
  of the failed ones) fails with ``StorageFault``, and the journal refuses records
  (``StorageFault``) until ``probe`` gets a write through (reconnecting if the connection was
  lost). The writer keeps running. Whoever enqueued must put its memory back to what the
  journal holds (the engine does: ``marketplace.engine``).
- **Anything else** (a constraint, a bug): every waiter of the batch gets ``JournalError``, and
  the writer stops and raises: memory no longer matches the disk and we do not know why. So
  does a probe that finds the lock taken by another market after a lost connection
  (``LockLost``): that market is the active one now.

A snapshot is written in its own transaction, right after the events of its batch committed:
one that cannot be written (too big for the disk that is left) is logged
(``journal.snapshot_failed``), the previous snapshot stays, and the events are unaffected.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog
import trio

from marketplace.storage.backends import open_store
from marketplace.storage.store import (
    Entry,
    JournalError,
    LockLost,
    Record,
    Row,
    Snapshot,
    StorageFault,
    Store,
    StoreConnection,
    Synchronous,
)

T = TypeVar("T")

log = structlog.get_logger("marketplace.storage")


class Ticket:
    """The promise of one ``append_nowait``: resolves when its transaction committed.

    Its waiters park on trio's low-level primitives rather than a ``trio.Event`` (one per
    append was measurable on the share path), which also allows ``wait_uncancellable``.
    """

    __slots__ = ("_done", "_error", "_waiters", "first_seq", "records", "snapshot")

    def __init__(self, records: Sequence[Record], snapshot: Record | None = None) -> None:
        self.records = records
        self.snapshot = snapshot  # body and time of a snapshot (component unused)
        self.first_seq = 0
        self._done = False
        self._waiters: list[trio.lowlevel.Task] = []
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done

    def _resolve(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self._settle()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._settle()

    def _settle(self) -> None:
        self._done = True
        waiters, self._waiters = self._waiters, []
        for task in waiters:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> range:
        """Wait until the records are durable; return their sequence numbers.

        Raises ``StorageFault`` if the store failed their transaction (or one before it),
        ``JournalError`` if it failed otherwise or the journal stopped first. Cancelling the
        wait does not withdraw the records: they are still written.
        """
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            task = trio.lowlevel.current_task()
            self._waiters.append(task)

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiters.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        return self._result()

    async def wait_uncancellable(self) -> range:
        """``wait``, except that cancellation does not end it: it takes effect at the caller's
        next checkpoint, after the commit (so a caller always learns what became of records
        it queued). Raises as ``wait``."""
        if self._done:
            await trio.lowlevel.cancel_shielded_checkpoint()
        else:
            self._waiters.append(trio.lowlevel.current_task())
            await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        return self._result()

    def _result(self) -> range:
        if isinstance(self._error, StorageFault):
            raise StorageFault(self._error.cause) from self._error
        if self._error is not None:
            raise JournalError(str(self._error)) from self._error
        return range(self.first_seq, self.first_seq + len(self.records))


def _cannot_abort(_: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class Journal:
    """An append-only, group-committed event journal in one database (see the module doc).

    Run it as a service: ``async with open_journal(db) as journal`` or
    ``await nursery.start(journal.run)`` followed eventually by ``await journal.close()``.
    ``db`` is a ``Store``, or a SQLite path or ``postgresql://`` URL made into one by
    ``open_store`` with ``synchronous`` and ``busy_timeout_s``.
    """

    def __init__(
        self,
        db: Store | str | Path,
        *,
        synchronous: Synchronous = Synchronous.FULL,
        max_pending: int = 65_536,
        max_batch: int = 8_192,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be positive")
        if isinstance(db, str | Path):
            db = open_store(db, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        self.store: Store = db
        self.max_pending = max_pending
        self.max_batch = max_batch
        self._queue: deque[Ticket] = deque()
        self._queued_records = 0
        self._wakeup = trio.Event()
        self._room = trio.lowlevel.ParkingLot()
        self._conn: StoreConnection | None = None
        self._running = False
        self._closing = False
        self._failure: BaseException | None = None
        self._fault: StorageFault | None = None
        self._stopped = trio.Event()
        self._last_seq = 0
        #: Transactions committed and records written since ``run`` started (for tests and
        #: benchmarks: records / commits is the group-commit factor).
        self.commits = 0
        self.records_written = 0
        #: Called after each commit with its seconds and its records (``None``: not measured).
        self.commit_observer: Callable[[float, int], None] | None = None

    # ------------------------------------------------------------------ appending

    @property
    def last_seq(self) -> int:
        """The sequence number of the last committed record (0: none yet)."""
        return self._last_seq

    @property
    def full(self) -> bool:
        """Whether ``append_nowait`` would raise ``trio.WouldBlock`` now."""
        return self._queued_records >= self.max_pending

    @property
    def fault(self) -> StorageFault | None:
        """The store's failure the journal is in (``None``: it takes records)."""
        return self._fault

    def _check_open(self) -> None:
        if self._fault is not None:
            raise StorageFault(self._fault.cause)
        if self._failure is not None:
            raise JournalError(f"the journal failed: {self._failure}") from self._failure
        if self._closing or self._stopped.is_set():
            raise JournalError("the journal is closed")

    async def wait_capacity(self) -> None:
        """Wait until the queue has room, so that the next ``append_nowait`` succeeds if it
        comes without an intervening checkpoint. A checkpoint only when it has to wait (the
        hot path, one durable share, then checkpoints once: in ``Ticket.wait``).

        Raises ``StorageFault`` while the store is failing, ``JournalError`` if the journal
        failed or was closed.
        """
        while True:
            self._check_open()
            if not self.full:
                return
            await self._room.park()

    def append_nowait(self, records: Sequence[Record]) -> Ticket:
        """Queue ``records`` to be written together, in order, after everything queued before.

        Synchronous: the records' place in the journal is fixed when this returns. Await the
        ticket's ``wait()`` for durability. Raises ``trio.WouldBlock`` if the queue is full,
        ``StorageFault`` while the store is failing, ``JournalError`` if the journal failed or
        was closed.
        """
        self._check_open()
        if self.full:
            raise trio.WouldBlock
        ticket = Ticket(records)
        if not records:
            ticket._resolve(self._last_seq + 1)
            return ticket
        self._queue.append(ticket)
        self._queued_records += len(records)
        self._wakeup.set()
        return ticket

    def append_snapshot_nowait(self, body: bytes, *, time_ms: int) -> Ticket:
        """Queue a snapshot of the state made by every event queued before it (see the module
        doc); ``body`` is opaque here. Raises like ``append_nowait`` (it takes no room)."""
        self._check_open()
        ticket = Ticket((), snapshot=Record("", time_ms, body))
        self._queue.append(ticket)
        self._wakeup.set()
        return ticket

    @property
    def is_open(self) -> bool:
        """Whether the writer's connection is open (``open`` succeeded, the writer has not
        stopped): this journal holds the database's lock."""
        return self._conn is not None

    @property
    def name(self) -> str:
        """The database, as logs name it (a path, or a URL without its password)."""
        return self.store.name

    async def latest_snapshot(self) -> Snapshot | None:
        """The newest stored snapshot, or ``None``. Reads with its own connection. Raises
        ``StorageFault`` if the store cannot be read."""
        store = self.store
        conn = await store_call(store, store.open_reader)
        try:
            return await store_call(store, conn.read_snapshot)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)

    async def append(self, records: Sequence[Record]) -> range:
        """Write ``records`` and return their sequence numbers once they are durable.

        Concurrent appends share transactions. Raises ``JournalError`` if the transaction
        failed or the journal is not accepting records.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self.wait_capacity()
        ticket = self.append_nowait(records)
        return await ticket.wait()

    # ------------------------------------------------------------------ the writer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the file and write batches until ``close``; started with ``nursery.start``.

        Returns after committing everything queued once closed (or cancelled: the final
        flush is shielded). A storage fault is a state, not an exception (see the module doc);
        raises ``JournalError`` (chained to the SQLite error) after a commit that failed for
        another reason, once every waiter of that batch has been failed.
        """
        if self._running or self._stopped.is_set():
            raise RuntimeError("a Journal runs once")
        self._running = True
        try:
            if self._conn is None:
                await self.open()
            task_status.started()
            try:
                while not (self._closing and not self._queue):
                    if not self._queue:
                        await self._wakeup.wait()
                        self._wakeup = trio.Event()
                        continue
                    await self._write_one_batch()
            finally:
                # Cancelled or failed: flush whatever is already queued (it was promised a
                # place in the journal), unless the disk has failed us.
                with trio.CancelScope(shield=True):
                    while self._queue and self._failure is None:
                        await self._write_one_batch()
        finally:
            self._closing = True
            self._fail_all(self._failure or JournalError("the journal stopped"))
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(conn.close)
            self._stopped.set()
            self._room.unpark_all()
            log.info(
                "journal.closed",
                db=self.name,
                commits=self.commits,
                records=self.records_written,
                last_seq=self._last_seq,
            )

    async def open(self) -> None:
        """Open the writer's connection (taking the database's single-writer lock; the schema
        made if missing), check the schema and read the last sequence number.

        ``run`` does this itself when needed; calling it first surfaces a bad database as a
        plain exception, and a busy one as ``NodeBusy`` (the journal may then be opened again
        later: a standby does). Raises ``JournalError`` for another schema version,
        ``StorageFault`` if the store cannot be opened now (full, I/O error, unreachable), the
        database's own error for a file that is not a database.
        """
        if self._conn is not None or self._stopped.is_set():
            raise RuntimeError("the journal is already open (or was closed)")
        store = self.store
        conn = await store_call(store, store.open_writer)
        try:
            self._last_seq = await store_call(store, conn.last_seq)
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)
            raise
        self._conn = conn
        log.info("journal.opened", db=self.name, last_seq=self._last_seq)

    async def _write_one_batch(self) -> None:
        batch: list[Ticket] = []
        count = 0
        while self._queue and (not batch or count + len(self._queue[0].records) <= self.max_batch):
            ticket = self._queue.popleft()
            batch.append(ticket)
            count += len(ticket.records)
        self._queued_records -= count
        first = self._last_seq + 1
        started = time.perf_counter()
        try:
            # Shielded: the batch has left the queue, so it must be committed (or failed)
            # even if we are being cancelled; a commit in a thread cannot be interrupted anyway.
            with trio.CancelScope(shield=True):
                snapshot_error = await trio.to_thread.run_sync(self._commit, batch, first)
        except Exception as exc:
            fault = self.store.fault(exc) if isinstance(exc, self.store.errors) else None
            if fault is None:
                self._failure = exc
                log.error("journal.commit_failed", db=self.name, records=count, error=repr(exc))
                for ticket in batch:
                    ticket._fail(exc)
                raise JournalError(f"commit of {count} records failed: {exc}") from exc
            self._fault = fault
            queued = len(self._queue)
            log.error(
                "journal.commit_failed",
                db=self.name,
                records=count,
                queued_behind=queued,
                cause=fault.cause,
            )
            for ticket in batch:
                ticket._fail(fault)
            self._fail_all(fault)
            self._room.unpark_all()
            return
        seq = first
        for ticket in batch:
            if ticket.snapshot is not None and snapshot_error is not None:
                ticket._fail(snapshot_error)
            else:
                ticket._resolve(seq)
            seq += len(ticket.records)
        self._last_seq = seq - 1
        self.commits += 1
        self.records_written += count
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started, count)
        self._room.unpark_all()

    def _commit(self, batch: list[Ticket], first: int) -> BaseException | None:
        """Runs in a worker thread: one transaction for the batch's events, then one for its
        snapshot, if any. Raises what the events' transaction raised; returns what the
        snapshot's did (the events are committed either way)."""
        conn = self._conn
        assert conn is not None
        rows = []
        snapshot: Snapshot | None = None
        seq = first
        for ticket in batch:
            for record in ticket.records:
                rows.append(Row(seq, record.component, record.time_ms, record.body))
                seq += 1
            if ticket.snapshot is not None:
                snapshot = Snapshot(seq - 1, ticket.snapshot.time_ms, ticket.snapshot.body)
        if rows:
            conn.insert_events(rows)
        if snapshot is None:
            return None
        try:
            conn.replace_snapshot(snapshot)
        except self.store.errors as exc:
            # A snapshot is a cache: the old one stays, the journal is not at fault.
            fault = self.store.fault(exc)
            cause = fault.cause if fault is not None else str(exc)
            log.error("journal.snapshot_failed", db=self.name, seq=snapshot.seq, cause=cause)
            return exc
        return None

    async def probe(self) -> None:
        """Try one small write (a row of ``meta``) and re-read the last sequence number; if it
        commits, the journal takes records again (``fault`` is cleared). A failed commit may
        have reached the disk after all (an I/O error after the write): the sequence continues
        from what the file holds, and ``last_seq`` says so.

        Raises ``StorageFault`` while the store still fails, ``JournalError`` if the journal
        is closed or failed for another reason.
        """
        if self._failure is not None or self._closing or self._stopped.is_set():
            self._check_open()
        conn = self._conn
        assert conn is not None
        try:
            with trio.CancelScope(shield=True):
                last_seq = await store_call(self.store, conn.probe, int(time.time() * 1000))
        except StorageFault:
            raise
        except LockLost as exc:
            # Another market writes the database now: we must never write it again.
            self._failure = exc
            log.error("journal.lock_lost", db=self.name, error=str(exc))
            raise
        except self.store.errors as exc:
            raise JournalError(f"probe failed: {exc}") from exc
        if last_seq != self._last_seq:
            log.warning("journal.failed_commit_was_durable", seq=self._last_seq, last_seq=last_seq)
        self._last_seq = last_seq
        self._fault = None
        self._room.unpark_all()

    def _fail_all(self, error: BaseException) -> None:
        while self._queue:
            ticket = self._queue.popleft()
            ticket._fail(error)
        self._queued_records = 0

    async def close(self) -> None:
        """Stop accepting records, wait until everything queued is committed and the writer
        has stopped. Idempotent. Does not raise for a writer that failed (``run`` does)."""
        self._closing = True
        self._wakeup.set()
        self._room.unpark_all()
        if self._running:
            await self._stopped.wait()
        elif self._conn is not None:
            # Opened but never run: close the connection (and release the lock) here.
            conn, self._conn = self._conn, None
            self._stopped.set()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)

    # ------------------------------------------------------------------ reading

    async def replay(self, *, after: int = 0, chunk: int = 4_096) -> AsyncIterator[Entry]:
        """Yield every stored event with ``seq > after`` in order, as ``Entry(seq, component,
        body)``. Reads with its own connection, a chunk at a time in a worker thread, so it
        works before ``run``, during it and after it. Raises ``JournalError`` for a database of
        another schema, ``StorageFault`` if the store cannot be read now, the database's own
        error for a file that is no database."""
        store = self.store
        conn = await store_call(store, store.open_reader)
        try:
            last = after
            while True:
                entries = await store_call(
                    store, partial(conn.read_events, after=last, limit=chunk)
                )
                for entry in entries:
                    yield entry
                if len(entries) < chunk:
                    return
                last = entries[-1].seq
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)


async def store_call(store: Store, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (a call on ``store`` or one of its connections) in a worker thread; the
    store failing is a ``StorageFault``, its other errors raise as they are."""
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except store.errors as exc:
        fault = store.fault(exc)
        if fault is None:
            raise
        raise fault from exc


@asynccontextmanager
async def open_journal(
    db: Store | str | Path,
    *,
    synchronous: Synchronous = Synchronous.FULL,
    max_pending: int = 65_536,
    max_batch: int = 8_192,
    busy_timeout_s: float = 5.0,
) -> AsyncIterator[Journal]:
    """Run a ``Journal`` on ``db`` for the duration of the block (``running``). Raises as
    ``running``."""
    journal = Journal(
        db,
        synchronous=synchronous,
        max_pending=max_pending,
        max_batch=max_batch,
        busy_timeout_s=busy_timeout_s,
    )
    async with running(journal):
        yield journal


@asynccontextmanager
async def running(journal: Journal) -> AsyncIterator[Journal]:
    """Run ``journal`` (opened first, unless it is open) for the duration of the block; on
    exit (even by cancellation, once the block's own cleanup is done), flush and close it.

    Raises as ``Journal.open``; ``JournalError`` (from the block's exit) if a commit failed
    for another reason than the store (a storage fault is a state: see the module doc). An
    exception the block raises comes out as itself, not in a group (the writer's nursery is
    an inner detail).
    """
    if not journal.is_open:
        await journal.open()
    try:
        async with trio.open_nursery() as nursery:
            # The writer outlives a cancellation of the block until the block has finished its
            # cleanup (which may still append, e.g. a shutdown snapshot); then ``close`` stops
            # it.
            await nursery.start(_run_until_closed, journal)
            try:
                yield journal
            finally:
                with trio.CancelScope(shield=True):
                    await journal.close()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _run_until_closed(
    journal: Journal, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.CancelScope(shield=True):
        await journal.run(task_status=task_status)
