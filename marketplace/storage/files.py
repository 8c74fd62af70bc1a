"""The database of a market and what goes with it: one ``Storage`` says where each part lives.

Theory of operation
-------------------
A market's durable state is one database, named by ``--db``: a SQLite file (the embedded
default) or a PostgreSQL database (``postgresql://user@host/dbname``). Every other part of a
market's storage is named after it, here and nowhere else:

- the journal (tables ``events``, ``snapshots``, ``meta``: ``journal.py``, on the backend of
  ``sqlite.py`` or ``postgres.py``) and the operator inbox (table ``operator_inbox``:
  ``inbox.py``) are in the database; SQLite adds ``<db>-wal`` and ``<db>-shm`` beside its file;
- the single-writer lock: whoever writes the journal holds it for as long as its writer
  connection is open (``Store.open_writer``), so one market at a time owns the database, and an
  operator command that finds the lock free works on the database directly. SQLite's is an
  ``flock`` on ``<db>.lock``; PostgreSQL's an advisory lock of the database;
- the key ring's master key is never in the database, so a stolen database yields no secret:
  ``HASHMARKET_MASTER_KEY``, else ``--master-key-file``, else (SQLite only) ``<db>.key``
  beside the file (``marketplace.masterkey`` reads it). A PostgreSQL database has no "beside":
  it needs one of the first two, and every market of that database must be given the same key.

``Storage`` is only names; it opens nothing until asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from marketplace.storage.backends import is_postgres_url, open_store
from marketplace.storage.inbox import Inbox
from marketplace.storage.journal import Journal, running
from marketplace.storage.sqlite import lock_path
from marketplace.storage.store import Synchronous


class Storage:
    """Where the parts of the market at ``db`` live (see the module doc); ``master_key_file``
    is where the master key is read when the environment has none."""

    def __init__(self, db: str | Path, *, master_key_file: str | Path | None = None) -> None:
        #: ``--db`` as given: a SQLite path or a ``postgresql://`` URL.
        self.db = str(db)
        self.postgres = is_postgres_url(self.db)
        self._master_key_file = None if master_key_file is None else Path(master_key_file)

    @property
    def path(self) -> Path | None:
        """The SQLite file (``None`` for PostgreSQL)."""
        return None if self.postgres else Path(self.db)

    @property
    def name(self) -> str:
        """What logs and errors call the database (a URL without its password)."""
        return open_store(self.db).name

    @property
    def lock_path(self) -> Path | None:
        """``<db>.lock``, held by the market writing a SQLite file (``None``: PostgreSQL's
        lock is an advisory lock in the database)."""
        return None if self.path is None else lock_path(self.path)

    @property
    def key_path(self) -> Path | None:
        """The master key file: ``--master-key-file``, else ``<db>.key`` beside a SQLite file,
        else ``None`` (a PostgreSQL database without one: only the environment has the key)."""
        if self._master_key_file is not None:
            return self._master_key_file
        path = self.path
        return None if path is None else path.with_name(path.name + ".key")

    @property
    def inbox(self) -> Inbox:
        """The operator inbox table in the database."""
        return Inbox(open_store(self.db))

    @asynccontextmanager
    async def open_journal(self, *, synchronous: Synchronous) -> AsyncIterator[Journal]:
        """The journal in the database (a SQLite file is created with its folder if missing),
        running for the block; flushed and closed on exit. Raises as ``journal.open_journal``
        (``NodeBusy`` while another market writes the database)."""
        async with running(await self.journal(synchronous=synchronous)) as journal:
            yield journal

    async def journal(self, *, synchronous: Synchronous) -> Journal:
        """A journal on this database, not open yet (a SQLite file's folder made)."""
        if self.path is not None:
            await trio.Path(self.path.parent).mkdir(parents=True, exist_ok=True)
        return Journal(open_store(self.db, synchronous=synchronous))
