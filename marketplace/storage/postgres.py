"""The journal's PostgreSQL backend (psycopg 3): ``--db postgresql://user@host/dbname``.

Theory of operation
-------------------
The same tables as the SQLite file (``store.py``), with the same bytes in them: ``events(seq
BIGINT, component TEXT, time_ms BIGINT, body BYTEA)``, ``snapshots``, ``meta`` and the operator
inbox, made on first use in one transaction that a transaction-level advisory lock serialises
(two markets starting on an empty database at once must not both create them). Each group
commit is one transaction: the batch's rows go in with one ``COPY``, so a batch of thousands
of events costs one round trip and one commit. ``Synchronous.FULL`` is
``synchronous_commit=on``; ``NORMAL`` is ``off`` (a crash of the market loses nothing it
acknowledged; a crash of the database server may lose the last commits). A write waits
``busy_timeout_s`` for another session's lock (``lock_timeout``) before it is a fault.

**The single-writer lock** is a session-level advisory lock (``pg_try_advisory_lock``) taken by
the writer's own connection, so it cannot outlive the writes or be held without them: when the
market dies, its connection closes and the server releases the lock at once, and a standby
(``marketplace.standby``) takes it. A writer that finds it taken raises ``NodeBusy``.

**A lost connection** (the server restarted, the network broke: TCP keepalives and
``tcp_user_timeout`` on both ends notice a silent peer within seconds, ``_CLIENT_DEFAULTS``)
is a storage fault like a full disk: every ``psycopg.OperationalError`` is (so are a lock wait
or a statement past its timeout, a full disk on the server, a server in recovery). The journal
then probes; the probe reconnects and takes the lock again. If the old session is still alive
on the server (a half-open connection), the probe ends it (``pg_terminate_backend``, our own
session only) before taking the lock. If another market took the lock meanwhile, the probe
raises ``LockLost``: that market is the active one, and this one must never write again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg
import psycopg.errors
from psycopg import conninfo

from marketplace.storage.statements import InboxConnection, JournalReads
from marketplace.storage.store import (
    JournalError,
    LockLost,
    NodeBusy,
    Row,
    Snapshot,
    StorageFault,
    Synchronous,
)

SCHEMA_VERSION: Final = 1

#: The advisory lock held by the market that writes the database ("hashmkt" as a number).
#: Advisory locks belong to one database, so one key serves every database of a server.
WRITER_LOCK: Final = 0x686173686D6B74
#: A transaction-level advisory lock that serialises making the schema.
_SCHEMA_LOCK: Final = WRITER_LOCK + 1

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS events (
        seq BIGINT PRIMARY KEY,
        component TEXT NOT NULL,
        time_ms BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        seq BIGINT PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        body BYTEA NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS operator_inbox (
        id BIGSERIAL PRIMARY KEY,
        command TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        result TEXT,
        error TEXT
    )""",
)

#: libpq settings a URL gets unless it gives its own: a connection attempt gives up after 5 s,
#: and a server that stops answering (a partition, a dead machine) fails our socket within
#: about 10 s (keepalives, ``tcp_user_timeout``) instead of leaving a commit waiting forever.
_CLIENT_DEFAULTS: Final = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    "tcp_user_timeout": "10000",
}
#: The same on the server's side of the writer's session: if the market's machine dies (not
#: only its process, whose socket the kernel closes), the server ends its session, and so frees
#: the writer's lock for a standby, within about 4 s (a TCP session; no effect on a unix socket).
_SERVER_KEEPALIVES: Final = {
    "tcp_keepalives_idle": 2,
    "tcp_keepalives_interval": 1,
    "tcp_keepalives_count": 2,
    "tcp_user_timeout": 4000,
}
#: How long a probe waits for a half-open old session of ours to end before it gives up.
_OLD_SESSION_WAIT_S: Final = 2.0


def display_name(url: str) -> str:
    """``url`` as logs and errors may show it: no password. Raises ``ValueError`` for a URL
    psycopg cannot parse."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"bad PostgreSQL URL: {exc}") from None
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = str(parts.get("host") or "")
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def _with_defaults(url: str) -> str:
    """``url`` as a libpq conninfo with ``_CLIENT_DEFAULTS`` for what it does not set."""
    given = conninfo.conninfo_to_dict(url)
    missing = {key: value for key, value in _CLIENT_DEFAULTS.items() if key not in given}
    return conninfo.make_conninfo(url, **missing)


def is_fault(error: BaseException) -> bool:
    """Whether psycopg's ``error`` is the store failing (connection lost or refused, server
    shutting down, disk full, a timeout, a read-only server) rather than a bug."""
    return isinstance(error, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction)


class PostgresStore:
    """The journal in the PostgreSQL database at ``url`` (see the module doc)."""

    errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(
        self,
        url: str,
        *,
        synchronous: Synchronous = Synchronous.FULL,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.synchronous = Synchronous(synchronous)
        #: How long a write waits for another session's lock before it is a fault.
        self.busy_timeout_s = busy_timeout_s
        self._name = display_name(url)

    @property
    def name(self) -> str:
        return self._name

    def fault(self, error: BaseException) -> StorageFault | None:
        if not is_fault(error):
            return None
        return StorageFault(str(error).strip() or type(error).__name__)

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection, the schema made and checked. Raises ``JournalError`` for
        another schema version, psycopg's errors otherwise."""
        conn = psycopg.connect(_with_defaults(self.url), autocommit=True)
        try:
            _ensure_schema(conn, self._name)
        except BaseException:
            conn.close()
            raise
        return conn

    def open_writer(self) -> PostgresConnection:
        conn = self.connect()
        try:
            if not _try_lock(conn):
                raise NodeBusy(f"{self._name} is served by a running market")
            self.writer_settings(conn)
        except BaseException:
            conn.close()
            raise
        return PostgresConnection(self, conn, writer=True)

    def writer_settings(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """The writer's session settings: commit durability, how long to wait for a lock, and
        the server's side of the keepalives (see ``_SERVER_KEEPALIVES``)."""
        value = "on" if self.synchronous is Synchronous.FULL else "off"
        conn.execute(f"SET synchronous_commit = {value}")
        conn.execute(f"SET lock_timeout = {max(1, round(self.busy_timeout_s * 1000))}")
        for name, setting in _SERVER_KEEPALIVES.items():
            conn.execute(f"SET {name} = {setting}")

    def open_reader(self) -> PostgresConnection:
        return PostgresConnection(self, self.connect(), writer=False)

    def connect_inbox(self) -> InboxConnection:
        """A connection to the inbox table (``inbox.py``), made if missing."""
        return InboxConnection(self.connect(), param="%s")


def _ensure_schema(conn: psycopg.Connection[tuple[Any, ...]], name: str) -> None:
    row = conn.execute(
        "SELECT to_regclass('meta') IS NOT NULL AND to_regclass('operator_inbox') IS NOT NULL"
    ).fetchone()
    if row is None or not row[0]:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', %s)"
                " ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if version is None or version[0] != str(SCHEMA_VERSION):
        found = None if version is None else version[0]
        raise JournalError(
            f"{name}: journal schema version {found}, this program reads {SCHEMA_VERSION}"
        )


def _try_lock(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()
    return bool(row and row[0])


def lock_holder(conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
    """The backend pid of the session holding the writer's lock of ``conn``'s database."""
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = %s",
        (WRITER_LOCK,),
    ).fetchone()
    return None if row is None else int(row[0])


class PostgresConnection(JournalReads):
    """One connection of the journal (``StoreConnection``); a writer's holds the lock and
    reconnects in ``probe``."""

    _p = "%s"
    _conn: psycopg.Connection[tuple[Any, ...]]

    def __init__(
        self, store: PostgresStore, conn: psycopg.Connection[tuple[Any, ...]], *, writer: bool
    ) -> None:
        self._store = store
        self._conn = conn
        self._writer = writer

    def insert_events(self, rows: Sequence[Row]) -> None:
        self.load([rows], None)

    def load(self, chunks: Iterable[Sequence[Row]], snapshot: Snapshot | None) -> int:
        """Insert every row of ``chunks`` and, if given, ``snapshot`` (into an empty
        ``snapshots``) in one transaction: a migration copies a whole journal this way, all or
        nothing. Returns how many rows."""
        count = 0
        with self._conn.transaction():
            with (
                self._conn.cursor() as cursor,
                cursor.copy("COPY events (seq, component, time_ms, body) FROM STDIN") as copy,
            ):
                for rows in chunks:
                    for row in rows:
                        copy.write_row(row)
                    count += len(rows)
            if snapshot is not None:
                self._conn.execute(
                    "INSERT INTO snapshots (seq, time_ms, body) VALUES (%s, %s, %s)", snapshot
                )
        return count

    def unload(self) -> None:
        """Empty ``events`` and ``snapshots`` again: a migration whose copy did not verify
        takes it back (it holds the lock and found the tables empty)."""
        self._conn.execute("TRUNCATE events, snapshots")

    def replace_snapshot(self, snapshot: Snapshot) -> None:
        with self._conn.transaction():
            self._conn.execute("DELETE FROM snapshots")
            self._conn.execute(
                "INSERT INTO snapshots (seq, time_ms, body) VALUES (%s, %s, %s)", snapshot
            )

    def probe(self, stamp_ms: int) -> int:
        if self._conn.closed or self._conn.broken:
            self._reconnect()
        try:
            self._stamp(stamp_ms)
        except psycopg.OperationalError:
            if not (self._conn.closed or self._conn.broken):
                raise
            # The connection died since its last use (a restarted server): once more, anew.
            self._reconnect()
            self._stamp(stamp_ms)
        return self.last_seq()

    def _stamp(self, stamp_ms: int) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('probe_ms', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(stamp_ms),),
        )

    def _reconnect(self) -> None:
        old_pid = self._conn.info.backend_pid if not self._conn.closed else None
        self._conn.close()
        conn = self._store.connect()
        try:
            if self._writer:
                self._take_lock_again(conn, old_pid)
                self._store.writer_settings(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _take_lock_again(
        self, conn: psycopg.Connection[tuple[Any, ...]], old_pid: int | None
    ) -> None:
        deadline = time.monotonic() + _OLD_SESSION_WAIT_S
        while not _try_lock(conn):
            holder = lock_holder(conn)
            if holder is not None and holder != old_pid:
                raise LockLost(f"another market took {self._store.name} while it was unreachable")
            if time.monotonic() > deadline:
                raise StorageFault(f"our old session {old_pid} still holds the lock")
            if holder is not None:
                # Our own half-open session still holds it: end it, then take it.
                conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
            time.sleep(0.05)

    def close(self) -> None:
        if self._writer and not (self._conn.closed or self._conn.broken):
            # The server ends a closed session a moment later; unlocking first means the lock
            # is free when ``close`` returns (a standby or an operator command may take it).
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock_all()")
        self._conn.close()
