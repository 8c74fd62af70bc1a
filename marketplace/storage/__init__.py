"""Everything a node keeps on disk, named after one database path ``<db>``.

- ``journal``: the append-only, group-committed event journal in ``<db>`` (the model for how a
  driver module explains itself: read its theory of operation first);
- ``inbox``: the operator inbox table in ``<db>``;
- ``files``: ``Storage``, which says where every ``<db>*`` file lives (the lock, the master key)
  and holds the lock.
"""

from marketplace.storage.files import NodeBusy, Storage
from marketplace.storage.inbox import Answer, Inbox
from marketplace.storage.journal import (
    SCHEMA_VERSION,
    Entry,
    Journal,
    JournalError,
    Record,
    Snapshot,
    StorageFault,
    Synchronous,
    Ticket,
    open_journal,
)

__all__ = [
    "SCHEMA_VERSION",
    "Answer",
    "Entry",
    "Inbox",
    "Journal",
    "JournalError",
    "NodeBusy",
    "Record",
    "Snapshot",
    "Storage",
    "StorageFault",
    "Synchronous",
    "Ticket",
    "open_journal",
]
