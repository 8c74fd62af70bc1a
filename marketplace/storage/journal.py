"""The durable journal: an append-only SQLite table of events, written with group commit.

Theory of operation
-------------------
Every durable change in the marketplace is an event; the ``Journal`` stores them in order in
one table ``events(seq, component, time_ms, body)`` of a SQLite file in WAL mode. One writer
task owns the connection (used from one worker thread at a time through
``trio.to_thread.run_sync``); appenders never touch SQLite. An appender puts its records in the
pending queue (``append_nowait``, synchronous, so a caller can enqueue in the same atomic step
as the command that made the events) and then waits on its ticket. The writer takes
everything pending at once, writes it in one transaction and commits: while one commit is in
the thread, new appenders pile up and share the next one (group commit), so the fsync cost is
paid once per batch rather than once per record. A ticket resolves only after its transaction
committed, so with ``synchronous=FULL`` an acknowledged record survives kill -9 and power loss
(with ``NORMAL`` in WAL mode it survives kill -9; power loss may drop the last commits).

Sequence numbers are assigned by the writer in queue order, so the journal's order is exactly
the order in which records were enqueued. A snapshot (``append_snapshot_nowait``) takes its
place in the same queue and is stored in table ``snapshots`` under the seq of the last event
before it, in the same transaction as the events around it: it holds exactly the state those
events made. Only the newest snapshot is kept; events are never deleted.

The queue is bounded (``max_pending`` records): ``wait_capacity``/``append`` wait for room.
Shutdown (``close`` or cancellation) commits everything already queued before the writer
returns.

A failed transaction is rolled back, and what happens next depends on why it failed:

- **The store** (``sqlite3.OperationalError``: the disk is full, an I/O error, the database
  locked past ``busy_timeout_s``, the file gone): a state, not a bug. Every ticket of the batch
  and every ticket queued behind it (their records were made on top of the failed ones) fails
  with ``StorageFault``, and the journal refuses records (``StorageFault``) until ``probe``
  gets a write through. The writer keeps running. Whoever enqueued must put its memory back to
  what the journal holds (the engine does: ``marketplace.engine``).
- **Anything else** (a constraint, a bug): every waiter of the batch gets ``JournalError``, and
  the writer stops and raises: memory no longer matches the disk and we do not know why.

A snapshot is written in its own transaction, right after the events of its batch committed:
one that cannot be written (too big for the disk that is left) is logged
(``journal.snapshot_failed``), the previous snapshot stays, and the events are unaffected.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import structlog
import trio

T = TypeVar("T")

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    component TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    seq INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
"""

log = structlog.get_logger("marketplace.storage")


class Synchronous(StrEnum):
    """SQLite's ``synchronous`` setting for the journal (WAL mode)."""

    #: fsync the WAL at every commit: acknowledged records survive power loss.
    FULL = "FULL"
    #: no fsync at commit: acknowledged records survive a process crash, not power loss.
    NORMAL = "NORMAL"


class JournalError(Exception):
    """The journal could not store (or read) records. Raised to every waiter of a failed
    commit, to appenders after the journal stopped, and for a file of an unknown schema."""


class StorageFault(JournalError):
    """The store could not take a write now (disk full, I/O error, locked, connection lost):
    a state the journal is in until ``probe`` succeeds, not a bug. ``cause`` says what the
    store answered (``"database or disk is full"``)."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"storage unavailable: {cause}")
        self.cause = cause


def is_storage_fault(error: BaseException) -> bool:
    """Whether SQLite's ``error`` is the store failing (full, I/O, locked, cannot open) rather
    than a bug (a constraint, misuse, corruption)."""
    return isinstance(error, sqlite3.OperationalError)


def _cause(error: BaseException) -> str:
    name = getattr(error, "sqlite_errorname", None)
    return f"{error} ({name})" if name else str(error)


class Record(NamedTuple):
    """One event to append: the component that owns it, its time and its encoded body."""

    component: str
    time_ms: int
    body: bytes


class Entry(NamedTuple):
    """One stored event as ``replay`` yields it."""

    seq: int
    component: str
    body: bytes


class Snapshot(NamedTuple):
    """A stored snapshot: the state after every event up to ``seq``."""

    seq: int
    time_ms: int
    body: bytes


class Ticket:
    """The promise of one ``append_nowait``: resolves when its transaction committed."""

    __slots__ = ("_done", "_error", "first_seq", "records", "snapshot")

    def __init__(self, records: Sequence[Record], snapshot: Record | None = None) -> None:
        self.records = records
        self.snapshot = snapshot  # body and time of a snapshot (component unused)
        self.first_seq = 0
        self._done = trio.Event()
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _resolve(self, first_seq: int) -> None:
        self.first_seq = first_seq
        self._done.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    async def wait(self) -> range:
        """Wait until the records are durable; return their sequence numbers.

        Raises ``StorageFault`` if the store failed their transaction (or one before it),
        ``JournalError`` if it failed otherwise or the journal stopped first. Cancelling the
        wait does not withdraw the records: they are still written.
        """
        await self._done.wait()
        if isinstance(self._error, StorageFault):
            raise StorageFault(self._error.cause) from self._error
        if self._error is not None:
            raise JournalError(str(self._error)) from self._error
        return range(self.first_seq, self.first_seq + len(self.records))


def _connect(
    path: str, synchronous: Synchronous, busy_timeout_s: float = 5.0
) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False because
    # trio's worker threads are pooled; the writer task serialises every use.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
    )
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"{path}: could not switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous.value}")
        conn.executescript(_SCHEMA)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row[0] != str(SCHEMA_VERSION):
            raise JournalError(
                f"{path}: journal schema version {row[0]}, this program reads {SCHEMA_VERSION}"
            )
    except BaseException:
        conn.close()
        raise
    return conn


class Journal:
    """An append-only, group-committed event journal in one SQLite file (see the module doc).

    Run it as a service: ``async with open_journal(path) as journal`` or
    ``await nursery.start(journal.run)`` followed eventually by ``await journal.close()``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = Synchronous.FULL,
        max_pending: int = 65_536,
        max_batch: int = 8_192,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if max_pending < 1 or max_batch < 1:
            raise ValueError("max_pending and max_batch must be positive")
        self.path = str(path)
        self.synchronous = Synchronous(synchronous)
        self.max_pending = max_pending
        self.max_batch = max_batch
        #: How long a write waits for another connection's lock before it is a fault.
        self.busy_timeout_s = busy_timeout_s
        self._queue: deque[Ticket] = deque()
        self._queued_records = 0
        self._wakeup = trio.Event()
        self._room = trio.lowlevel.ParkingLot()
        self._conn: sqlite3.Connection | None = None
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

    async def latest_snapshot(self) -> Snapshot | None:
        """The newest stored snapshot, or ``None``. Reads with its own connection. Raises
        ``StorageFault`` if the store cannot be read."""
        conn = await _store_call(_connect_reader, self.path)
        try:
            row = await _store_call(_read_snapshot, conn)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)
        return None if row is None else Snapshot(int(row[0]), int(row[1]), bytes(row[2]))

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
                path=self.path,
                commits=self.commits,
                records=self.records_written,
                last_seq=self._last_seq,
            )

    async def open(self) -> None:
        """Open (or create) the file, check its schema and read the last sequence number.

        ``run`` does this itself when needed; calling it first surfaces a bad file as a plain
        exception. Raises ``JournalError`` for a file of another schema version or one that
        cannot use WAL, ``StorageFault`` if the store cannot be opened now (full, I/O error,
        locked), ``sqlite3.Error`` for a file that is not a database.
        """
        if self._conn is not None or self._stopped.is_set():
            raise RuntimeError("the journal is already open (or was closed)")
        conn = await _store_call(_connect, self.path, self.synchronous, self.busy_timeout_s)
        self._conn = conn
        self._last_seq = await _store_call(self._max_seq)
        log.info(
            "journal.opened",
            path=self.path,
            synchronous=self.synchronous.value,
            last_seq=self._last_seq,
        )

    def _max_seq(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(row[0])

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
            if not is_storage_fault(exc):
                self._failure = exc
                log.error("journal.commit_failed", path=self.path, records=count, error=repr(exc))
                for ticket in batch:
                    ticket._fail(exc)
                raise JournalError(f"commit of {count} records failed: {exc}") from exc
            fault = self._fault = StorageFault(_cause(exc))
            queued = len(self._queue)
            log.error(
                "journal.commit_failed",
                path=self.path,
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

    def _commit(self, batch: list[Ticket], first: int) -> sqlite3.Error | None:
        """Runs in a worker thread: one transaction for the batch's events, then one for its
        snapshot, if any. Raises what the events' transaction raised; returns what the
        snapshot's did (the events are committed either way)."""
        conn = self._conn
        assert conn is not None
        rows = []
        snapshot: tuple[int, int, bytes] | None = None
        seq = first
        for ticket in batch:
            for record in ticket.records:
                rows.append((seq, record.component, record.time_ms, record.body))
                seq += 1
            if ticket.snapshot is not None:
                snapshot = (seq - 1, ticket.snapshot.time_ms, ticket.snapshot.body)
        if rows:
            _transaction(
                conn,
                ("INSERT INTO events (seq, component, time_ms, body) VALUES (?, ?, ?, ?)", rows),
            )
        if snapshot is None:
            return None
        try:
            # The new snapshot replaces the old in one transaction: a failed one leaves the old.
            _transaction(
                conn,
                ("DELETE FROM snapshots", [()]),
                ("INSERT INTO snapshots (seq, time_ms, body) VALUES (?, ?, ?)", [snapshot]),
            )
        except sqlite3.Error as exc:
            # A snapshot is a cache: the old one stays, the journal is not at fault.
            log.error("journal.snapshot_failed", path=self.path, seq=snapshot[0], cause=_cause(exc))
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
        try:
            with trio.CancelScope(shield=True):
                last_seq = await trio.to_thread.run_sync(self._probe_write)
        except sqlite3.Error as exc:
            if not is_storage_fault(exc):
                raise JournalError(f"probe failed: {exc}") from exc
            raise StorageFault(_cause(exc)) from exc
        if last_seq != self._last_seq:
            log.warning("journal.failed_commit_was_durable", seq=self._last_seq, last_seq=last_seq)
        self._last_seq = last_seq
        self._fault = None
        self._room.unpark_all()

    def _probe_write(self) -> int:
        conn = self._conn
        assert conn is not None
        stamp = str(int(time.time() * 1000))
        _transaction(
            conn, ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [("probe_ms", stamp)])
        )
        return self._max_seq()

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

    # ------------------------------------------------------------------ reading

    async def replay(self, *, after: int = 0, chunk: int = 4_096) -> AsyncIterator[Entry]:
        """Yield every stored event with ``seq > after`` in order, as ``Entry(seq, component,
        body)``. Reads with its own connection, a chunk at a time in a worker thread, so it
        works before ``run``, during it and after it. Raises ``JournalError`` for a file of
        another schema, ``StorageFault`` if the store cannot be read now, ``sqlite3.Error`` for
        a file that is no database."""
        conn = await _store_call(_connect_reader, self.path)
        try:
            last = after
            while True:
                rows = await _store_call(_read_chunk, conn, last, chunk)
                for seq, component, body in rows:
                    yield Entry(seq, component, bytes(body))
                if len(rows) < chunk:
                    return
                last = rows[-1][0]
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)


async def _store_call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; the store failing is a ``StorageFault``."""
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except sqlite3.Error as exc:
        if not is_storage_fault(exc):
            raise
        raise StorageFault(_cause(exc)) from exc


def _transaction(conn: sqlite3.Connection, *steps: tuple[str, Sequence[tuple[Any, ...]]]) -> None:
    """Each step's statement for each of its rows, in one write transaction, committed; rolled
    back if anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in steps:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect_reader(path: str) -> sqlite3.Connection:
    # Creates the schema on a new file too (the reader may come first, e.g. ``restore``).
    return _connect(path, Synchronous.NORMAL)


def _read_snapshot(conn: sqlite3.Connection) -> tuple[int, int, bytes] | None:
    row = conn.execute("SELECT seq, time_ms, body FROM snapshots ORDER BY seq DESC LIMIT 1")
    result: tuple[int, int, bytes] | None = row.fetchone()
    return result


def _read_chunk(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, str, bytes]]:
    cursor = conn.execute(
        "SELECT seq, component, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    )
    return [(int(seq), str(component), body) for seq, component, body in cursor]


@asynccontextmanager
async def open_journal(
    path: str | Path,
    *,
    synchronous: Synchronous = Synchronous.FULL,
    max_pending: int = 65_536,
    max_batch: int = 8_192,
    busy_timeout_s: float = 5.0,
) -> AsyncIterator[Journal]:
    """Run a ``Journal`` for the duration of the block; on exit (even by cancellation, once
    the block's own cleanup is done), flush and close it.

    Raises ``JournalError`` (from the block's exit) if a commit failed for another reason than
    the store (a storage fault is a state: see the module doc). An exception the block
    raises comes out as itself, not in a group (the writer's nursery is an inner detail).
    """
    journal = Journal(
        path,
        synchronous=synchronous,
        max_pending=max_pending,
        max_batch=max_batch,
        busy_timeout_s=busy_timeout_s,
    )
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
