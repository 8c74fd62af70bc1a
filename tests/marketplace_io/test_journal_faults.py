"""The journal under storage faults: a failed write is a state (``StorageFault``), not a
stopped writer; ``probe`` brings it back; a snapshot that cannot be written leaves the events
alone. On both backends: a lock held past the busy timeout and a trigger; on SQLite (as root) a
full tmpfs; on PostgreSQL a lost connection, a restarted server and a lock another market took
meanwhile (``test_postgres_faults.py``)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import trio
import trio.testing

from marketplace.config import NodeConfig
from marketplace.operator import account_create
from marketplace.storage import (
    Answer,
    Entry,
    Inbox,
    Journal,
    JournalError,
    Record,
    StorageFault,
    is_postgres_url,
    open_journal,
)

from .diskfull import Filler, small_filesystem
from .sql import poison_trigger


def rec(i: int, size: int = 8) -> Record:
    return Record("market", i, f"body-{i}".encode().ljust(size, b"."))


async def read_all(db: str | Path) -> list[Entry]:
    return [entry async for entry in Journal(db).replay()]


async def settle(tickets: list[object]) -> list[str]:
    """Wait for every ticket; 'ok' or the exception's class name, in order."""
    results: list[str] = []
    for ticket in tickets:
        try:
            await ticket.wait()  # type: ignore[attr-defined]
        except JournalError as exc:
            results.append(type(exc).__name__)
        else:
            results.append("ok")
    return results


@contextlib.contextmanager
def write_lock_held(db: str) -> Iterator[Callable[[], None]]:
    """Another connection holds a lock that keeps the journal from writing; the function
    releases it."""
    if is_postgres_url(db):
        pg = psycopg.connect(db)  # a transaction open from the first statement
        pg.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        try:
            yield pg.rollback
        finally:
            pg.close()
        return
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        yield lambda: blocker.execute("ROLLBACK") and None
    finally:
        blocker.close()


async def test_a_lock_held_past_the_timeout_fails_the_batch_and_all_behind_it(
    journal_db: str,
) -> None:
    path = journal_db
    with trio.fail_after(20):
        async with open_journal(path, busy_timeout_s=0.05) as journal:
            await journal.append([rec(1)])
            stack = contextlib.ExitStack()
            release = stack.enter_context(write_lock_held(path))
            first = journal.append_nowait([rec(2)])
            # The writer takes this batch and waits for the lock in its thread ...
            await trio.testing.wait_all_tasks_blocked()
            behind = [journal.append_nowait([rec(3)]), journal.append_nowait([rec(4)])]
            assert await settle([first, *behind]) == ["StorageFault"] * 3
            fault = journal.fault
            assert fault is not None
            assert "lock" in fault.cause
            # A state: records are refused, the writer is still there.
            with pytest.raises(StorageFault, match="lock"):
                journal.append_nowait([rec(5)])
            with pytest.raises(StorageFault):
                await journal.wait_capacity()
            if not is_postgres_url(path):  # a row of meta needs no lock on events
                with pytest.raises(StorageFault, match="locked"):
                    await journal.probe()
            release()
            stack.close()
            await journal.probe()
            assert journal.fault is None
            assert list(await journal.append([rec(6)])) == [2]
    # Only what was acknowledged is stored, and the sequence has no hole.
    assert [(e.seq, e.body[:6]) for e in await read_all(path)] == [(1, b"body-1"), (2, b"body-6")]


async def test_a_snapshot_that_cannot_be_written_leaves_the_events_and_the_old_snapshot(
    journal_db: str,
) -> None:
    path = journal_db
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            journal.append_nowait([rec(1)])
            await journal.append_snapshot_nowait(b"old", time_ms=1).wait()
        poison_trigger(path, table="snapshots", body=b"new", message="no room for the snapshot")
        async with open_journal(path) as journal:
            events = journal.append_nowait([rec(2), rec(3)])
            snapshot = journal.append_snapshot_nowait(b"new", time_ms=2)
            after = journal.append_nowait([rec(4)])
            assert await settle([events, snapshot, after]) == ["ok", "JournalError", "ok"]
            assert journal.fault is None
            assert list(await journal.append([rec(5)])) == [5]
            stored = await journal.latest_snapshot()
    assert stored is not None
    assert (stored.seq, stored.body) == (1, b"old")
    assert [e.seq for e in await read_all(path)] == [1, 2, 3, 4, 5]


async def test_a_full_filesystem_is_a_fault_until_space_is_freed(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", size="2m") as folder:
        path = folder / "j.db"
        filler = Filler(folder)
        acknowledged: list[int] = []
        with trio.fail_after(60):
            async with open_journal(path) as journal:
                await journal.append([rec(0, 512)])
                acknowledged.append(0)
                filler.fill()
                fault: StorageFault | None = None
                # WAL space already allocated may take a few commits; bounded.
                for i in range(1, 5000):
                    try:
                        await journal.append([rec(i, 2048)])
                    except StorageFault as exc:
                        fault = exc
                        break
                    acknowledged.append(i)
                assert fault is not None, "the full disk never failed a commit"
                assert "full" in fault.cause
                with pytest.raises(StorageFault):
                    await journal.probe()
                filler.free()
                await journal.probe()
                await journal.append([rec(10_000, 512)])
                acknowledged.append(10_000)
        stored = [int(e.body.split(b"-")[1].rstrip(b".")) for e in await read_all(path)]
    assert stored == acknowledged


async def test_the_operator_inbox_reports_a_full_filesystem_as_a_fault(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", size="1m") as folder:
        inbox = Inbox(folder / "j.db")
        inbox.create()
        command_id = inbox.submit(b'{"account": "bob"}', created_ms=1)
        # The node's journal keeps the database open (and its WAL files with it).
        with contextlib.closing(sqlite3.connect(folder / "j.db")) as journal:
            journal.execute("SELECT COUNT(*) FROM operator_inbox").fetchone()
            filler = Filler(folder)
            filler.fill()
            assert inbox.pending() == [(command_id, b'{"account": "bob"}')]  # reads work
            with pytest.raises(StorageFault, match="full"):
                inbox.finish(command_id, Answer(result="{}", error=None))
            filler.free()
            inbox.finish(command_id, Answer(result="{}", error=None))
            assert inbox.pending() == []


async def test_a_database_that_cannot_be_opened_on_a_full_filesystem_is_a_fault(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "fs", size="1m") as folder:
        config = NodeConfig(db=str(folder / "node.db"), faucet=True)
        made = await trio.to_thread.run_sync(account_create, config, "alice")
        assert made["account_id"] == "alice"
        filler = Filler(folder)
        filler.fill()
        # Nobody holds the database open, so even opening it needs room (its WAL files).
        with pytest.raises(StorageFault):
            await trio.to_thread.run_sync(account_create, config, "bob")
        with trio.fail_after(10), pytest.raises(StorageFault):
            async with open_journal(config.db):
                pass
        filler.free()
        made = await trio.to_thread.run_sync(account_create, config, "bob")
        assert made["account_id"] == "bob"
