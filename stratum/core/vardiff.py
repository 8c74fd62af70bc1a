"""Variable difficulty: keep each connection near one share every ``target_share_interval``.

Theory of operation
-------------------
A ``Vardiff`` watches one connection's accepted shares, counted as work in units of the
difficulty currently in force (a share of half the current difficulty counts one half), since
the last change (the "window"). ``retarget()`` is the pure decision: with ``n`` shares in
``elapsed`` ms, the rate is ``n * target / elapsed`` times the target rate. The difficulty moves
only when that rate is clearly off: the estimate with one share less must still be above
``hysteresis`` (too fast), or the estimate with one share more still below ``1/hysteresis``
(too slow). The one-share slack and the wide band are the hysteresis that keeps a steady miner
put despite Poisson noise; the window keeps growing while nothing changes, so the estimate only
gets better. Evidence older than ``window_ms`` decays (halved), so a miner whose speed changes
is noticed within a few minutes.

A decision is taken at most once per ``retarget_period`` except for a miner flooding shares at
``max_step`` times the target rate or more, which moves as soon as eight shares prove it. A step
multiplies by at most ``max_step`` (4) either way and the result is clamped to
``[min_difficulty, max_difficulty]`` and rounded to three significant digits (readable numbers
on the wire). Time is passed in; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Shares needed before the fast path (a miner ``max_step`` times too fast) may move early.
FAST_PATH_SHARES: Final = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class VardiffConfig:
    """Knobs of the retarget rule. Times in milliseconds."""

    target_share_interval_ms: int
    retarget_period_ms: int
    window_ms: int
    min_difficulty: float
    max_difficulty: float
    max_step: float = 4.0
    hysteresis: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.min_difficulty <= self.max_difficulty:
            raise ValueError("need 0 < min_difficulty <= max_difficulty")
        if self.target_share_interval_ms <= 0 or self.retarget_period_ms <= 0:
            raise ValueError("intervals must be positive")
        if self.max_step < 1 or self.hysteresis < 1:
            raise ValueError("max_step and hysteresis must be at least 1")

    def clamp(self, difficulty: float) -> float:
        """``difficulty`` bounded by ``[min_difficulty, max_difficulty]``."""
        return min(max(difficulty, self.min_difficulty), self.max_difficulty)


def round_difficulty(difficulty: float) -> float:
    """``difficulty`` rounded to three significant digits (what goes on the wire)."""
    return float(f"{difficulty:.3g}")


def retarget(*, difficulty: float, shares: float, elapsed_ms: int, config: VardiffConfig) -> float:
    """The difficulty to use after ``shares`` (in current-difficulty units) in ``elapsed_ms``.

    Returns ``difficulty`` itself when the rate is within the hysteresis band, when too little
    time has passed, or when the bounds forbid moving. Never raises for non-negative inputs.
    """
    if elapsed_ms <= 0:
        return difficulty
    target = config.target_share_interval_ms
    rate = shares * target / elapsed_ms
    rate_low = max(shares - 1.0, 0.0) * target / elapsed_ms
    rate_high = (shares + 1.0) * target / elapsed_ms
    if elapsed_ms < config.retarget_period_ms and not (
        shares >= FAST_PATH_SHARES and rate_low >= config.max_step
    ):
        return difficulty
    if rate_low <= config.hysteresis and rate_high >= 1.0 / config.hysteresis:
        return difficulty
    step = min(max(rate, 1.0 / config.max_step), config.max_step)
    # Already at the bound it would pass: the clamp below would give it back (and a miner at
    # the maximum that keeps flooding would pay for the rounding on every share).
    if (step > 1 and difficulty == config.max_difficulty) or (
        step < 1 and difficulty == config.min_difficulty
    ):
        return difficulty
    rounded = round_difficulty(difficulty * step)
    # Rounding to 3 significant digits must not take the move past the step bound.
    rounded = min(max(rounded, difficulty / config.max_step), difficulty * config.max_step)
    return config.clamp(rounded)


class Vardiff:
    """The retarget state of one connection. Call ``on_share`` and ``on_tick`` with the time."""

    __slots__ = ("_config", "_difficulty", "_next_tick_ms", "_shares", "_window_start_ms")

    def __init__(self, *, config: VardiffConfig, difficulty: float, now_ms: int) -> None:
        self._config = config
        self._difficulty = difficulty
        self._shares = 0.0
        self._window_start_ms = now_ms
        self._next_tick_ms = now_ms + config.retarget_period_ms

    @property
    def difficulty(self) -> float:
        """The difficulty the connection should be mining at."""
        return self._difficulty

    @property
    def next_tick_ms(self) -> int:
        """When ``on_tick`` should next be called if no share arrives (slow miners)."""
        return self._next_tick_ms

    def reset(self, *, difficulty: float, now_ms: int) -> None:
        """Start a new window at ``difficulty`` (after any difficulty change)."""
        self._difficulty = difficulty
        self._shares = 0.0
        self._window_start_ms = now_ms
        self._next_tick_ms = now_ms + self._config.retarget_period_ms

    def shift(self, delta_ms: int) -> None:
        """Move the window and the next tick ``delta_ms`` later: the clock jumped (an
        operator advanced market time), which is no time the miner spent hashing."""
        self._window_start_ms += delta_ms
        self._next_tick_ms += delta_ms

    def on_share(self, *, share_difficulty: float, now_ms: int) -> float | None:
        """Count one accepted share; returns the new difficulty if it should change."""
        self._shares += share_difficulty / self._difficulty
        return self._evaluate(now_ms)

    def on_tick(self, now_ms: int) -> float | None:
        """Re-evaluate without a share (a miner too slow to submit); new difficulty or None."""
        if now_ms < self._next_tick_ms:
            return None
        self._next_tick_ms = now_ms + self._config.retarget_period_ms
        return self._evaluate(now_ms)

    def _evaluate(self, now_ms: int) -> float | None:
        elapsed = now_ms - self._window_start_ms
        window = self._config.window_ms
        if elapsed > window > 0:
            keep = window // 2
            self._shares *= keep / elapsed
            self._window_start_ms = now_ms - keep
            elapsed = keep
        new = retarget(
            difficulty=self._difficulty,
            shares=self._shares,
            elapsed_ms=elapsed,
            config=self._config,
        )
        if new == self._difficulty:
            return None
        self.reset(difficulty=new, now_ms=now_ms)
        return new
