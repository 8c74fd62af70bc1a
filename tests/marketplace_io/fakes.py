"""An in-memory journal for engine and scheduler tests: the engine's ``JournalPort`` with no
SQLite and no threads.

Records are stored in the order they are queued, at once; a receipt's ``wait`` is one trio
checkpoint, so a command still yields to other tasks between journaling and answering, as it
does with the real journal. With nothing running in a thread, trio's autojump clock only jumps
when every task is truly blocked on time, so timer tests are exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import trio

from marketplace.storage import Entry, Record, Snapshot


class Stored:
    """The receipt of one append: already durable (in memory)."""

    def __init__(self, seqs: range) -> None:
        self._seqs = seqs

    async def wait(self) -> range:
        await trio.lowlevel.checkpoint()
        return self._seqs


class MemoryJournal:
    """The events and the newest snapshot, in memory."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    @property
    def last_seq(self) -> int:
        return len(self.entries)

    async def wait_capacity(self) -> None:
        await trio.lowlevel.checkpoint()

    def append_nowait(self, records: Sequence[Record]) -> Stored:
        first = self.last_seq + 1
        for record in records:
            self.entries.append(Entry(self.last_seq + 1, record.component, record.body))
        return Stored(range(first, first + len(records)))

    def append_snapshot_nowait(self, body: bytes, *, time_ms: int) -> Stored:
        self.snapshot = Snapshot(self.last_seq, time_ms, body)
        return Stored(range(self.last_seq + 1, self.last_seq + 1))

    async def latest_snapshot(self) -> Snapshot | None:
        await trio.lowlevel.checkpoint()
        return self.snapshot

    async def replay(self, *, after: int = 0) -> AsyncIterator[Entry]:
        for entry in self.entries[after:]:
            await trio.lowlevel.checkpoint()
            yield entry
