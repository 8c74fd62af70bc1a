"""The operator inbox: commands for the market that serves the database, in the database itself.

Theory of operation
-------------------
Only the serving market may change a database's state (it holds that state in memory), so an
operator command that finds the database's lock taken (``NodeBusy``) leaves the command in
table ``operator_inbox`` of the same database (the SQLite file, or the PostgreSQL database) and
waits for its answer. The market polls the table, runs each pending command through its engine
and writes back a result or an error. Commands and results are opaque JSON text here: what they
mean is the operator's (``marketplace.accounts``). The inbox never holds a secret: answers name
keys, and the operator derives secrets itself.

Every call opens its own short-lived connection (``InboxStore.connect_inbox``: a backend's, in
``sqlite.py`` and ``postgres.py``; the statements are the same for both, ``InboxConnection``),
so the market's side runs in a worker thread and the
operator's in plain Python. On the market's side a store that fails (full, I/O error, locked,
unreachable) is a ``StorageFault``: the command stays pending and the market tries it again
later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from marketplace.storage.backends import open_store
from marketplace.storage.statements import InboxConnection
from marketplace.storage.store import Answer, StorageFault


class InboxStore(Protocol):
    """A backend that holds an inbox (``SqliteStore``, ``PostgresStore``)."""

    @property
    def name(self) -> str: ...

    @property
    def errors(self) -> tuple[type[BaseException], ...]: ...

    def fault(self, error: BaseException) -> StorageFault | None: ...

    def connect_inbox(self) -> InboxConnection:
        """A connection to the inbox table, made if missing."""
        ...


class Inbox:
    """The ``operator_inbox`` table of ``db``'s database (see the module doc): a backend, or
    a SQLite path or ``postgresql://`` URL."""

    def __init__(self, db: InboxStore | str | Path) -> None:
        self._store = open_store(db) if isinstance(db, str | Path) else db

    @contextmanager
    def _connection(self) -> Iterator[InboxConnection]:
        conn = self._store.connect_inbox()
        try:
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------ the node's side

    def create(self) -> None:
        """Make the table if it is missing (the node does it before it says it is up)."""
        with self._node_side():
            pass

    def pending(self) -> list[tuple[int, bytes]]:
        """The commands nobody has answered yet, oldest first, as ``(id, command)``. Raises
        ``StorageFault`` if the store cannot be read now."""
        with self._node_side() as conn:
            return [(command_id, command.encode()) for command_id, command in conn.pending()]

    def finish(self, command_id: int, answer: Answer) -> None:
        """Write back the answer to command ``command_id``. Raises ``StorageFault`` if the
        store cannot take the write now."""
        with self._node_side() as conn:
            conn.finish(command_id, answer)

    @contextmanager
    def _node_side(self) -> Iterator[InboxConnection]:
        try:
            with self._connection() as conn:
                yield conn
        except self._store.errors as exc:
            fault = self._store.fault(exc)
            if fault is None:
                raise
            raise fault from exc

    # ------------------------------------------------------------------ the operator's side

    def submit(self, command: bytes, *, created_ms: int) -> int:
        """Leave ``command`` (JSON) for the node; its id."""
        with self._connection() as conn:
            return conn.insert(command.decode(), created_ms=created_ms)

    def wait(self, command_id: int, *, timeout_s: float, poll_s: float = 0.1) -> Answer:
        """Block until the node answered ``command_id``; its answer.

        Raises ``TimeoutError`` if no answer came within ``timeout_s``.
        """
        with self._connection() as conn:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                answer = conn.answer(command_id)
                if answer is not None:
                    return answer
                time.sleep(poll_s)
        raise TimeoutError(f"the node serving {self._store.name} did not answer in {timeout_s} s")
