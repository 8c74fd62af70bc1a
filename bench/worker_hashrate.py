"""Worker hash rate: the hashlib ceiling, then the real worker with 1 and with N processes.

(a) ceiling: a tight SHA-256d midstate loop in this process, no protocol, no chunks;
(b) the worker's hashing path (``workers.processes.HashingPool``: spawned processes, chunked
    scans, generation checks, share and hash-count reports) with 1 process;
(c) the same with every core.
The pools stay up; measurement windows of (a), (b) and (c) alternate for ``--rounds`` rounds
(the idle pools wait for work, so each window has the machine to itself), and the ratios are
medians of per-round ratios, which cancel slow drifts of a shared machine. It also reports
how long the processes take to move to new work after ``set_work`` (stale work stops then).

Floors (the brief): (b) >= 0.85 x (a), and (c) with 2 processes >= 1.8 x (b).

    .venv/bin/python bench/worker_hashrate.py [--window 1] [--rounds 8] [--processes N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from workers.hasher import Found
from workers.hashing import Work
from workers.processes import HashingPool, default_processes


def make_work(work_id: int, slot: int = 0, difficulty: float = 1e-4) -> Work:
    return Work.from_notify(
        work_id=work_id,
        slot=slot,
        algorithm=Algorithm.SHA256D,
        job_id=f"bench{work_id}",
        prevhash="abcdef01" * 5 + "00000000" * 3,
        coinb1="01000000010000000000000000000000ffffffff17",
        coinb2="ffffffff0100f2052a0100000000000000",
        merkle_branch=["d1" * 32, "0b" * 32],
        version="20000000",
        nbits="1d00ffff",
        ntime=f"{0x6B0AFC41 + work_id:08x}",
        extranonce1="f000000d",
        extranonce2_size=4,
        difficulty=difficulty,
    )


def ceiling(seconds: float) -> float:
    """Hashes per second of the bare midstate loop on one core."""
    prefix = bytes(range(76))
    copy = hashlib.sha256(prefix[:64]).copy
    tail = prefix[64:]
    pack = struct.Struct("<I").pack
    sha256 = hashlib.sha256
    target_be = (2**240).to_bytes(32, "big")
    top = target_be[0]
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for nonce in range(done, done + 100_000):
            inner = copy()
            inner.update(tail + pack(nonce))
            digest = sha256(inner.digest()).digest()
            if digest[31] <= top and digest[::-1] <= target_be:
                pass
        done += 100_000
    return done / (time.perf_counter() - began)


async def _switch(pool: HashingPool, work: Work | None) -> tuple[float, int, float]:
    """Set the work, wait until every process hashes it; (time, total hashes, latency)."""
    pool.set_work(0, work)
    with trio.fail_after(30):
        while any(pool.acknowledged.get(i) != pool.generation for i in range(pool.processes)):
            await trio.sleep(0.0005)
    return time.perf_counter(), pool.total_hashes, max(pool.switch_latency.values())


async def measure(args: argparse.Namespace) -> None:
    pools = {1: HashingPool(processes=1, report_seconds=0.05)}
    if args.processes > 1:
        pools[args.processes] = HashingPool(processes=args.processes, report_seconds=0.05)
    rates: dict[str, list[float]] = {"ceiling": [], **{f"x{n}": [] for n in pools}}
    latencies: list[float] = []
    work_id = 0
    async with trio.open_nursery() as nursery:
        for pool in pools.values():
            await nursery.start(pool.run)
            nursery.start_soon(_drain, pool.found_channel(0, buffer=10_000))
        for _ in range(args.warmup):  # chunk sizes settle, caches warm
            for pool in pools.values():
                work_id += 1
                await _switch(pool, make_work(work_id))
                await trio.sleep(0.5)
                await _switch(pool, None)
        for round_no in range(args.rounds):
            # Adjacent windows share the machine's state of the moment (other programs,
            # clock speed), so their ratios are steadier than the raw figures.
            rates["ceiling"].append(ceiling(args.window))
            for n, pool in pools.items():
                work_id += 1
                t0, h0, latency = await _switch(pool, make_work(work_id))
                await trio.sleep(args.window)
                t1, h1, latency_end = await _switch(pool, None)
                rates[f"x{n}"].append((h1 - h0) / (t1 - t0))
                latencies += [latency, latency_end]
            print(
                f"round {round_no + 1}: "
                + ", ".join(f"{k} {v[-1] / 1e6:.3f} MH/s" for k, v in rates.items())
            )
        nursery.cancel_scope.cancel()
    ratio_single = statistics.median(
        b / a for a, b in zip(rates["ceiling"], rates["x1"], strict=True)
    )
    median = {key: statistics.median(values) / 1e6 for key, values in rates.items()}
    print(f"(a) hashlib midstate ceiling, 1 core: {median['ceiling']:.3f} MH/s (median)")
    print(f"(b) worker, 1 process: {median['x1']:.3f} MH/s (median)")
    print(f"(b)/(a) = {ratio_single:.3f}  (median of per-round ratios; floor 0.85)")
    if args.processes > 1:
        key = f"x{args.processes}"
        ratio_multi = statistics.median(b / a for a, b in zip(rates["x1"], rates[key], strict=True))
        print(f"(c) worker, {args.processes} processes: {median[key]:.3f} MH/s (median)")
        print(f"(c)/(b) = {ratio_multi:.3f}  (median of per-round ratios; floor 1.8 with 2)")
    print(
        "stale-work switch (set_work -> process hashing the new set): "
        f"median {statistics.median(latencies) * 1000:.1f} ms, worst {max(latencies) * 1000:.1f} ms"
    )


async def _drain(channel: trio.MemoryReceiveChannel[Found]) -> None:
    async for _ in channel:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--window", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--processes", type=int, default=default_processes())
    args = parser.parse_args()
    configure_logging("console", level="warning")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"cpu count {os.cpu_count()}, usable {default_processes()}")
    print("command: " + " ".join([sys.executable, *sys.argv]))
    trio.run(measure, args)


if __name__ == "__main__":
    main()
