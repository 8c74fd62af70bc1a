"""The database's family of files: one ``Storage`` says where each lives and owns the lock.

Theory of operation
-------------------
A node's durable state is one SQLite file, ``<db>``, and every other file of that node is named
after it, here and nowhere else:

- ``<db>`` holds the journal (tables ``events``, ``snapshots``, ``meta``: ``journal.py``) and the
  operator inbox (table ``operator_inbox``: ``inbox.py``); SQLite adds ``<db>-wal`` and
  ``<db>-shm`` beside it in WAL mode;
- ``<db>.lock``: a serving node holds an exclusive advisory lock on it for its whole life, and
  an operator command that finds the lock free works on the database directly;
- ``<db>.key``: the key ring's master key (read by ``marketplace.masterkey``), never in the
  journal, so a stolen database yields no secret.

``Storage`` is only paths and the lock; it opens nothing until asked.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO

import trio

from marketplace.storage.inbox import Inbox
from marketplace.storage.journal import Journal, Synchronous, open_journal


class NodeBusy(RuntimeError):
    """Another process (a serving node) holds the database's lock."""


class Storage:
    """Where the files of the database at ``db`` live (see the module doc)."""

    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)

    def _beside(self, suffix: str) -> Path:
        return self.db.with_name(self.db.name + suffix)

    @property
    def lock_path(self) -> Path:
        """``<db>.lock``: held by the node serving the database."""
        return self._beside(".lock")

    @property
    def key_path(self) -> Path:
        """``<db>.key``: the key ring's master key file."""
        return self._beside(".key")

    @property
    def inbox(self) -> Inbox:
        """The operator inbox table in ``<db>``."""
        return Inbox(self.db)

    def exists(self) -> bool:
        """Whether the database file exists (a new database gets a new master key)."""
        return self.db.exists()

    @contextmanager
    def lock(self) -> Iterator[IO[str]]:
        """Hold the database's exclusive lock for the block (the file records our pid).

        Raises ``NodeBusy`` if another process holds it, ``OSError`` if the file cannot be
        made. Released when the block ends or the process dies.
        """
        self.db.parent.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise NodeBusy(f"{self.db} is served by a running node") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield handle
        finally:
            handle.close()

    @asynccontextmanager
    async def open_journal(self, *, synchronous: Synchronous) -> AsyncIterator[Journal]:
        """The journal in ``<db>`` (created with its folder if missing), running for the block;
        flushed and closed on exit. Raises as ``journal.open_journal``."""
        await trio.Path(self.db.parent).mkdir(parents=True, exist_ok=True)
        async with open_journal(self.db, synchronous=synchronous) as journal:
            yield journal
