"""The worker's trio main with a real hashing process, against the scripted pool over TCP."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import trio

from stratum.client import ClientConfig
from stratum.core.shares import Algorithm
from stratum.core.templates import EmulatedChain, JobStream, order_from_coinbase
from tests.workers.fakepool import FakePool
from workers.miner import Backoff, Miner, MinerConfig, _order_from_text

DIFFICULTY = 1e-5  # one share per ~43,000 hashes: several per second on one core


async def serve(nursery: trio.Nursery, pool: FakePool) -> int:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, pool.handle, 0, host="127.0.0.1")
    )
    port: int = listeners[0].socket.getsockname()[1]
    return port


def config(port: int, **overrides: object) -> MinerConfig:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "user": "acct.rig",
        "processes": 1,
        "status_interval": 0.5,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "client": ClientConfig(connect_timeout=5, request_timeout=10),
    }
    base.update(overrides)
    return MinerConfig(**base)  # type: ignore[arg-type]


async def wait_until(pool: FakePool, predicate: Callable[[], bool], seconds: float = 30) -> None:
    with trio.fail_after(seconds):
        await pool.wait_for(predicate)


@pytest.fixture
async def pool_and_port(nursery: trio.Nursery) -> tuple[FakePool, int]:
    pool = FakePool(difficulty=DIFFICULTY)
    return pool, await serve(nursery, pool)


async def start(nursery: trio.Nursery, miner: Miner) -> None:
    with trio.fail_after(60):
        await nursery.start(miner.run)


async def test_mines_and_switches_on_clean_job(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    miner = Miner(config(port))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 3)
    conn = pool.conns[0]
    old_jobs = set(conn.jobs)
    new_job = await conn.push_job(clean=True, ntime="6b0afc50")
    switch_at = len(pool.submits)
    await wait_until(
        pool, lambda: sum(1 for s in pool.submits if s.job_id == new_job and s.accepted) >= 3
    )
    after = pool.submits[switch_at:]
    stale_after = [s for s in after if s.job_id in old_jobs]
    assert len(stale_after) <= 1, "only a share already in flight may name the old job"
    assert all(s.accepted for s in pool.submits if s.job_id not in old_jobs)
    assert not [s for s in pool.submits if s.reason in ("low_difficulty", "duplicate")]
    miner.stop()
    with trio.fail_after(10):
        while miner.summary is None:
            await trio.sleep(0.01)
    summary = miner.summary
    assert summary.accepted == pool.accepted()
    assert summary.hashes > 0
    assert summary.workers[0].username == "acct.rig"
    assert summary.workers[0].difficulty == DIFFICULTY
    assert pool.received[0]["params"] == ["hashmarket-worker/0.1"]
    assert [m["method"] for m in pool.received[:3]] == [
        "mining.subscribe",
        "mining.extranonce.subscribe",
        "mining.authorize",
    ]


async def test_new_extranonce_then_job_is_mined_with_the_new_extranonce(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    miner = Miner(config(port))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 1)
    conn = pool.conns[0]
    await conn.set_extranonce("0a0b0c0d")
    new_job = await conn.push_job(clean=True, ntime="6b0afc60")
    await wait_until(
        pool, lambda: sum(1 for s in pool.submits if s.job_id == new_job and s.accepted) >= 2
    )
    assert not [s for s in pool.submits if s.reason == "low_difficulty"]


async def test_difficulty_applies_to_the_next_job(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    miner = Miner(config(port))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 1)
    conn = pool.conns[0]
    await conn.set_difficulty(DIFFICULTY * 2)
    assert miner.stats[0].difficulty == DIFFICULTY
    new_job = await conn.push_job(clean=True, ntime="6b0afc70")
    await wait_until(
        pool, lambda: sum(1 for s in pool.submits if s.job_id == new_job and s.accepted) >= 1
    )
    assert miner.stats[0].difficulty == DIFFICULTY * 2
    assert not [s for s in pool.submits if s.reason == "low_difficulty"]


async def test_reconnects_and_resumes_after_the_server_drops(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    miner = Miner(config(port))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 1)
    await pool.conns[0].stream.aclose()
    await wait_until(pool, lambda: len(pool.conns) >= 2)
    await wait_until(pool, lambda: any(s.accepted and s.conn == 2 for s in pool.submits))
    assert pool.subscribe_params[1] == ["hashmarket-worker/0.1", "5e550001"]
    assert miner.stats[0].connects == 2


async def test_follows_client_reconnect(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    other = FakePool(difficulty=DIFFICULTY)
    other_port = await serve(nursery, other)
    miner = Miner(config(port))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 1)
    await pool.conns[0].send(
        {"id": None, "method": "client.reconnect", "params": ["127.0.0.1", other_port, 0]}
    )
    await wait_until(other, lambda: other.accepted() >= 1)


async def test_fleet_members_each_have_a_connection(
    nursery: trio.Nursery, pool_and_port: tuple[FakePool, int]
) -> None:
    pool, port = pool_and_port
    miner = Miner(config(port, fleet=2, user="acct"))
    await start(nursery, miner)
    names = {"acct.worker-1", "acct.worker-2"}
    await wait_until(
        pool, lambda: {s.username for s in pool.submits if s.accepted} == names, seconds=40
    )
    assert {c.conn_id for c in pool.conns} == {1, 2}
    assert {next(iter(c.users)) for c in pool.conns} == names


def test_fleet_names() -> None:
    names = MinerConfig(host="h", port=1, user="acct.rig", fleet=3).usernames()
    assert names == ["acct.rig-1", "acct.rig-2", "acct.rig-3"]
    assert MinerConfig(host="h", port=1, user="acct.rig").usernames() == ["acct.rig"]


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    top = Backoff(initial=1, cap=10, uniform=lambda low, high: high)
    assert [top.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    top.reset()
    assert top.next_delay() == 1
    low = Backoff(initial=1, cap=10, uniform=lambda low, high: low)
    assert [low.next_delay() for _ in range(3)] == [0.5, 1, 2]
    real = Backoff(initial=1, cap=10)
    assert all(0.5 <= real.next_delay() / 1 <= 1 for _ in range(1))


def test_order_hints() -> None:
    assert _order_from_text("now serving order 42.") == "42"
    assert _order_from_text("hello") is None
    # The tag the server really writes (one test, so the two cannot drift apart again).
    chain = EmulatedChain(algorithm=Algorithm.SHA256D, block_interval_ms=600_000, now_ms=0)
    job = JobStream("o-000017", chain=chain).next_job(0)
    assert order_from_coinbase(job.coinb1) == "o-000017"
    assert order_from_coinbase(b"\x03abc/some-pool/xyz".hex()) is None
    assert order_from_coinbase("00ff") is None


async def test_stopping_waits_for_the_answers_to_shares_already_sent(
    nursery: trio.Nursery,
) -> None:
    pool = FakePool(difficulty=DIFFICULTY, submit_reply_delay=0.05)
    port = await serve(nursery, pool)
    miner = Miner(config(port))
    done = trio.Event()

    async def run() -> None:
        await miner.run()
        done.set()

    nursery.start_soon(run)
    await wait_until(pool, lambda: len(pool.submits) >= 2)
    # A submit is now waiting for its answer: stop while it is in flight.
    miner.stop()
    with trio.fail_after(10):
        await done.wait()
    # Every share the pool counted, the summary counts: none lost at the end.
    assert miner.summary is not None
    assert miner.summary.accepted == pool.accepted() >= 2


async def test_scrypt_shares_are_accepted(nursery: trio.Nursery) -> None:
    # scrypt T1 is about 2**240; 2**-7 is a target near 2**247: one share per ~500 hashes.
    pool = FakePool(difficulty=2.0**-7, algorithm=Algorithm.SCRYPT)
    port = await serve(nursery, pool)
    miner = Miner(config(port, algorithm=Algorithm.SCRYPT))
    await start(nursery, miner)
    await wait_until(pool, lambda: pool.accepted() >= 2)
    assert all(s.accepted for s in pool.submits)
