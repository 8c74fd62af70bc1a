"""An in-memory journal for engine and scheduler tests: the engine's ``JournalPort`` with no
SQLite and no threads, and a store that fails on cue.

Records are stored in the order they are queued, at once; a receipt's ``wait`` is one trio
checkpoint, so a command still yields to other tasks between journaling and answering, as it
does with the real journal. With nothing running in a thread, trio's autojump clock only jumps
when every task is truly blocked on time, so timer tests are exact.

Storage faults, as the SQLite journal has them (``JournalPort``): after ``break_store`` the
records appended are not stored; they form one batch that fails, with everything appended
behind it, when the first of their receipts is awaited. From then the journal refuses records
(``StorageFault``) until ``probe`` finds the store mended (``mend_store``). With
``break_store(lands=True)`` the failed batch is stored all the same, seen from the first
``probe`` that succeeds (a commit whose answer was lost, which the database finished after
all). ``break_snapshots`` fails snapshots only; ``break_reads`` makes ``replay`` and
``latest_snapshot`` fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import trio

from marketplace.storage import Entry, JournalError, Record, Snapshot, StorageFault


class Stored:
    """The receipt of one append: already durable (in memory), or failing with its batch."""

    def __init__(
        self,
        seqs: range,
        *,
        journal: MemoryJournal | None = None,
        records: Sequence[Record] = (),
    ) -> None:
        self._seqs = seqs
        self._journal = journal  # set while the receipt waits on a broken store's batch
        self.records = records
        self.error: JournalError | None = None

    async def wait(self) -> range:
        await trio.lowlevel.checkpoint()
        return self._outcome()

    async def wait_uncancellable(self) -> range:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self._outcome()

    def _outcome(self) -> range:
        if self._journal is not None:
            self._journal._fail_batch()
        if self.error is not None:
            raise self.error
        return self._seqs


class MemoryJournal:
    """The events and the newest snapshot, in memory."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None
        #: The failure the journal is in (``None``: it takes records).
        self.fault: StorageFault | None = None
        #: When ``probe`` was called (trio time).
        self.probed_at: list[float] = []
        self._broken: str | None = None
        self._lands = False
        self._landing: list[Record] = []
        self._snapshots_broken: str | None = None
        self._reads_broken: str | None = None
        self._batch: list[Stored] = []
        self._batch_cause = ""

    # ------------------------------------------------------------------ faults on cue

    def break_store(
        self, cause: str = "database or disk is full (injected)", *, lands: bool = False
    ) -> None:
        """Every write fails with ``cause`` until ``mend_store`` (and is stored anyway, seen
        from the first ``probe`` that succeeds, if ``lands``)."""
        self._broken = cause
        self._lands = lands

    def mend_store(self) -> None:
        """Writes succeed again (the journal takes records once ``probe`` saw it)."""
        self._broken = None

    def break_snapshots(self, cause: str | None = "snapshot too big (injected)") -> None:
        """Snapshots fail with ``cause`` (``None``: they succeed again); events do not."""
        self._snapshots_broken = cause

    def break_reads(self, cause: str | None = "disk I/O error (injected)") -> None:
        """``replay`` and ``latest_snapshot`` fail with ``cause`` (``None``: they work)."""
        self._reads_broken = cause

    def _fail_batch(self) -> None:
        """The writer's turn: the batch appended on a broken store fails, all of it."""
        if not self._batch:
            return
        self.fault = self.fault or StorageFault(self._batch_cause)
        for receipt in self._batch:
            if self._lands:
                self._landing.extend(receipt.records)
            receipt.error = StorageFault(self.fault.cause)
            receipt._journal = None
        self._batch = []

    def _check(self) -> None:
        if self.fault is not None:
            raise StorageFault(self.fault.cause)

    # ------------------------------------------------------------------ JournalPort

    @property
    def last_seq(self) -> int:
        return len(self.entries)

    async def wait_capacity(self) -> None:
        await trio.lowlevel.checkpoint()
        self._check()

    def _join_batch(self, cause: str, records: Sequence[Record] = ()) -> Stored:
        receipt = Stored(range(0), journal=self, records=records)
        self._batch.append(receipt)
        self._batch_cause = cause
        return receipt

    def append_nowait(self, records: Sequence[Record]) -> Stored:
        self._check()
        if self._broken is not None:
            return self._join_batch(self._broken, records)
        first = self.last_seq + 1
        for record in records:
            self.entries.append(Entry(self.last_seq + 1, record.component, record.body))
        return Stored(range(first, first + len(records)))

    def append_snapshot_nowait(self, body: bytes, *, time_ms: int) -> Stored:
        self._check()
        if self._broken is not None:
            return self._join_batch(self._broken)
        receipt = Stored(range(self.last_seq + 1, self.last_seq + 1))
        if self._snapshots_broken is not None:
            receipt.error = JournalError(self._snapshots_broken)
        else:
            self.snapshot = Snapshot(self.last_seq, time_ms, body)
        return receipt

    async def probe(self) -> None:
        await trio.lowlevel.checkpoint()
        self.probed_at.append(trio.current_time())
        if self._broken is not None:
            raise StorageFault(self._broken)
        for record in self._landing:
            self.entries.append(Entry(self.last_seq + 1, record.component, record.body))
        self._landing = []
        self.fault = None

    async def latest_snapshot(self) -> Snapshot | None:
        await trio.lowlevel.checkpoint()
        if self._reads_broken is not None:
            raise StorageFault(self._reads_broken)
        return self.snapshot

    async def replay(self, *, after: int = 0) -> AsyncIterator[Entry]:
        await trio.lowlevel.checkpoint()
        for entry in self.entries[after:]:
            if self._reads_broken is not None:
                raise StorageFault(self._reads_broken)
            yield entry
            await trio.lowlevel.checkpoint()
        if self._reads_broken is not None:
            raise StorageFault(self._reads_broken)
