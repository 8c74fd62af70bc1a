"""Vardiff over the network with MockClock: an emulated steady miner converges, then holds."""

from __future__ import annotations

import itertools

import msgspec
import trio
import trio.testing

from .helpers import TEST_CONFIG, connect, start_pool

TARGET_S = 10.0
IDEAL = 1e-6
#: Hash rate at which difficulty 1e-6 gives one share per 10 s.
HASHRATE = IDEAL * 2**32 / TARGET_S


async def test_vardiff_converges_then_holds(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    config = msgspec.structs.replace(
        TEST_CONFIG,
        vardiff=True,
        start_difficulty=IDEAL / 64,
        target_share_interval_s=TARGET_S,
        vardiff_retarget_s=30.0,
        block_interval_s=10**7,  # no clean_jobs during the test
    )
    server, pool, listeners = await start_pool(nursery, config)
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
