"""The real worker against the real Stratum server and its built-in pool, over loopback.

``test_miner.py`` drives the miner with a scripted pool; here nothing is scripted: one hashing
process mines against ``StratumServer`` with ``PoolWorkSource`` at a tiny difficulty, the pool
moves to a new block (a ``clean_jobs`` job), and the server is shut down and replaced by a new
one on the same port. Everything is observed on the server's side, through the shares it hands
to its work source, so a waiting test wakes on each recorded share instead of polling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from stratum.client import ClientConfig
from stratum.config import StratumConfig
from stratum.core.states import CloseReason
from stratum.server import StratumServer, trio_wall_clock
from tests.stratum.helpers import RecordingPool
from workers.miner import Miner, MinerConfig, MinerSummary

#: One share per ~130,000 hashes: a few per second on one core (~0.5 MH/s), few enough that
#: shares rarely overlap the job switch, enough to keep the test to a few seconds.
DIFFICULTY = 3e-5

#: Vardiff off so every share is checked at DIFFICULTY; the pool's own timers (a job every
#: 30 s, a block every 600 s) never fire during the test, so the only jobs are the ones the
#: test makes.
CONFIG = StratumConfig(
    host="127.0.0.1",
    port=0,
    start_difficulty=DIFFICULTY,
    min_difficulty=1e-9,
    max_difficulty=1e-3,
    vardiff=False,
)


@dataclass(frozen=True, kw_only=True)
class RunningPool:
    server: StratumServer
    pool: RecordingPool
    port: int
    stopped: trio.Event


async def start_pool(nursery: trio.Nursery, config: StratumConfig) -> RunningPool:
    """A pool and its server in ``nursery``; ``stopped`` is set once ``shutdown()`` completes."""
    clock = trio_wall_clock()
    pool = RecordingPool(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    stopped = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as inner:
                await inner.start(pool.run)
                await server.run(task_status=task_status)
                inner.cancel_scope.cancel()  # the pool's job timer never ends by itself
        finally:
            stopped.set()

    with trio.fail_after(10):
        await nursery.start(serve)
    assert server.port is not None
    return RunningPool(server=server, pool=pool, port=server.port, stopped=stopped)


async def start_miner(nursery: trio.Nursery, port: int) -> tuple[Miner, trio.Event]:
    """A one-process miner in ``nursery``; the event is set once its ``run`` has returned."""
    miner = Miner(
        MinerConfig(
            host="127.0.0.1",
            port=port,
            user="acct.rig",
            processes=1,
            status_interval=60,
            backoff_initial=0.05,
            backoff_max=0.2,
            client=ClientConfig(connect_timeout=5, request_timeout=5),
        )
    )
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await miner.run(task_status=task_status)
        finally:
            done.set()

    with trio.fail_after(60):  # spawning the hashing process
        await nursery.start(run)
    return miner, done


def accepted(pool: RecordingPool, since: int = 0) -> int:
    return sum(1 for share in pool.shares[since:] if share.accepted)


def rejected(pool: RecordingPool, since: int = 0) -> list[str | None]:
    return [share.reason for share in pool.shares[since:] if not share.accepted]


async def test_worker_mines_switches_jobs_and_survives_a_restart(nursery: trio.Nursery) -> None:
    first = await start_pool(nursery, CONFIG)
    miner, miner_done = await start_miner(nursery, first.port)

    # (1) Shares are accepted, and nothing is rejected while the job does not change.
    await first.pool.wait_for(lambda: accepted(first.pool) >= 3)
    assert rejected(first.pool) == []
    assert first.server.stats.shares_accepted == first.pool.stats.accepted >= 3
    assert {share.account + "." + share.worker for share in first.pool.shares} == {"acct.rig"}
    assert all(share.difficulty == DIFFICULTY for share in first.pool.shares)

    # (2) The emulated network finds a block: the pool pushes a clean job. Every earlier job id
    # of the connection is stale at once (no grace), so a share naming one is a stale reject.
    # The switch happens when the server has recorded every share the miner has submitted (no
    # await in between), so the one stale share allowed is one the miner submitted before the
    # new job reached it: a share found on the old job and already on its way.
    await first.pool.wait_for(lambda: len(first.pool.shares) == miner.stats[0].submitted)
    (conn,) = first.server.connections()
    old_ids = set(conn.session.jobs)
    chain = first.pool.chain
    chain.advance(chain.next_block_ms)
    job = first.pool.new_job()
    assert job.clean_jobs
    (new_id,) = conn.session.jobs  # the old ids are gone: only the new job is submittable
    assert new_id not in old_ids
    switch = len(first.pool.shares)
    await first.pool.wait_for(lambda: accepted(first.pool, switch) >= 3)
    after = rejected(first.pool, switch)
    assert after in ([], ["stale"]), "only a share already in flight may name an old job"
    assert miner.stats[0].job_id == new_id

    # (3) The server shuts down and a new one starts on the same port: the miner reconnects.
    first.server.shutdown()
    with trio.fail_after(10):
        await first.stopped.wait()
    assert first.server.stats.closed == {CloseReason.SHUTDOWN.value: 1}
    second = await start_pool(nursery, msgspec.structs.replace(CONFIG, port=first.port))
    assert second.port == first.port
    await second.pool.wait_for(lambda: accepted(second.pool) >= 3)
    # The miner withdrew the old server's work when the connection ended: nothing stale here.
    assert rejected(second.pool) == []
    assert second.server.stats.connections_total == 1
    assert miner.stats[0].connects == 2

    miner.stop()
    with trio.fail_after(10):
        await miner_done.wait()
    summary = miner.summary
    assert isinstance(summary, MinerSummary)
    server_accepted = first.pool.stats.accepted + second.pool.stats.accepted
    # A reply still on the wire when a connection ends is lost to the miner, never invented.
    assert 0 < summary.accepted <= server_accepted
    assert set(summary.rejected) <= {"stale"}
    assert summary.rejected.get("stale", 0) <= 1
    assert summary.hashes > 0
    assert summary.workers[0].connects == 2
    # The worker reads what it serves from the server's coinbase tag (the built-in pool's).
    assert summary.workers[0].order == "pool"
    second.server.shutdown()
