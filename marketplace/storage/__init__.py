"""Everything a market keeps durable, in one database named by ``--db``.

- ``journal``: the append-only, group-committed event journal (the model for how a driver
  module explains itself: read its theory of operation first), the same for every backend;
- ``store``: the seam between the journal and a database (``Store``), and its errors;
- ``sqlite`` and ``postgres``: the two backends (a SQLite file, the default; PostgreSQL);
- ``inbox``: the operator inbox table in the database;
- ``files``: ``Storage``, which says where every part of a market's storage lives (the
  database, its lock, the master key).
"""

from marketplace.storage.backends import is_postgres_url, open_store
from marketplace.storage.files import Storage
from marketplace.storage.inbox import Inbox
from marketplace.storage.journal import Journal, Ticket, open_journal
from marketplace.storage.sqlite import SCHEMA_VERSION
from marketplace.storage.store import (
    Answer,
    Entry,
    JournalError,
    LockLost,
    NodeBusy,
    Record,
    Snapshot,
    StorageFault,
    Store,
    Synchronous,
)

__all__ = [
    "SCHEMA_VERSION",
    "Answer",
    "Entry",
    "Inbox",
    "Journal",
    "JournalError",
    "LockLost",
    "NodeBusy",
    "Record",
    "Snapshot",
    "Storage",
    "StorageFault",
    "Store",
    "Synchronous",
    "Ticket",
    "is_postgres_url",
    "open_journal",
    "open_store",
]
