"""Benchmark: marketplace core rebalance (10,000 workers, 1,000 orders) and settlement.

Figures (floors from the task): a cold rebalance and steady-state rebalances after churn, each
under 50 ms; settlement of 100,000 shares under 1 s. Run:

    .venv/bin/python bench/market_rebalance.py [--workers 10000] [--orders 1000]
        [--shares 100000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_invariants
from marketplace.core.market import Market
from marketplace.core.model import Assignment, MarketConfig, OrderType, WorkerKey
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

ALGORITHM = Algorithm.SHA256D
MH = 10**6


def rebalance(market: Market, fleet: Fleet, *, now_ms: int) -> list[Assignment]:
    """As the scheduler does: the fleet over the market's queue."""
    return fleet.rebalance(ALGORITHM, queue=market.allocation_queue(ALGORITHM), now_ms=now_ms)


def build(
    *, workers: int, orders: int, seed: int
) -> tuple[Market, Fleet, list[WorkerKey], list[str]]:
    rng = random.Random(seed)
    config = MarketConfig(faucet=True)
    market, fleet = Market(config=config), Fleet(config=config)
    market.create_account(account="buyer", now_ms=0)
    market.deposit(account="buyer", amount_msat=10**18, now_ms=0)
    order_ids = []
    for i in range(orders):
        order_id = market.create_order(
            account="buyer",
            algorithm=ALGORITHM,
            type=OrderType.STANDARD,
            price_msat=rng.randrange(1_000_000, 500_000_000, 1000),
            limit_hs=rng.choice([0, 0, *range(2 * MH, 20 * MH, MH)])
            if i % 50 == 0
            else rng.randrange(2 * MH, 20 * MH, MH),
            amount_msat=10**12,
            duration_s=None,
            now_ms=i,
            fleet=fleet,
        )
        order_ids.append(order_id)
    keys = []
    for conn in range(workers):
        key = WorkerKey(conn, f"seller{conn % 100}", f"w{conn}", ALGORITHM)
        fleet.worker_joined(worker=key, estimate_hs=rng.randrange(MH // 2, 2 * MH), now_ms=1000)
        keys.append(key)
    return market, fleet, keys, order_ids


def bench_rebalance(*, workers: int, orders: int, rounds: int) -> tuple[float, list[float], int]:
    rng = random.Random(2)
    market, fleet, keys, order_ids = build(workers=workers, orders=orders, seed=1)
    now = 2000
    t0 = time.perf_counter()
    moves = rebalance(market, fleet, now_ms=now)
    cold = time.perf_counter() - t0
    assert len(moves) > 0
    check_invariants(market, fleet)
    steady = []
    conn = workers
    total_moves = 0
    for _ in range(rounds):
        now += 5000
        # Churn: 1% of workers leave and as many join, a few prices move, one order is cancelled.
        for key in rng.sample(keys, workers // 100):
            fleet.worker_left(worker=key, now_ms=now)
            keys.remove(key)
            new = WorkerKey(conn, key.account, f"w{conn}", ALGORITHM)
            conn += 1
            fleet.worker_joined(worker=new, estimate_hs=rng.randrange(MH // 2, 2 * MH), now_ms=now)
            keys.append(new)
        for order_id in rng.sample(order_ids, 5):
            order = market.book.orders[order_id]
            if order.active:
                market.set_price(
                    account="buyer",
                    order_id=order_id,
                    price_msat=order.price_msat + 1000,
                    now_ms=now,
                )
        market.cancel(
            account="buyer", order_id=order_ids.pop(rng.randrange(len(order_ids))), now_ms=now
        )
        t0 = time.perf_counter()
        total_moves += len(rebalance(market, fleet, now_ms=now))
        steady.append(time.perf_counter() - t0)
    check_invariants(market, fleet)
    return cold, steady, total_moves


def bench_settlement(*, shares: int, orders: int, workers: int) -> tuple[float, float]:
    """Seconds to record ``shares`` shares, and seconds for the settlement that pays them."""
    market, fleet, keys, _ = build(workers=workers, orders=orders, seed=3)
    rebalance(market, fleet, now_ms=2000)
    rng = random.Random(4)
    served: list[tuple[WorkerKey, str]] = []
    for key in keys:
        order_id = fleet.assignment(key)
        if order_id is not None:
            served.append((key, order_id))
    by_conn = {key.conn_id: key for key in keys}
    difficulties = [0.001, 0.002, 0.0035, 0.01, 1.0 / 3.0]
    batch = [
        Share(
            conn_id=key.conn_id,
            account=key.account,
            worker=key.worker,
            algorithm=ALGORITHM,
            source=order_id,
            difficulty=rng.choice(difficulties),
            accepted=True,
            reason=None,
            time_ms=3000 + i // 100,
        )
        for i, (key, order_id) in enumerate(rng.choices(served, k=shares))
    ]
    t0 = time.perf_counter()
    for share in batch:
        # As the bridge does: the market records it, then the fleet counts the work.
        market.record_share(share, order_id=share.source)
        fleet.share_accepted(
            worker=by_conn[share.conn_id], difficulty=share.difficulty, time_ms=share.time_ms
        )
    recorded = time.perf_counter() - t0
    market.drain_events()
    t0 = time.perf_counter()
    market.settle(now_ms=10_000)
    settled = time.perf_counter() - t0
    check_invariants(market, fleet)
    return recorded, settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=1_000)
    parser.add_argument("--shares", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.platform()}, {os.cpu_count()} cpus")
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    cold, steady, moves = bench_rebalance(
        workers=args.workers, orders=args.orders, rounds=args.rounds
    )
    print(f"rebalance {args.workers} workers / {args.orders} orders:")
    print(f"  cold:   {cold * 1000:.1f} ms (floor 50 ms)")
    print(
        f"  steady: median {statistics.median(steady) * 1000:.1f} ms, "
        f"max {max(steady) * 1000:.1f} ms over {len(steady)} rounds with 1% worker churn, "
        f"{moves / len(steady):.0f} moves per round (floor 50 ms)"
    )
    recorded, settled = bench_settlement(
        shares=args.shares, orders=args.orders, workers=args.workers
    )
    print(f"settlement of {args.shares} shares over {args.orders} orders / {args.workers} workers:")
    print(f"  settle: {settled * 1000:.1f} ms (floor 1000 ms)")
    print(f"  record_share: {recorded / args.shares * 1e6:.1f} us per share (for reference)")


if __name__ == "__main__":
    main()
