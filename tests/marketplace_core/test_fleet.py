"""The fleet alone: joins, leaves, speed estimates and rebalances against a hand-made queue,
with no market and no events."""

from __future__ import annotations

import pytest

from marketplace.core.allocation import OrderSlot
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_fleet
from marketplace.core.model import Assignment, MarketConfig, SellerKey, WorkerKey
from stratum.core.shares import HASHES_PER_DIFF1, Algorithm
from tests.marketplace_core.helpers import MH, RULES, SHA, worker

CONFIG = MarketConfig(markets={SHA: RULES}, speed_window_ms=60_000)


def test_joining_and_leaving_keep_every_worker_accounted_for() -> None:
    fleet = Fleet(config=CONFIG)
    a, b = worker(1), worker(2, "other")
    fleet.worker_joined(worker=a, estimate_hs=2 * MH, now_ms=0)
    fleet.worker_joined(worker=b, estimate_hs=0, now_ms=0)
    check_fleet(fleet)
    assert fleet.connected(SHA) == 2
    assert fleet.assignment(a) is None  # joins idle
    assert fleet.worker_speed(a, now_ms=0) == 2 * MH
    assert fleet.worker_speed(b, now_ms=0) == RULES.start_estimate_hs  # 0: the market's default
    # Joining again only updates the estimate.
    fleet.worker_joined(worker=a, estimate_hs=3 * MH, now_ms=5)
    assert fleet.connected(SHA) == 2
    assert fleet.worker_speed(a, now_ms=5) == 3 * MH
    assert fleet.sellers("seller") == {SellerKey("seller", "w1", SHA): None}
    fleet.worker_left(worker=a, now_ms=6)
    fleet.worker_left(worker=a, now_ms=6)  # idempotent
    check_fleet(fleet)
    assert fleet.connected(SHA) == 1
    assert fleet.sellers("seller") == {}
    with pytest.raises(NotFound):
        fleet.worker_speed(a, now_ms=6)
    with pytest.raises(InvalidArgument):
        fleet.worker_joined(
            worker=WorkerKey(9, "s", "w", Algorithm.SCRYPT), estimate_hs=1, now_ms=0
        )
    with pytest.raises(InvalidArgument):
        fleet.rebalance(Algorithm.SCRYPT, queue=[], now_ms=0)


def test_rebalance_follows_the_queue_and_moves_only_what_it_must() -> None:
    fleet = Fleet(config=CONFIG)
    keys = [worker(i) for i in range(4)]
    for key in keys:
        fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=0)
    queue = [OrderSlot("o-high", 2 * MH), OrderSlot("o-low", 0)]
    moves = fleet.rebalance(SHA, queue=queue, now_ms=0)
    assert moves == [
        Assignment(keys[0], "o-high"),
        Assignment(keys[1], "o-high"),
        Assignment(keys[2], "o-low"),
        Assignment(keys[3], "o-low"),
    ]
    check_fleet(fleet)
    assert fleet.rebalance(SHA, queue=queue, now_ms=1) == []  # stable
    assert (fleet.holders(SHA, "o-high"), fleet.holders(SHA, "o-low")) == (2, 2)
    assert set(fleet.served_orders(SHA)) == {"o-high", "o-low"}
    assert fleet.held_speeds(SHA, now_ms=1) == ({"o-high": 2 * MH, "o-low": 2 * MH}, 4 * MH)
    assert fleet.sellers("seller")[SellerKey("seller", "w0", SHA)] == "o-high"
    # A holder of the better order leaves: the lower order's newest holder moves up.
    fleet.worker_left(worker=keys[0], now_ms=2)
    assert fleet.holders(SHA, "o-high") == 1
    assert fleet.rebalance(SHA, queue=queue, now_ms=2) == [Assignment(keys[3], "o-high")]
    # An order leaving the queue (ended) gives its workers to the rest; none left: idle.
    assert fleet.rebalance(SHA, queue=[OrderSlot("o-low", 0)], now_ms=3) == [
        Assignment(keys[1], "o-low"),
        Assignment(keys[3], "o-low"),
    ]
    assert fleet.rebalance(SHA, queue=[], now_ms=4) == [
        Assignment(k, None) for k in (keys[2], keys[1], keys[3])
    ]
    assert list(fleet.served_orders(SHA)) == []
    check_fleet(fleet)


def test_accepted_work_moves_the_estimate_and_the_allocation() -> None:
    fleet = Fleet(config=CONFIG)
    slow, fast = worker(1), worker(2)
    fleet.worker_joined(worker=slow, estimate_hs=MH, now_ms=0)
    fleet.worker_joined(worker=fast, estimate_hs=MH, now_ms=0)
    # A one-worker order: the first joined takes it while estimates are equal.
    queue = [OrderSlot("o-1", MH), OrderSlot("o-2", 0)]
    fleet.rebalance(SHA, queue=queue, now_ms=0)
    assert fleet.assignment(slow) == "o-1"
    # A minute of work at ~10 MH/s from the other worker: its estimate follows the work.
    difficulty = 10 * MH * 6 / HASHES_PER_DIFF1[SHA]  # one share every 6 s at 10 MH/s
    for i in range(10):
        fleet.share_accepted(worker=fast, difficulty=difficulty, time_ms=6_000 * (i + 1))
    speed = fleet.worker_speed(fast, now_ms=60_000)
    assert 9 * MH < speed < 11 * MH
    assert fleet.worker_speed(slow, now_ms=60_000) == MH  # no share yet: its start estimate
    fleet.share_accepted(worker=worker(7), difficulty=1.0, time_ms=1)  # gone: ignored
    # Estimates change nothing until a rebalance, and a sticky allocation keeps what still
    # obeys the rule: o-1 is under its limit with the slow worker, so nothing moves.
    assert fleet.rebalance(SHA, queue=queue, now_ms=60_000) == []
    check_fleet(fleet)
