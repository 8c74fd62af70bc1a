"""Vardiff with injected time: converges for a steady miner, then holds still."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from stratum.core.vardiff import Vardiff, VardiffConfig, retarget

CONFIG = VardiffConfig(
    target_share_interval_ms=10_000,
    retarget_period_ms=30_000,
    window_ms=300_000,
    min_difficulty=1e-9,
    max_difficulty=1e3,
)


def steady(hashrate: float, start: float, seconds: int) -> tuple[Vardiff, list[tuple[int, float]]]:
    """A perfectly steady miner: one share exactly every difficulty * 2**32 / hashrate."""
    vardiff = Vardiff(config=CONFIG, difficulty=start, now_ms=0)
    changes = []
    now = 0
    for _ in range(100_000):
        interval = round(vardiff.difficulty * 2**32 / hashrate * 1000)
        if now + interval > seconds * 1000:
            break
        # Silent periods: ticks fire before the next share if due.
        while vardiff.next_tick_ms < now + interval:
            tick = vardiff.next_tick_ms
            new = vardiff.on_tick(tick)
            if new is not None:
                changes.append((tick, new))
                now = tick
                interval = round(vardiff.difficulty * 2**32 / hashrate * 1000)
        now += interval
        new = vardiff.on_share(share_difficulty=vardiff.difficulty, now_ms=now)
        if new is not None:
            changes.append((now, new))
    return vardiff, changes


def test_steady_miner_converges_up_then_holds() -> None:
    hashrate = 1e6  # ideal difficulty for 10 s: 1e6 * 10 / 2**32 = 0.00233
    vardiff, changes = steady(hashrate, start=1e-5, seconds=3600)
    assert changes, "must move"
    last_change = changes[-1][0]
    assert last_change < 300_000  # converged within 5 minutes
    assert all(b[1] / a[1] <= 4.01 for a, b in zip([(0, 1e-5), *changes], changes, strict=False))
    interval = vardiff.difficulty * 2**32 / hashrate
    assert 5 <= interval <= 20
    # And then nothing for the remaining 55 minutes.


def test_steady_miner_converges_down_then_holds() -> None:
    vardiff, changes = steady(1e6, start=0.5, seconds=3600)
    assert changes
    assert changes[-1][0] < 600_000
    assert 5 <= vardiff.difficulty * 2**32 / 1e6 <= 20
    ratios = [b[1] / a[1] for a, b in zip([(0, 0.5), *changes], changes, strict=False)]
    assert all(r >= 0.249 for r in ratios)


def test_converged_miner_stays_put() -> None:
    ideal = 1e6 * 10 / 2**32
    _, changes = steady(1e6, start=ideal, seconds=7200)
    assert changes == []


def test_poisson_miner_converges_and_changes_rarely() -> None:
    for seed in range(5):
        rng = random.Random(seed)
        vardiff = Vardiff(config=CONFIG, difficulty=1e-5, now_ms=0)
        now = 0.0
        changes = []
        while now < 3_600_000:
            now += rng.expovariate(1 / (vardiff.difficulty * 2**32 / 1e6 * 1000))
            new = vardiff.on_share(share_difficulty=vardiff.difficulty, now_ms=int(now))
            if new is not None:
                changes.append((now, new))
        late = [c for c in changes if c[0] > 600_000]
        assert len(late) <= 2, (seed, late)
        assert 3 <= vardiff.difficulty * 2**32 / 1e6 <= 30


def test_silent_miner_is_lowered_by_ticks() -> None:
    vardiff = Vardiff(config=CONFIG, difficulty=1.0, now_ms=0)
    assert vardiff.on_tick(10_000) is None  # not due yet
    assert vardiff.on_tick(30_000) == 0.25
    assert vardiff.on_tick(45_000) is None
    assert vardiff.on_tick(60_000) == 0.0625


def test_bounds_and_fast_path() -> None:
    assert retarget(difficulty=1.0, shares=100, elapsed_ms=10_000, config=CONFIG) == 4.0
    assert retarget(difficulty=1.0, shares=3, elapsed_ms=1_000, config=CONFIG) == 1.0  # too early
    assert retarget(difficulty=1e3, shares=100, elapsed_ms=30_000, config=CONFIG) == 1e3  # max
    assert retarget(difficulty=1e-9, shares=0, elapsed_ms=90_000, config=CONFIG) == 1e-9  # min
    assert retarget(difficulty=1.0, shares=3, elapsed_ms=30_000, config=CONFIG) == 1.0


def test_a_step_is_at_most_four_times_even_after_rounding() -> None:
    # 0.001234 * 4 = 0.004936 would round to 0.00494, past the bound.
    assert retarget(difficulty=0.001234, shares=1000, elapsed_ms=10_000, config=CONFIG) == (
        0.001234 * 4
    )


@given(
    st.floats(1e-9, 1e3),
    st.floats(0, 10_000),
    st.integers(0, 10**8),
)
def test_retarget_respects_bounds_and_step(difficulty: float, shares: float, elapsed: int) -> None:
    new = retarget(difficulty=difficulty, shares=shares, elapsed_ms=elapsed, config=CONFIG)
    assert CONFIG.min_difficulty <= new <= CONFIG.max_difficulty
    assert difficulty / 4 <= new <= difficulty * 4 or new in (
        CONFIG.min_difficulty,
        CONFIG.max_difficulty,
    )
