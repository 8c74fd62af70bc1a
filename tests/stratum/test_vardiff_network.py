"""Vardiff over the network with MockClock: an emulated steady miner converges, then holds, and
a miner that behaves as cpuminer does takes up each new difficulty with the next job."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import msgspec
import trio
import trio.testing

from stratum.client import open_stratum_client
from stratum.core import shares
from stratum.core.client_events import NewDifficulty, NewJob
from stratum.core.shares import Algorithm
from stratum.server import StratumServer, trio_wall_clock

from .helpers import TEST_CONFIG, RecordingPool, connect, start_pool

TARGET_S = 10.0
IDEAL = 1e-6
#: Hash rate at which difficulty 1e-6 gives one share per 10 s.
HASHRATE = IDEAL * 2**32 / TARGET_S
#: Vardiff on, starting 64 times too easy; no emulated block (clean_jobs) during a test.
VARDIFF_CONFIG = msgspec.structs.replace(
    TEST_CONFIG,
    vardiff=True,
    start_difficulty=IDEAL / 64,
    target_share_interval_s=TARGET_S,
    vardiff_retarget_s=30.0,
    block_interval_s=10**7,
)


async def test_vardiff_converges_then_holds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server, pool, listeners = await start_pool(nursery, VARDIFF_CONFIG)
    miner = await connect(listeners)
    miner.timeout = 100.0
    await miner.login()
    changes: list[tuple[float, float]] = []
    start = trio.current_time()
    seen = 0
    for _ in range(400):
        elapsed = trio.current_time() - start
        if elapsed > 1500:
            break
        job = miner.jobs[miner.last_job or ""]
        # Work at the emulated hash rate on the job we have, then submit the share we found.
        await trio.sleep(job.difficulty * 2**32 / HASHRATE)
        reply = await miner.submit(miner.share())
        assert reply["result"] is True, reply
        for message in miner.received[seen:]:
            if message.get("method") == "mining.set_difficulty":
                changes.append((trio.current_time() - start, message["params"][0]))
        seen = len(miner.received)
    assert trio.current_time() - start > 1500
    # It moved up by at most x4 per step to the ideal difficulty...
    assert changes, "vardiff never moved"
    levels = [IDEAL / 64] + [d for _, d in changes]
    assert all(b / a <= 4.0 for a, b in itertools.pairwise(levels))
    assert IDEAL / 2 <= miner.difficulty <= IDEAL * 2
    # ...within the first few minutes, and held still for the remaining ~20 minutes.
    assert changes[-1][0] < 300, changes
    # Every set_difficulty was followed by a notify with a new job id.
    methods = [m.get("method") for m in miner.received]
    for i, method in enumerate(methods):
        if method == "mining.set_difficulty":
            assert methods[i + 1] == "mining.notify"
    assert server.stats.shares_rejected == {}
    assert pool.stats.accepted > 100


@dataclass
class CpuminerWork:
    """cpuminer's ``struct work``: the 76 header bytes it hashes, and what it submits with."""

    job_id: str
    prefix: bytes
    ntime: str
    extranonce2: bytes
    difficulty: float
    nonce: int = 0


class Cpuminer:
    """What cpuminer 2.5.1 does with Stratum work, step by step.

    The stratum thread (``stratum_notify``, ``stratum_gen_work``): ``mining.set_difficulty``
    only sets the next difficulty, a notify captures it (``NewJob.difficulty``), a notify with a
    new job id resets extranonce2 to zero, and every notify generates ``g_work`` from the job
    (extranonce2 then counts up). The miner thread copies ``g_work`` only when its first 76
    bytes differ from the work it is hashing (``memcmp(work.data, g_work.data, 76)``);
    otherwise it goes on with its old work: old job id, old difficulty.
    """

    def __init__(self, *, extranonce1: bytes, extranonce2_size: int) -> None:
        self.extranonce1 = extranonce1
        self.extranonce2_size = extranonce2_size
        self.job: NewJob | None = None
        self.xnonce2 = 0
        self.g_work: CpuminerWork | None = None
        self.work: CpuminerWork | None = None

    def on_job(self, job: NewJob) -> None:
        if self.job is None or job.job_id != self.job.job_id:
            self.xnonce2 = 0
        self.job = job
        # cpuminer counts extranonce2 byte-wise from its first byte: little-endian.
        extranonce2 = self.xnonce2.to_bytes(self.extranonce2_size, "little")
        self.xnonce2 += 1
        coinbase = shares.build_coinbase(
            bytes.fromhex(job.coinb1), self.extranonce1, extranonce2, bytes.fromhex(job.coinb2)
        )
        prefix = shares.header_prefix(
            version=bytes.fromhex(job.version),
            prevhash=bytes.fromhex(job.prevhash),
            merkle=shares.merkle_root(coinbase, [bytes.fromhex(b) for b in job.merkle_branch]),
            ntime=bytes.fromhex(job.ntime),
            nbits=bytes.fromhex(job.nbits),
        )
        self.g_work = CpuminerWork(job.job_id, prefix, job.ntime, extranonce2, job.difficulty)

    def take_work(self) -> CpuminerWork:
        """The miner thread's loop head: switch to ``g_work`` only if the header changed."""
        assert self.g_work is not None
        if self.work is None or self.work.prefix != self.g_work.prefix:
            self.work = dataclasses.replace(self.g_work)
        return self.work

    @staticmethod
    def find_nonce(work: CpuminerWork, limit: int = 1_000_000) -> str:
        target = shares.target_for(Algorithm.SHA256D, work.difficulty)
        for n in range(work.nonce, work.nonce + limit):
            header = work.prefix + n.to_bytes(4, "little")
            if shares.hash_to_int(shares.pow_hash(Algorithm.SHA256D, header)) <= target:
                work.nonce = n + 1
                return f"{n:08x}"
        raise AssertionError("no share within the limit")


async def test_a_miner_that_switches_work_only_on_a_new_header_takes_up_a_new_difficulty(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # No fresh template during the test: only the difficulty change can move the miner.
    config = msgspec.structs.replace(VARDIFF_CONFIG, job_interval_s=110.0)
    clock = trio_wall_clock()
    pool = RecordingPool(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    await nursery.start(pool.run)
    await nursery.start(server.run)
    assert server.port is not None
    async with open_stratum_client("127.0.0.1", server.port) as client:
        subscribed = await client.subscribe()
        assert (await client.authorize("acct.cpu")).ok
        miner = Cpuminer(
            extranonce1=bytes.fromhex(subscribed.extranonce1),
            extranonce2_size=subscribed.extranonce2_size,
        )
        announced: list[float] = [config.start_difficulty or 0.0]
        first_job = trio.Event()

        async def stratum_thread() -> None:
            async for event in client.events:
                if isinstance(event, NewDifficulty):
                    announced.append(event.difficulty)
                elif isinstance(event, NewJob):
                    miner.on_job(event)
                    first_job.set()

        nursery.start_soon(stratum_thread)
        with trio.fail_after(10):
            await first_job.wait()
        start = trio.current_time()
        # Per share: the difficulty of the latest job received when its work was taken.
        in_force: list[float] = []
        for _ in range(200):
            # Enough once shares came in at three difficulties: the start and two changes.
            if len({s.difficulty for s in pool.shares}) >= 3 or trio.current_time() - start > 100:
                break
            work = miner.take_work()
            assert miner.job is not None
            in_force.append(miner.job.difficulty)
            # Hash at the emulated rate for as long as a share of this work takes on average.
            await trio.sleep(work.difficulty * 2**32 / HASHRATE)
            result = await client.submit(
                username="acct.cpu",
                job_id=work.job_id,
                extranonce2=work.extranonce2.hex(),
                ntime=work.ntime,
                nonce=miner.find_nonce(work),
            )
            assert result.accepted, result
    assert len({s.difficulty for s in pool.shares}) >= 3, announced
    assert trio.current_time() - start < 100  # before any fresh template
    # Every share was credited at the difficulty of the latest job when its work began: the
    # miner took up each new difficulty with the very job that followed it.
    assert [s.difficulty for s in pool.shares] == in_force
