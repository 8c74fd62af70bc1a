"""The journal: group commit, order, restart, failure and shutdown, on both backends (a real
SQLite file, a real PostgreSQL database: ``journal_db``)."""

from __future__ import annotations

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
    is_postgres_url,
    open_journal,
)
from tests.pg import PostgresServer

from .sql import poison_trigger, run_sql


def rec(i: int, component: str = "market") -> Record:
    return Record(component, i, f"body-{i}".encode())


async def read_all(db: str | Path) -> list[Entry]:
    journal = Journal(db)
    return [entry async for entry in journal.replay()]


async def test_concurrent_appends_share_commits_and_all_are_durable(journal_db: str) -> None:
    path = journal_db
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


async def test_replay_order_within_and_across_appends(journal_db: str) -> None:
    path = journal_db
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
    if not is_postgres_url(path):
        assert run_sql(path, "PRAGMA journal_mode") == [("wal",)]
    times = [row[0] for row in run_sql(path, "SELECT time_ms FROM events ORDER BY seq")]
    assert times == [1, 2, 3, 4]


@pytest.mark.parametrize("size", [1, 3, 127, 128, 129, 300])
async def test_one_batch_of_any_size_is_stored_whole_and_in_order(
    journal_db: str, size: int
) -> None:
    """SQLite takes a batch up to 128 rows per statement (one alone needs no BEGIN/COMMIT):
    every size comes back row for row (seq, component, time, body) in the order appended."""
    records = [rec(i, "market" if i % 3 else "keys") for i in range(size)]
    with trio.fail_after(10):
        async with open_journal(journal_db, synchronous=Synchronous.NORMAL) as journal:
            assert list(await journal.append(records)) == list(range(1, size + 1))
    assert journal.commits == 1
    rows = run_sql(journal_db, "SELECT seq, component, time_ms, body FROM events ORDER BY seq")
    stored = [(seq, component, time_ms, bytes(body)) for seq, component, time_ms, body in rows]
    assert stored == [(i + 1, r.component, r.time_ms, r.body) for i, r in enumerate(records)]


async def test_restart_on_the_same_file_continues_the_sequence(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            await journal.append([rec(i) for i in range(5)])
        async with open_journal(path) as journal:
            assert journal.last_seq == 5
            assert list(await journal.append([rec(5), rec(6)])) == [6, 7]
            replayed = [e async for e in journal.replay(after=3)]
    assert [e.seq for e in replayed] == [4, 5, 6, 7]
    assert [e.body for e in await read_all(path)] == [f"body-{i}".encode() for i in range(7)]


async def test_replay_reads_in_chunks(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            await journal.append([rec(i) for i in range(10)])
            seqs = [e.seq async for e in journal.replay(chunk=3)]
    assert seqs == list(range(1, 11))


async def test_failed_commit_reaches_every_waiter_of_its_batch(journal_db: str) -> None:
    path = journal_db
    async with open_journal(path) as journal:
        await journal.append([rec(0)])
    # A real failure of the database: a trigger aborts the insert of one poisoned body.
    poison_trigger(path, table="events", body=b"\xde\xad", message="poisoned record")
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


async def test_close_flushes_pending_records_and_refuses_new_ones(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            tickets = [journal.append_nowait([rec(i)]) for i in range(50)]
        assert all(t.done for t in tickets)
        assert [list(await t.wait()) for t in tickets] == [[i + 1] for i in range(50)]
        with pytest.raises(JournalError, match="closed"):
            journal.append_nowait([rec(99)])
    assert len(await read_all(path)) == 50


async def test_cancellation_still_flushes_what_was_queued(journal_db: str) -> None:
    path = journal_db
    journal = Journal(path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            tickets = [journal.append_nowait([rec(i)]) for i in range(20)]
            nursery.cancel_scope.cancel()
    assert all(t.done for t in tickets)
    assert len(await read_all(path)) == 20


async def test_bounded_queue_applies_backpressure(journal_db: str) -> None:
    path = journal_db
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


async def test_unknown_schema_version_is_refused(journal_db: str) -> None:
    path = journal_db
    async with open_journal(path) as journal:
        await journal.append([rec(1)])
    run_sql(path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with trio.fail_after(10), pytest.raises(JournalError, match="schema version 99"):
        async with open_journal(path):
            pass


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
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
    postgres_server: PostgresServer | None,
    backend: str,
    batches: list[list[bytes]],
    max_batch: int,
) -> None:
    """Whatever the batch sizes and however commits group them, replay returns the records
    in enqueue order and each append's range names exactly its records."""
    if backend == "postgresql" and postgres_server is None:
        pytest.skip("PostgreSQL is not installed")

    async def main(db: str) -> tuple[list[range], list[Entry]]:
        async with open_journal(db, max_batch=max_batch) as journal:
            tickets = [
                journal.append_nowait([Record("c", i, body) for body in batch])
                for i, batch in enumerate(batches)
            ]
            ranges = [await t.wait() for t in tickets]
            entries = [e async for e in journal.replay()]
        return ranges, entries

    if postgres_server is not None and backend == "postgresql":
        url = postgres_server.create_database()
        try:
            ranges, entries = trio.run(main, url)
        finally:
            postgres_server.drop_database(url)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            ranges, entries = trio.run(main, str(Path(tmp) / "j.db"))
    flat = [body for batch in batches for body in batch]
    assert [e.body for e in entries] == flat
    assert [e.seq for e in entries] == list(range(1, len(flat) + 1))
    for batch, seqs in zip(batches, ranges, strict=True):
        assert [entries[s - 1].body for s in seqs] == batch
