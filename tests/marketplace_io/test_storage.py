"""The journal: group commit, order, restart, failure and shutdown, on real SQLite files."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.storage import (
    Entry,
    Journal,
    JournalError,
    Record,
    StorageFault,
    Synchronous,
    open_journal,
)


def rec(i: int, component: str = "market") -> Record:
    return Record(component, i, f"body-{i}".encode())


async def read_all(path: Path) -> list[Entry]:
    journal = Journal(path)
    return [entry async for entry in journal.replay()]


async def test_concurrent_appends_share_commits_and_all_are_durable(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    results: dict[int, range] = {}

    async def appender(i: int) -> None:
        results[i] = await journal.append([rec(i)])

    with trio.fail_after(20):
        async with open_journal(path) as journal, trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(appender, i)
    assert journal.records_written == 300
    # Group commit: far fewer transactions than appends.
    assert journal.commits < 300 / 2
    entries = await read_all(path)
    assert [e.seq for e in entries] == list(range(1, 301))
    # Every appender got back the seq its record is stored under.
    by_seq = {e.seq: e for e in entries}
    for i, seqs in results.items():
        assert len(seqs) == 1
        assert by_seq[seqs[0]].body == f"body-{i}".encode()


async def test_replay_order_within_and_across_appends(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with trio.fail_after(10):
        async with open_journal(path, synchronous=Synchronous.NORMAL) as journal:
            first = journal.append_nowait([rec(1), rec(2, "keys"), rec(3)])
            second = journal.append_nowait([rec(4)])
            assert list(await second.wait()) == [4]
            assert list(await first.wait()) == [1, 2, 3]
            assert list(await journal.append([])) == []
    entries = await read_all(path)
    assert entries == [
        Entry(1, "market", b"body-1"),
        Entry(2, "keys", b"body-2"),
        Entry(3, "market", b"body-3"),
        Entry(4, "market", b"body-4"),
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        times = [row[0] for row in conn.execute("SELECT time_ms FROM events ORDER BY seq")]
        assert times == [1, 2, 3, 4]


async def test_restart_on_the_same_file_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            await journal.append([rec(i) for i in range(5)])
        async with open_journal(path) as journal:
            assert journal.last_seq == 5
            assert list(await journal.append([rec(5), rec(6)])) == [6, 7]
            replayed = [e async for e in journal.replay(after=3)]
    assert [e.seq for e in replayed] == [4, 5, 6, 7]
    assert [e.body for e in await read_all(path)] == [f"body-{i}".encode() for i in range(7)]


async def test_replay_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            await journal.append([rec(i) for i in range(10)])
            seqs = [e.seq async for e in journal.replay(chunk=3)]
    assert seqs == list(range(1, 11))


async def test_failed_commit_reaches_every_waiter_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with open_journal(path) as journal:
        await journal.append([rec(0)])
    # A real SQLite failure: a trigger aborts the insert of one poisoned body.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.body = x'dead' "
            "BEGIN SELECT RAISE(ABORT, 'poisoned record'); END"
        )
    journal = Journal(path)
    errors: list[BaseException] = []

    async def wait(ticket_index: int) -> None:
        try:
            await tickets[ticket_index].wait()
        except JournalError as exc:
            errors.append(exc)

    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(JournalError, match="poisoned")):
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            # Queued in one atomic step, so they share one transaction.
            tickets = [
                journal.append_nowait([rec(1)]),
                journal.append_nowait([Record("market", 2, b"\xde\xad")]),
                journal.append_nowait([rec(3), rec(4)]),
            ]
            for i in range(len(tickets)):
                nursery.start_soon(wait, i)
    assert len(errors) == 3
    assert all("poisoned" in str(e) for e in errors)
    # A constraint is a bug, not the store failing: the writer stopped, it is no fault state.
    assert not any(isinstance(e, StorageFault) for e in errors)
    assert journal.fault is None
    with pytest.raises(JournalError, match="failed"):
        journal.append_nowait([rec(5)])
    # The transaction was rolled back: only the record from before is stored.
    assert [e.seq for e in await read_all(path)] == [1]


async def test_close_flushes_pending_records_and_refuses_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            tickets = [journal.append_nowait([rec(i)]) for i in range(50)]
        assert all(t.done for t in tickets)
        assert [list(await t.wait()) for t in tickets] == [[i + 1] for i in range(50)]
        with pytest.raises(JournalError, match="closed"):
            journal.append_nowait([rec(99)])
    assert len(await read_all(path)) == 50


async def test_cancellation_still_flushes_what_was_queued(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    journal = Journal(path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            tickets = [journal.append_nowait([rec(i)]) for i in range(20)]
            nursery.cancel_scope.cancel()
    assert all(t.done for t in tickets)
    assert len(await read_all(path)) == 20


async def test_bounded_queue_applies_backpressure(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with trio.fail_after(10):
        async with open_journal(path, max_pending=4, max_batch=2) as journal:
            tickets = [journal.append_nowait([rec(i)]) for i in range(4)]
            assert journal.full
            with pytest.raises(trio.WouldBlock):
                journal.append_nowait([rec(4)])
            await journal.wait_capacity()  # the writer drains a batch and makes room
            assert not journal.full
            tickets.append(journal.append_nowait([rec(4)]))
            for t in tickets:
                await t.wait()
            assert journal.commits >= 3  # max_batch=2 splits the five records
    assert [e.seq for e in await read_all(path)] == [1, 2, 3, 4, 5]


async def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with open_journal(path) as journal:
        await journal.append([rec(1)])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with trio.fail_after(10), pytest.raises(JournalError, match="schema version 99"):
        async with open_journal(path):
            pass


@settings(max_examples=20, deadline=None)
@given(
    batches=st.lists(
        st.lists(st.binary(min_size=0, max_size=40), min_size=0, max_size=5),
        min_size=1,
        max_size=12,
    ),
    max_batch=st.integers(min_value=1, max_value=8),
)
def test_replay_is_the_enqueue_order_for_any_batches(
    batches: list[list[bytes]], max_batch: int
) -> None:
    """Whatever the batch sizes and however commits group them, replay returns the records
    in enqueue order and each append's range names exactly its records."""

    async def main(path: Path) -> tuple[list[range], list[Entry]]:
        async with open_journal(path, max_batch=max_batch) as journal:
            tickets = [
                journal.append_nowait([Record("c", i, body) for body in batch])
                for i, batch in enumerate(batches)
            ]
            ranges = [await t.wait() for t in tickets]
            entries = [e async for e in journal.replay()]
        return ranges, entries

    with tempfile.TemporaryDirectory() as tmp:
        ranges, entries = trio.run(main, Path(tmp) / "j.db")
    flat = [body for batch in batches for body in batch]
    assert [e.body for e in entries] == flat
    assert [e.seq for e in entries] == list(range(1, len(flat) + 1))
    for batch, seqs in zip(batches, ranges, strict=True):
        assert [entries[s - 1].body for s in seqs] == batch
