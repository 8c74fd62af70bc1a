"""The operator inbox: commands for the node that serves the database, in the database itself.

Theory of operation
-------------------
Only the serving node may change a database's state (it holds that state in memory), so an
operator command that finds the database locked (``Storage.lock``) leaves the command in table
``operator_inbox`` of the same SQLite file and waits for its answer. The node polls the table,
runs each pending command through its engine and writes back a result or an error. Commands and
results are opaque JSON text here: what they mean is the operator's (``marketplace.accounts``).
The inbox never holds a secret: answers name keys, and the operator derives secrets itself.

Every call opens its own short-lived connection (with a busy timeout, since the journal writes
to the same file), so the node side runs in a worker thread and the operator side in plain
Python. On the node's side a store that fails (full, I/O error, locked) is a ``StorageFault``:
the command stays pending and the node tries it again later.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, NamedTuple

from marketplace.storage.journal import StorageFault, is_storage_fault

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS operator_inbox (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    result TEXT,
    error TEXT
)
"""


class Answer(NamedTuple):
    """What the node wrote back: a result or an error (exactly one is set)."""

    result: str | None
    error: str | None


class Inbox:
    """The ``operator_inbox`` table of the database at ``db`` (see the module doc)."""

    def __init__(self, db: str | Path) -> None:
        self._db = str(db)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._db, timeout=10.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    # ------------------------------------------------------------------ the node's side

    def create(self) -> None:
        """Make the table if it is missing (the node does it before it says it is up)."""
        self._connect().close()

    def pending(self) -> list[tuple[int, bytes]]:
        """The commands nobody has answered yet, oldest first, as ``(id, command)``. Raises
        ``StorageFault`` if the store cannot be read now."""
        with self._node_side() as conn:
            rows = conn.execute(
                "SELECT id, command FROM operator_inbox WHERE result IS NULL AND error IS NULL"
                " ORDER BY id"
            ).fetchall()
        return [(int(row[0]), str(row[1]).encode()) for row in rows]

    def finish(self, command_id: int, answer: Answer) -> None:
        """Write back the answer to command ``command_id``. Raises ``StorageFault`` if the
        store cannot take the write now."""
        with self._node_side() as conn:
            conn.execute(
                "UPDATE operator_inbox SET result = ?, error = ? WHERE id = ?",
                (answer.result, answer.error, command_id),
            )

    @contextmanager
    def _node_side(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._connect()
            try:
                yield conn
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if not is_storage_fault(exc):
                raise
            raise StorageFault(str(exc)) from exc

    # ------------------------------------------------------------------ the operator's side

    def submit(self, command: bytes, *, created_ms: int) -> int:
        """Leave ``command`` (JSON) for the node; its id."""
        conn = self._connect()
        try:
            cursor = conn.execute(
                "INSERT INTO operator_inbox (command, created_ms) VALUES (?, ?)",
                (command.decode(), created_ms),
            )
        finally:
            conn.close()
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def wait(self, command_id: int, *, timeout_s: float, poll_s: float = 0.1) -> Answer:
        """Block until the node answered ``command_id``; its answer.

        Raises ``TimeoutError`` if no answer came within ``timeout_s``.
        """
        conn = self._connect()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT result, error FROM operator_inbox WHERE id = ?", (command_id,)
                ).fetchone()
                if row is not None and (row[0] is not None or row[1] is not None):
                    return Answer(row[0], row[1])
                time.sleep(poll_s)
        finally:
            conn.close()
        raise TimeoutError(f"the node serving {self._db} did not answer in {timeout_s} s")
