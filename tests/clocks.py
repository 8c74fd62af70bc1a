"""Clocks for tests: the node's ``Clock`` with time that moves only when a test says so, or
with trio's (possibly mock) clock."""

from __future__ import annotations

from collections.abc import Callable

import trio

from marketplace.clock import Clock

T0 = 1_700_000_000_000


class ManualClock(Clock):
    """Market time and wall time together, in milliseconds that move only on ``advance``."""

    def __init__(self, start_ms: int = T0) -> None:
        self.ms = start_ms

    def wall_ms(self) -> int:
        return self.ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


class ReadClock(Clock):
    """A clock that reads its milliseconds from ``read`` (a list cell, trio's clock...)."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def wall_ms(self) -> int:
        return self._read()


def trio_clock(base_ms: int = T0) -> Clock:
    """A clock that follows trio's (possibly mock) clock from ``base_ms``."""
    return ReadClock(lambda: base_ms + int(trio.current_time() * 1000))


class SplitClock(Clock):
    """Wall time and market time apart, each moving only when a test says so: the second
    factor runs on the wall clock, address locks on market time."""

    def __init__(self, start_ms: int = T0) -> None:
        self.wall = start_ms
        self.market = start_ms

    def wall_ms(self) -> int:
        return self.wall

    def now_ms(self) -> int:
        return self.market

    def __call__(self) -> int:
        """What requests are signed with: the wall clock."""
        return self.wall
