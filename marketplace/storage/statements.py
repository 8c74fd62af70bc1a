"""The statements every backend shares: the same SQL on a SQLite file and on PostgreSQL, over
any DB-API connection (sqlite3's, psycopg's) with the backend's parameter placeholder (``?``
or ``%s``): the journal's reads (``JournalReads``) and the operator inbox's table
(``InboxConnection``; what the inbox is for: ``inbox.py``). What differs between the backends
(writing, locking, connecting) stays in ``sqlite.py`` and ``postgres.py``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from marketplace.storage.store import Answer, Entry, Snapshot


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class SqlConnection(Protocol):
    """What these statements need of a DB-API connection (sqlite3's, psycopg's)."""

    def execute(self, sql: str, params: Sequence[Any], /) -> _Cursor: ...

    def close(self) -> None: ...


class JournalReads:
    """The journal's reads (``StoreConnection.last_seq``, ``read_snapshot``, ``read_events``)
    on ``self._conn``, with the placeholder ``self._p``."""

    _conn: SqlConnection
    _p: str

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events", ()).fetchone()
        return 0 if row is None else int(row[0])

    def read_snapshot(self) -> Snapshot | None:
        row = self._conn.execute(
            "SELECT seq, time_ms, body FROM snapshots ORDER BY seq DESC LIMIT 1", ()
        ).fetchone()
        return None if row is None else Snapshot(int(row[0]), int(row[1]), bytes(row[2]))

    def read_events(self, *, after: int, limit: int) -> list[Entry]:
        rows = self._conn.execute(
            f"SELECT seq, component, body FROM events WHERE seq > {self._p}"
            f" ORDER BY seq LIMIT {self._p}",
            (after, limit),
        ).fetchall()
        return [Entry(int(seq), str(component), bytes(body)) for seq, component, body in rows]


class InboxConnection:
    """One connection to table ``operator_inbox`` (made if missing when it opened), with the
    backend's parameter placeholder (``?`` for SQLite, ``%s`` for psycopg)."""

    def __init__(self, conn: SqlConnection, *, param: str) -> None:
        self._conn = conn
        self._p = param

    def _run(self, sql: str, params: Sequence[Any]) -> _Cursor:
        return self._conn.execute(sql.replace("?", self._p), params)

    def insert(self, command: str, *, created_ms: int) -> int:
        """Add a pending command; its id."""
        rows = self._run(
            "INSERT INTO operator_inbox (command, created_ms) VALUES (?, ?) RETURNING id",
            (command, created_ms),
        ).fetchall()  # stepped to the end, so the insert is done (and committed) here
        return int(rows[0][0])

    def pending(self) -> list[tuple[int, str]]:
        """``(id, command)`` of every command with no answer, oldest first."""
        rows = self._run(
            "SELECT id, command FROM operator_inbox WHERE result IS NULL AND error IS NULL"
            " ORDER BY id",
            (),
        ).fetchall()
        return [(int(row[0]), str(row[1])) for row in rows]

    def finish(self, command_id: int, answer: Answer) -> None:
        """Write ``answer`` to the command ``command_id``."""
        self._run(
            "UPDATE operator_inbox SET result = ?, error = ? WHERE id = ?",
            (answer.result, answer.error, command_id),
        )

    def answer(self, command_id: int) -> Answer | None:
        """The answer to ``command_id`` (``None``: none yet)."""
        row = self._run(
            "SELECT result, error FROM operator_inbox WHERE id = ?", (command_id,)
        ).fetchone()
        if row is None or (row[0] is None and row[1] is None):
            return None
        return Answer(row[0], row[1])

    def close(self) -> None:
        self._conn.close()
