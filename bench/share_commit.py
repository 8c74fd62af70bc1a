"""Benchmark: accepted shares per second through the durable path, and the latency it adds.

The market, engine and journal are a node's, opened by the assembly (``open_core``). Each
submitter is one emulated Stratum connection: it records accepted shares one at a time
with ``await engine.execute(lambda: market.record_share(share, order_id=...))``, exactly as the
bridge does before the server replies ``true``. Many submitters run at once, so their shares
share the journal's group commits. Printed per ``synchronous`` mode (FULL, NORMAL): shares/s,
records per commit, the process's CPU time per 1,000 shares (its threads included) and the
latency of one ``execute`` (p50, p99, max). Run:

    .venv/bin/python bench/share_commit.py [--submitters 200] [--seconds 3]
        [--modes FULL,NORMAL] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import trio

from marketplace.assembly import open_core
from marketplace.config import NodeConfig
from marketplace.core.invariants import check_invariants
from marketplace.core.model import OrderType, WorkerKey
from marketplace.storage import Synchronous
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

ALGORITHM = Algorithm.SHA256D
MH = 10**6


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def node_config(path: Path, synchronous: Synchronous) -> NodeConfig:
    return NodeConfig(db=str(path), faucet=True, synchronous=synchronous.value)


async def run_mode(
    *, path: Path, synchronous: Synchronous, submitters: int, seconds: float
) -> dict[str, float]:
    async with open_core(node_config(path, synchronous)) as core:
        market, fleet, engine, journal = core.market, core.fleet, core.engine, core.journal

        def setup() -> str:
            now = core.clock.now_ms()
            market.create_account(account="buyer", now_ms=now)
            market.create_account(account="seller", now_ms=now)
            market.deposit(account="buyer", amount_msat=10**18, now_ms=now)
            return market.create_order(
                account="buyer",
                algorithm=ALGORITHM,
                type=OrderType.STANDARD,
                price_msat=1_000_000,
                limit_hs=0,
                amount_msat=10**17,
                duration_s=None,
                now_ms=now,
                fleet=fleet,
            )

        order_id = await engine.execute(setup)
        keys = [WorkerKey(i, "seller", f"w{i}", ALGORITHM) for i in range(submitters)]
        for key in keys:
            fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=core.clock.now_ms())
        core.scheduler.rebalance()
        latencies: list[float] = []
        commits_before = journal.commits
        records_before = journal.records_written
        deadline = trio.current_time() + seconds

        async def submitter(key: WorkerKey) -> None:
            while trio.current_time() < deadline:
                share = Share(
                    conn_id=key.conn_id,
                    account=key.account,
                    worker=key.worker,
                    algorithm=ALGORITHM,
                    source=order_id,
                    difficulty=0.0001,
                    accepted=True,
                    reason=None,
                    time_ms=core.clock.now_ms(),
                )
                started = time.perf_counter()
                # As the bridge does: the order is the job's source; the fleet hears the work.
                await engine.execute(partial(market.record_share, share, order_id=share.source))
                fleet.share_accepted(worker=key, difficulty=share.difficulty, time_ms=share.time_ms)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        cpu_started = time.process_time()
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(submitter, key)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        commits = journal.commits - commits_before
        records = journal.records_written - records_before
        check_invariants(market, fleet)
    latencies.sort()
    return {
        "shares": len(latencies),
        "shares_per_s": len(latencies) / elapsed,
        "cpu_ms_per_1000": cpu * 1000 / max(len(latencies), 1) * 1000,
        "commits": commits,
        "records_per_commit": records / max(commits, 1),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


async def single_latency(*, path: Path, synchronous: Synchronous, count: int) -> float:
    """p50 of one lone ``execute`` (no concurrency): the cost of one commit round trip."""
    async with open_core(node_config(path, synchronous)) as core:
        market, engine = core.market, core.engine
        await engine.execute(lambda: market.create_account(account="s", now_ms=0))
        samples = []
        for i in range(count):
            share = Share(
                conn_id=1,
                account="s",
                worker="w",
                algorithm=ALGORITHM,
                source="",
                difficulty=0.0001,
                accepted=True,
                reason=None,
                time_ms=i,
            )
            started = time.perf_counter()
            await engine.execute(partial(market.record_share, share, order_id=None))
            samples.append(time.perf_counter() - started)
    samples.sort()
    return percentile(samples, 0.5) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--submitters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--modes", default="FULL,NORMAL")
    parser.add_argument("--dir", default=None, help="directory for the database (default: tmp)")
    args = parser.parse_args()

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    print(f"python {sys.version.split()[0]} on {platform.platform()}, cpus={os.cpu_count()}")
    print(f"sqlite {__import__('sqlite3').sqlite_version}")
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"submitters={args.submitters} seconds={args.seconds}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for mode in args.modes.split(","):
            synchronous = Synchronous(mode.strip().upper())
            lone = trio.run(
                partial(
                    single_latency,
                    path=Path(tmp) / f"lone-{synchronous.value}.db",
                    synchronous=synchronous,
                    count=200,
                )
            )
            result = trio.run(
                partial(
                    run_mode,
                    path=Path(tmp) / f"bench-{synchronous.value}.db",
                    synchronous=synchronous,
                    submitters=args.submitters,
                    seconds=args.seconds,
                )
            )
            print(
                f"synchronous={synchronous.value}: {result['shares_per_s']:,.0f} shares/s "
                f"({result['shares']:,.0f} shares, {result['commits']:,.0f} commits, "
                f"{result['records_per_commit']:.1f} records/commit, "
                f"{result['cpu_ms_per_1000']:.1f} ms CPU per 1,000, threads included); "
                "execute latency "
                f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                f"max {result['max_ms']:.2f} ms; lone execute p50 {lone:.2f} ms"
            )


if __name__ == "__main__":
    main()
