"""The journal's SQLite backend: one file in WAL mode, the embedded default.

Theory of operation
-------------------
The journal's tables live in ``<db>`` (``store.py`` has the layout); every connection switches
the file to WAL mode, so readers (``replay``, the operator inbox) never block the writer, and
makes the schema if it is missing. The writer's ``synchronous`` setting decides what an
acknowledged commit survives (``Synchronous``). A write waits ``busy_timeout_s`` for another
connection's lock before it is a fault.

The writer holds an exclusive ``flock`` on ``<db>.lock`` (which records its pid) for as long as
its connection is open: the database's single-writer lock (a serving market holds it for its
life). Any ``sqlite3.OperationalError`` (full, I/O error, locked, cannot open) is the store
failing; every other SQLite error (a constraint, misuse, corruption) is a bug.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

from marketplace.storage.statements import InboxConnection, JournalReads
from marketplace.storage.store import (
    JournalError,
    NodeBusy,
    Row,
    Snapshot,
    StorageFault,
    Synchronous,
)

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

_INBOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS operator_inbox (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    result TEXT,
    error TEXT
)
"""


#: Rows per ``INSERT`` statement at most (4 parameters a row: under 999, the oldest SQLite's
#: limit on parameters). Why not ``executemany`` over the rows: the sqlite3 module releases
#: the GIL for every row's step and must take it back from the busy trio thread after each (a
#: wait of up to the switch interval, and two thread switches): with 1,000 Stratum connections
#: a batch of ~900 shares spent 13-80 ms in the thread that way, 4-46 ms in 128-row statements.
#: A batch of up to this many rows is one statement, so one transaction without BEGIN/COMMIT
#: (a commit of 8 events: 541 -> 417 us of CPU with FULL, 302 -> 242 with NORMAL).
MAX_INSERT_ROWS: Final = 128
_INSERT_SQL: Final = {
    rows: "INSERT INTO events (seq, component, time_ms, body) VALUES "
    + ", ".join(["(?, ?, ?, ?)"] * rows)
    for rows in range(1, MAX_INSERT_ROWS + 1)
}
#: Room in the connection's statement cache for every size above, and the few others.
_CACHED_STATEMENTS: Final = MAX_INSERT_ROWS + 32


def lock_path(db: str | Path) -> Path:
    """``<db>.lock``: held by the process that writes the database at ``db``."""
    path = Path(db)
    return path.with_name(path.name + ".lock")


def hold_lock(db: str | Path) -> IO[str]:
    """Take the exclusive lock of the database at ``db`` (``<db>.lock``, which then records
    our pid); the open lock file, whose closing releases it (so does our death). Raises
    ``NodeBusy`` if another process holds it, ``OSError`` if the file cannot be made."""
    handle = lock_path(db).open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeBusy(f"{db} is served by a running node") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
    except BaseException:
        handle.close()
        raise
    return handle


def connect(path: str, synchronous: Synchronous, busy_timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection to the file at ``path`` in WAL mode, the schema made and checked. Raises
    ``JournalError`` for another schema version or a file that cannot use WAL, SQLite's
    errors otherwise."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False because
    # trio's worker threads are pooled; the journal serialises every use.
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=busy_timeout_s,
        cached_statements=_CACHED_STATEMENTS,
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


def cause_of(error: BaseException) -> str:
    """What SQLite said, with its error name (``database or disk is full (SQLITE_FULL)``)."""
    name = getattr(error, "sqlite_errorname", None)
    return f"{error} ({name})" if name else str(error)


def is_fault(error: BaseException) -> bool:
    """Whether SQLite's ``error`` is the store failing (full, I/O, locked, cannot open) rather
    than a bug (a constraint, misuse, corruption)."""
    return isinstance(error, sqlite3.OperationalError)


class SqliteStore:
    """The journal in the SQLite file at ``path`` (see the module doc)."""

    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = Synchronous.FULL,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.synchronous = Synchronous(synchronous)
        self.busy_timeout_s = busy_timeout_s

    @property
    def name(self) -> str:
        return self.path

    def fault(self, error: BaseException) -> StorageFault | None:
        return StorageFault(cause_of(error)) if is_fault(error) else None

    def open_writer(self) -> SqliteConnection:
        lock = hold_lock(self.path)
        try:
            conn = connect(self.path, self.synchronous, self.busy_timeout_s)
        except BaseException:
            lock.close()
            raise
        return SqliteConnection(conn, lock)

    def open_reader(self) -> SqliteConnection:
        # Creates the schema on a new file too (a reader may come first, e.g. ``restore``).
        return SqliteConnection(connect(self.path, Synchronous.NORMAL), None)

    def connect_inbox(self) -> InboxConnection:
        """A connection to the inbox table (``inbox.py``), made if missing."""
        # A long busy timeout: the journal's writer commits to the same file.
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_INBOX_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return InboxConnection(conn, param="?")


class SqliteConnection(JournalReads):
    """One SQLite connection of the journal (``StoreConnection``); a writer's holds the lock."""

    _p = "?"
    _conn: sqlite3.Connection

    def __init__(self, conn: sqlite3.Connection, lock: IO[str] | None) -> None:
        self._conn = conn
        self._lock = lock

    def insert_events(self, rows: Sequence[Row]) -> None:
        # As few statements as MAX_INSERT_ROWS allows, each run once with all its rows.
        self._transaction(
            *(
                (_INSERT_SQL[len(chunk)], [tuple(value for row in chunk for value in row)])
                for start in range(0, len(rows), MAX_INSERT_ROWS)
                for chunk in (rows[start : start + MAX_INSERT_ROWS],)
            )
        )

    def replace_snapshot(self, snapshot: Snapshot) -> None:
        self._transaction(
            ("DELETE FROM snapshots", [()]),
            ("INSERT INTO snapshots (seq, time_ms, body) VALUES (?, ?, ?)", [snapshot]),
        )

    def probe(self, stamp_ms: int) -> int:
        self._transaction(
            (
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("probe_ms", str(stamp_ms))],
            )
        )
        return self.last_seq()

    def read_rows(self, *, after: int, limit: int) -> list[Row]:
        """At most ``limit`` whole rows of ``events`` with ``seq > after``, in order (what a
        migration copies: the time too)."""
        cursor = self._conn.execute(
            "SELECT seq, component, time_ms, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [Row(int(seq), str(c), int(t), bytes(body)) for seq, c, t, body in cursor]

    def close(self) -> None:
        try:
            self._conn.close()
        finally:
            if self._lock is not None:
                self._lock.close()

    def _transaction(self, *steps: tuple[str, Sequence[Sequence[Any]]]) -> None:
        """Each step's statement for each of its rows, in one write transaction, committed;
        rolled back if anything fails."""
        conn = self._conn
        if len(steps) == 1 and len(steps[0][1]) == 1:
            # One statement run once is a transaction of its own (SQLite's autocommit, rolled
            # back whole if it fails): no BEGIN and COMMIT to step, each a trip for the GIL.
            sql, (row,) = steps[0]
            conn.execute(sql, row)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in steps:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
