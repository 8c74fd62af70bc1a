"""Benchmark: how long a node takes to restore its state, with and without a snapshot.

Writes a journal of ``--shares`` accepted shares (plus ``--orders`` orders and a settlement
every 10,000 shares, made by the real ``Market``), then restores it as a node starts (the
assembly's ``open_core``) three ways and prints the time of each: the whole journal replayed,
a snapshot taken (encode time and size), and the restore from that snapshot with nothing after
it. Run:

    .venv/bin/python bench/restart.py [--shares 200000] [--orders 100]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import structlog
import trio

from marketplace.assembly import open_core
from marketplace.config import NodeConfig
from marketplace.core.market import Market
from marketplace.core.model import OrderType, WorkerKey
from marketplace.storage import Record
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

SHA = Algorithm.SHA256D
BATCH = 10_000


def node_config(path: Path) -> NodeConfig:
    return NodeConfig(db=str(path), faucet=True, synchronous="NORMAL")


async def write_history(path: Path, *, shares: int, orders: int) -> int:
    """A journal of real market events, made by a new node's market and appended in batches
    straight to its journal (faster than one command each); how many."""
    async with open_core(node_config(path)) as core:
        market, journal = core.market, core.journal
        now = 1_700_000_000_000
        market.create_account(account="buyer", now_ms=now)
        market.deposit(account="buyer", amount_msat=10**18, now_ms=now)
        fleet = core.fleet  # no workers: standard orders need none
        order_ids = [
            market.create_order(
                account="buyer",
                algorithm=SHA,
                type=OrderType.STANDARD,
                price_msat=1_000_000 + i,
                limit_hs=0,
                amount_msat=10**15,
                duration_s=None,
                now_ms=now,
                fleet=fleet,
            )
            for i in range(orders)
        ]
        workers = [WorkerKey(i, f"seller{i % 50}", f"w{i}", SHA) for i in range(1000)]
        pending = market.drain_events()
        total = 0
        for n in range(shares):
            now += 1
            key = workers[n % len(workers)]
            order_id = order_ids[n % len(order_ids)]
            share = Share(
                conn_id=key.conn_id,
                account=key.account,
                worker=key.worker,
                algorithm=SHA,
                source=order_id,
                difficulty=0.0001,
                accepted=True,
                reason=None,
                time_ms=now,
            )
            market.record_share(share, order_id=order_id)
            if (n + 1) % BATCH == 0:
                market.settle(now_ms=now)
                pending += market.drain_events()
                await journal.append(
                    [Record("market", e.time_ms, Market.encode_event(e)) for e in pending]
                )
                total += len(pending)
                pending = []
        pending += market.drain_events()
        if pending:
            await journal.append(
                [Record("market", e.time_ms, Market.encode_event(e)) for e in pending]
            )
            total += len(pending)
    return total


async def restore(path: Path, *, take_snapshot: bool) -> tuple[int, float, bytes]:
    """(events replayed, seconds, the market's encoded state) of a node's start on ``path``
    (the assembly's ``open_core``: journal, components, restore); optionally snapshot after."""
    started = time.perf_counter()
    async with open_core(node_config(path)) as core:
        seconds = time.perf_counter() - started
        if take_snapshot:
            started = time.perf_counter()
            core.engine.snapshot()
            print(f"snapshot: encode {(time.perf_counter() - started) * 1000:.0f} ms", end="")
    return core.replayed, seconds, core.market.encode_state()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shares", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--dir", default=None, help="directory for the database (default: tmp)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "restart.db"
        started = time.perf_counter()
        total = trio.run(partial(write_history, path, shares=args.shares, orders=args.orders))
        print(
            f"journal: {total:,} events ({args.shares:,} shares, {args.orders} orders) written "
            f"in {time.perf_counter() - started:.1f} s, {path.stat().st_size / 2**20:.1f} MiB"
        )
        events, seconds, full_state = trio.run(partial(restore, path, take_snapshot=True))
        with sqlite3.connect(path) as conn:
            (size,) = conn.execute("SELECT length(body) FROM snapshots").fetchone()
        print(f", {size / 2**10:.0f} KiB")
        print(f"full replay: {events:,} events in {seconds:.2f} s ({events / seconds:,.0f}/s)")
        events, seconds, state = trio.run(partial(restore, path, take_snapshot=False))
        assert state == full_state, "the snapshot restored a different state"
        print(f"from the snapshot: {events:,} events replayed, {seconds * 1000:.0f} ms")
    print(f"python {platform.python_version()} on {platform.platform()}, cpus={os.cpu_count()}")
    print(f"sqlite {sqlite3.sqlite_version}")
    print("command:", " ".join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
