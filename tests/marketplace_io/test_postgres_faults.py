"""PostgreSQL going away is a storage fault like a full disk, on the session's real server: a
killed session, a stopped and restarted server (while a market takes shares), and the lock
taken by another market while ours was unreachable."""

from __future__ import annotations

import psycopg
import pytest
import trio

from marketplace.core.events import ShareRecorded
from marketplace.core.market import Market
from marketplace.durability import StorageState
from marketplace.storage import Journal, JournalError, LockLost, Record, StorageFault, open_journal
from marketplace.storage.postgres import lock_holder
from tests.pg import PostgresServer

from .miner import RawMiner, StratumError
from .node import open_node, seed_buyer


def rec(i: int) -> Record:
    return Record("market", i, f"body-{i}".encode())


def end_writer_session(url: str) -> int:
    """Terminate the session that holds the writer's lock (as a server restart or a broken
    network would end it); its pid."""
    with psycopg.connect(url, autocommit=True) as conn:
        pid = lock_holder(conn)
        assert pid is not None
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(200):  # bounded: the backend exits within milliseconds
            if lock_holder(conn) != pid:
                return pid
            trio.from_thread.check_cancelled()
    raise AssertionError("the writer's session did not end")


async def bodies(url: str) -> list[bytes]:
    return [entry.body async for entry in Journal(url).replay()]


async def test_a_lost_connection_is_a_fault_and_the_probe_reconnects(pg_url: str) -> None:
    with trio.fail_after(30):
        async with open_journal(pg_url) as journal:
            await journal.append([rec(1)])
            old = await trio.to_thread.run_sync(end_writer_session, pg_url)
            with pytest.raises(StorageFault):
                await journal.append([rec(2)])
            assert journal.fault is not None
            with pytest.raises(StorageFault):
                journal.append_nowait([rec(3)])
            await journal.probe()  # reconnects and takes the lock again
            assert journal.fault is None
            with psycopg.connect(pg_url, autocommit=True) as conn:
                assert lock_holder(conn) not in (None, old)
            assert list(await journal.append([rec(4)])) == [2]
    assert await bodies(pg_url) == [b"body-1", b"body-4"]


async def test_a_lock_another_market_took_meanwhile_stops_the_writer(pg_url: str) -> None:
    with trio.fail_after(30):
        async with open_journal(pg_url) as journal:
            await journal.append([rec(1)])
            await trio.to_thread.run_sync(end_writer_session, pg_url)
            with pytest.raises(StorageFault):
                await journal.append([rec(2)])
            # A standby took over while we could not reach the server.
            async with open_journal(pg_url) as other:
                with pytest.raises(LockLost, match="another market"):
                    await journal.probe()
                # This market never writes again; the other one does.
                with pytest.raises(JournalError):
                    journal.append_nowait([rec(3)])
                assert list(await other.append([rec(4)])) == [2]
    assert await bodies(pg_url) == [b"body-1", b"body-4"]


async def test_a_restarted_server_is_a_fault_the_market_recovers_from_by_itself(
    postgres: PostgresServer, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A market on PostgreSQL takes shares; the server stops (submits are refused, the miner
    stays connected), starts again, and the market takes shares again without a restart.
    Every acknowledged share is in the journal exactly once."""
    monkeypatch.setenv("HASHMARKET_MASTER_KEY", "ab" * 32)
    acked: list[str] = []
    with trio.fail_after(60):
        async with open_node(pg_url) as node:
            await seed_buyer(node)
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            miner = RawMiner(stream, timeout=10)
            await miner.login("seller.rig")
            for i in range(3):
                name = f"before{i}"
                assert await miner.call("mining.authorize", [f"seller.{name}", "x"]) is True
                assert await miner.submit(f"seller.{name}") is True
                acked.append(name)
            health = node.core.health
            try:
                await trio.to_thread.run_sync(postgres.stop)
                with pytest.raises(StratumError) as refused:
                    await miner.submit("seller.before0")
                assert refused.value.code == 20
                assert health.state is not StorageState.HEALTHY
            finally:
                await trio.to_thread.run_sync(postgres.start)
            # The market tries the store again on its retry schedule (1 s, 2 s, 4 s ...).
            with trio.fail_after(20):
                while health.state is not StorageState.HEALTHY:
                    await health.wait_changed()
            assert await miner.call("mining.authorize", ["seller.after", "x"]) is True
            assert await miner.submit("seller.after") is True
            acked.append("after")
    events = [Market.decode_event(e.body) async for e in Journal(pg_url).replay()]
    names = [e.worker for e in events if isinstance(e, ShareRecorded) and e.accepted]
    assert names == acked
