"""The hashing processes: real spawned processes, shares checked with the server's math."""

from __future__ import annotations

import trio

from stratum.core.shares import Algorithm
from tests.workers.test_hashing import make_work, server_accepts
from workers.hasher import Found, SlotScan, _next_chunk
from workers.hashing import Work
from workers.processes import HashingPool


def work_for(*, work_id: int, slot: int, difficulty: float = 1e-5, ntime: str = "6b0afc41") -> Work:
    base = make_work(difficulty=difficulty)
    return Work.from_notify(
        work_id=work_id,
        slot=slot,
        algorithm=Algorithm.SHA256D,
        job_id=f"job{work_id}",
        prevhash=base.prevhash.hex(),
        coinb1=base.coinb1.hex(),
        coinb2=base.coinb2.hex(),
        merkle_branch=[b.hex() for b in base.merkle_branch],
        version=base.version.hex(),
        nbits=base.nbits.hex(),
        ntime=ntime,
        extranonce1=f"{slot:08x}",
        extranonce2_size=4,
        difficulty=difficulty,
    )


def accepted_by_server(work: Work, share: Found) -> bool:
    assert share.ntime == work.ntime_hex
    return server_accepts(work, int(share.extranonce2, 16), int(share.nonce, 16))


async def receive(channel: trio.MemoryReceiveChannel[Found]) -> Found:
    with trio.fail_after(30):
        return await channel.receive()


async def test_shares_are_valid_and_stale_work_is_dropped(nursery: trio.Nursery) -> None:
    pool = HashingPool(processes=1)
    with trio.fail_after(60):
        await nursery.start(pool.run)
    found = pool.found_channel(0)
    first = work_for(work_id=1, slot=0)
    pool.set_work(0, first)
    shares = [await receive(found) for _ in range(3)]
    for share in shares:
        assert share.work_id == 1
        assert accepted_by_server(first, share)
    # A clean job: the old work is no longer submittable and the process moves to the new one.
    second = work_for(work_id=2, slot=0, ntime="6b0afc42")
    pool.set_work(0, second, clean=True)
    assert not pool.is_submittable(shares[0])
    with trio.fail_after(30):
        while pool.acknowledged.get(0) != pool.generation:
            await trio.sleep(0.01)
    assert pool.switch_latency[0] < 5  # recorded (the bench reports the real figure)
    for _ in range(3):
        share = await receive(found)
        assert share.work_id == 2, "a share of stale work reached the channel"
        assert accepted_by_server(second, share)
    assert pool.hashes_by_slot.get(0, 0) > 0


async def test_non_clean_job_keeps_older_shares_submittable(nursery: trio.Nursery) -> None:
    pool = HashingPool(processes=1)
    with trio.fail_after(60):
        await nursery.start(pool.run)
    pool.found_channel(0)
    pool.set_work(0, work_for(work_id=1, slot=0, difficulty=1e-6))
    old = Found(
        generation=1, work_id=1, slot=0, job_id="job1", extranonce2="00", ntime="0", nonce="0"
    )
    pool.set_work(0, work_for(work_id=2, slot=0, difficulty=1e-6), clean=False)
    assert pool.is_submittable(old)
    pool.set_work(0, work_for(work_id=3, slot=0, difficulty=1e-6), clean=True)
    assert not pool.is_submittable(old)
    pool.set_work(0, None)
    assert pool.current_work(0) is None


async def test_fleet_slots_share_two_processes_without_overlap(nursery: trio.Nursery) -> None:
    pool = HashingPool(processes=2)
    with trio.fail_after(60):
        await nursery.start(pool.run)
    assert len(set(pool.pids)) == 2
    works = {slot: work_for(work_id=10 + slot, slot=slot) for slot in (0, 1)}
    channels = {slot: pool.found_channel(slot) for slot in works}
    for slot, work in works.items():
        pool.set_work(slot, work)
    seen: set[tuple[int, str, str]] = set()
    halves: set[bool] = set()
    for slot, channel in channels.items():
        for _ in range(6):
            share = await receive(channel)
            assert share.slot == slot
            assert accepted_by_server(works[slot], share)
            key = (slot, share.extranonce2, share.nonce)
            assert key not in seen
            seen.add(key)
            halves.add(int(share.nonce, 16) >= 2**31)
    # Both processes (each with its half of the nonce space) found shares.
    assert halves == {False, True}
    assert set(pool.hashes_by_slot) == {0, 1}


def test_slot_scan_rolls_extranonce2_then_is_exhausted() -> None:
    work = make_work(difficulty=1.0, size=1)
    scan = SlotScan(work, 100, 110)
    assert scan.take(4)[1:] == (0, 100, 104)
    assert scan.take(4)[1:] == (0, 104, 108)
    prefix0, en2, first, last = scan.take(4)
    assert (en2, first, last) == (0, 108, 110)
    prefix1, en2, first, _ = scan.take(4)
    assert (en2, first) == (1, 100)
    assert prefix0 != prefix1
    for _ in range(2 * 255):
        scan.take(5)
    assert scan.exhausted


def test_slot_scan_without_extranonce2_space() -> None:
    scan = SlotScan(make_work(difficulty=1.0, size=0), 0, 8)
    scan.take(8)
    assert scan.exhausted


def test_chunk_size_adapts_within_bounds() -> None:
    assert _next_chunk(1000, 0.04, 0.02) == 500  # too slow: halve
    assert _next_chunk(1000, 0.001, 0.02) == 2000  # far too fast: at most double
    assert _next_chunk(1000, 0.016, 0.02) == 1250
    assert _next_chunk(1, 10.0, 0.02) == 1
    assert _next_chunk(1000, 0.0, 0.02) == 2000
