"""The seam between the journal's writer and a database: ``Store`` and ``StoreConnection``.

Theory of operation
-------------------
The journal (``journal.py``) owns everything about group commit (the queue, tickets, batches,
the fault state, shutdown) and knows no database. What it needs of one is here: a ``Store``
opens connections to a database holding tables ``events(seq, component, time_ms, body)``,
``snapshots`` and ``meta`` (the same layout and the same event bytes on every backend), and
says which of the database's errors are the store failing (``StorageFault``: full, I/O, lost
connection, locked) rather than a bug. A ``StoreConnection`` is synchronous: the journal calls
it from one worker thread at a time. Two backends implement it, each small:
``sqlite.SqliteStore`` (one file, the embedded default) and ``postgres.PostgresStore``
(``postgresql://...``).

Only one market may write a database. The store's writer connection (``open_writer``) holds
the database's single-writer lock for as long as it is open, so the lock and the writes can
never part: SQLite's is an ``flock`` on ``<db>.lock``, PostgreSQL's a session advisory lock on
the writer's own session. A writer that finds the lock taken raises ``NodeBusy``; one whose
lock went with a lost connection and was taken by another market meanwhile raises
``LockLost`` when it reconnects, and must stop writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple, Protocol


class Synchronous(StrEnum):
    """How durable a commit is when the journal acknowledges it."""

    #: Flushed to stable storage at every commit: acknowledged records survive power loss
    #: (SQLite ``synchronous=FULL``; PostgreSQL ``synchronous_commit=on``).
    FULL = "FULL"
    #: Acknowledged records survive a crash of the market process, not power loss (SQLite
    #: ``NORMAL`` in WAL mode; PostgreSQL ``synchronous_commit=off``, which may also drop the
    #: last commits if the database server itself crashes).
    NORMAL = "NORMAL"


class JournalError(Exception):
    """The journal could not store (or read) records. Raised to every waiter of a failed
    commit, to appenders after the journal stopped, and for a database of an unknown schema."""


class StorageFault(JournalError):
    """The store could not take a write now (disk full, I/O error, locked, connection lost):
    a state the journal is in until ``probe`` succeeds, not a bug. ``cause`` says what the
    store answered (``"database or disk is full"``)."""

    def __init__(self, cause: str) -> None:
        super().__init__(f"storage unavailable: {cause}")
        self.cause = cause


class NodeBusy(RuntimeError):
    """Another process (a serving market) holds the database's single-writer lock."""


class LockLost(JournalError):
    """The writer's connection was lost and another market took the database's lock before
    this one could reconnect: this market must stop writing (the other one is active now)."""


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


class Answer(NamedTuple):
    """What the market wrote back to an operator command of the inbox (``inbox.py``): a
    result or an error (exactly one is set)."""

    result: str | None
    error: str | None


class Row(NamedTuple):
    """One row of table ``events`` as the writer inserts it."""

    seq: int
    component: str
    time_ms: int
    body: bytes


class StoreConnection(Protocol):
    """One open connection to a journal's database (see the module doc). Synchronous: called
    from one worker thread at a time. Every method raises the database's own errors, which
    the journal sorts with ``Store.fault``."""

    def last_seq(self) -> int:
        """The highest ``seq`` in ``events`` (0: none)."""
        ...

    def insert_events(self, rows: Sequence[Row]) -> None:
        """Insert ``rows`` in one transaction, committed (rolled back if anything fails)."""
        ...

    def replace_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` in place of the stored one, in one transaction (a failed one
        leaves the old)."""
        ...

    def probe(self, stamp_ms: int) -> int:
        """One small committed write (``meta``'s ``probe_ms``), reconnecting first if the
        connection was lost; then ``last_seq``. Raises ``LockLost`` if a reconnecting writer
        finds the lock taken."""
        ...

    def read_snapshot(self) -> Snapshot | None:
        """The newest stored snapshot, if any."""
        ...

    def read_events(self, *, after: int, limit: int) -> list[Entry]:
        """At most ``limit`` events with ``seq > after``, in order."""
        ...

    def close(self) -> None:
        """Close the connection (a writer's lock is released with it)."""
        ...


class Store(Protocol):
    """A journal's database (see the module doc)."""

    @property
    def name(self) -> str:
        """What logs and errors call the database (a path, or a URL without its password)."""
        ...

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The exception classes the database raises (anything else is a bug of ours)."""
        ...

    def fault(self, error: BaseException) -> StorageFault | None:
        """``error`` (one of ``errors``) as a ``StorageFault`` if it is the store failing
        (full, I/O, locked, connection lost), ``None`` if it is a bug (a constraint...)."""
        ...

    def open_writer(self) -> StoreConnection:
        """A connection that may write, holding the database's single-writer lock; the schema
        made if missing and checked. Raises ``NodeBusy`` if another process holds the lock,
        ``JournalError`` for another schema version, the database's errors otherwise."""
        ...

    def open_reader(self) -> StoreConnection:
        """A connection for reading (no lock); the schema made if missing. Raises as
        ``open_writer`` except ``NodeBusy``."""
        ...
