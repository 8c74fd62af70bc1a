"""Statistics: per order, per worker and per market time series, bounded in memory.

Theory of operation
-------------------
A ``Series`` keeps one ``Bucket`` per minute (by the share's own time) for the last 24 hours:
accepted work and shares, rejected work and shares by reason, money spent or earned. Adding a
share prunes minutes older than 24 h, so a series never holds more than 1,441 buckets whatever
the traffic. Totals since the start are kept beside the buckets.

Speeds are work rates: the hashes each accepted share proves (``work.share_work``, rounded
down to whole hashes: these are statistics, not money; the caller gives it, as it knows the
share's algorithm and rule), summed over a window and divided by the time the window covers.
A ``RateWindow`` does the same at share resolution for the allocation's worker estimates,
filling the part of the window before the worker joined with its start estimate so one lucky
share does not swing a new worker's speed.

Times come from the events (the share's ``time_ms``) or the caller's ``now_ms``: no clock.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Final

import msgspec

from marketplace.core.model import StatPoint

MINUTE_MS: Final = 60_000
HISTORY_MINUTES: Final = 24 * 60


class Bucket:
    """One minute of activity."""

    __slots__ = (
        "accepted_shares",
        "accepted_work",
        "earned_msat",
        "rejected_shares",
        "rejected_work",
        "spend_msat",
    )

    def __init__(self) -> None:
        self.accepted_work = 0
        self.accepted_shares = 0
        self.rejected_work: dict[str, int] = {}
        self.rejected_shares: dict[str, int] = {}
        self.spend_msat = 0
        self.earned_msat = 0


class BucketState(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One minute of a ``Series`` in a snapshot."""

    minute: int
    accepted_work: int
    accepted_shares: int
    rejected_work: dict[str, int]
    rejected_shares: dict[str, int]
    spend_msat: int
    earned_msat: int


class SeriesState(msgspec.Struct, frozen=True, kw_only=True):
    """A ``Series`` in a snapshot: its minutes oldest first and its totals."""

    buckets: list[BucketState]
    first_ms: int | None
    accepted_shares: int
    rejected_shares: dict[str, int]
    spend_msat: int
    earned_msat: int
    last_difficulty: float


class Series:
    """Minute buckets over the last 24 h plus all-time totals."""

    __slots__ = (
        "_buckets",
        "_minutes",
        "accepted_shares",
        "earned_msat",
        "first_ms",
        "last_difficulty",
        "rejected_shares",
        "spend_msat",
    )

    def __init__(self) -> None:
        self._buckets: dict[int, Bucket] = {}
        self._minutes: list[int] = []  # sorted keys of _buckets
        self.first_ms: int | None = None
        self.accepted_shares = 0
        self.rejected_shares: dict[str, int] = {}
        self.spend_msat = 0
        self.earned_msat = 0
        self.last_difficulty = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def export_state(self) -> SeriesState:
        """A copy of everything the series holds."""
        buckets = [
            BucketState(
                minute=minute,
                accepted_work=b.accepted_work,
                accepted_shares=b.accepted_shares,
                rejected_work=dict(b.rejected_work),
                rejected_shares=dict(b.rejected_shares),
                spend_msat=b.spend_msat,
                earned_msat=b.earned_msat,
            )
            for minute in self._minutes
            for b in (self._buckets[minute],)
        ]
        return SeriesState(
            buckets=buckets,
            first_ms=self.first_ms,
            accepted_shares=self.accepted_shares,
            rejected_shares=dict(self.rejected_shares),
            spend_msat=self.spend_msat,
            earned_msat=self.earned_msat,
            last_difficulty=self.last_difficulty,
        )

    @classmethod
    def from_state(cls, state: SeriesState) -> Series:
        """The series that exported ``state``."""
        series = cls()
        for saved in state.buckets:
            bucket = Bucket()
            bucket.accepted_work = saved.accepted_work
            bucket.accepted_shares = saved.accepted_shares
            bucket.rejected_work = dict(saved.rejected_work)
            bucket.rejected_shares = dict(saved.rejected_shares)
            bucket.spend_msat = saved.spend_msat
            bucket.earned_msat = saved.earned_msat
            series._buckets[saved.minute] = bucket
        series._minutes = sorted(series._buckets)
        series.first_ms = state.first_ms
        series.accepted_shares = state.accepted_shares
        series.rejected_shares = dict(state.rejected_shares)
        series.spend_msat = state.spend_msat
        series.earned_msat = state.earned_msat
        series.last_difficulty = state.last_difficulty
        return series

    def _bucket(self, time_ms: int) -> Bucket | None:
        minute = time_ms // MINUTE_MS
        bucket = self._buckets.get(minute)
        if bucket is not None:
            return bucket
        newest = self._minutes[-1] if self._minutes else minute
        if minute <= newest - HISTORY_MINUTES:
            return None  # older than what we keep: counted in the totals only
        bucket = self._buckets[minute] = Bucket()
        if minute > newest or not self._minutes:
            self._minutes.append(minute)
        else:
            bisect.insort(self._minutes, minute)
        horizon = self._minutes[-1] - HISTORY_MINUTES
        while self._minutes[0] <= horizon:
            del self._buckets[self._minutes.pop(0)]
        return bucket

    def add_share(
        self, *, time_ms: int, difficulty: float, work: int, accepted: bool, reason: str
    ) -> None:
        """Count one share proving ``work`` hashes (``reason`` is ignored for an accepted
        one)."""
        if self.first_ms is None or time_ms < self.first_ms:
            self.first_ms = time_ms
        self.last_difficulty = difficulty
        bucket = self._bucket(time_ms)
        if accepted:
            self.accepted_shares += 1
            if bucket is not None:
                bucket.accepted_shares += 1
                bucket.accepted_work += work
        else:
            self.rejected_shares[reason] = self.rejected_shares.get(reason, 0) + 1
            if bucket is not None:
                bucket.rejected_shares[reason] = bucket.rejected_shares.get(reason, 0) + 1
                bucket.rejected_work[reason] = bucket.rejected_work.get(reason, 0) + work

    def add_money(self, *, time_ms: int, spend_msat: int = 0, earned_msat: int = 0) -> None:
        """Count money spent (orders) or earned (workers) at ``time_ms``."""
        self.spend_msat += spend_msat
        self.earned_msat += earned_msat
        bucket = self._bucket(time_ms)
        if bucket is not None:
            bucket.spend_msat += spend_msat
            bucket.earned_msat += earned_msat

    def _window(self, now_ms: int, window_ms: int) -> tuple[list[Bucket], int]:
        """Buckets of the minutes that overlap ``(now - window, now]`` and the ms they cover."""
        if self.first_ms is None:
            return [], window_ms
        start_minute = (now_ms - window_ms) // MINUTE_MS
        first = bisect.bisect_left(self._minutes, start_minute)
        last = bisect.bisect_right(self._minutes, now_ms // MINUTE_MS)
        buckets = [self._buckets[m] for m in self._minutes[first:last]]
        covered = now_ms - max(start_minute * MINUTE_MS, self.first_ms)
        return buckets, max(covered, 1000)

    def accepted_speed(self, *, now_ms: int, window_ms: int) -> int:
        """Accepted H/s over about the last ``window_ms`` (minute resolution)."""
        buckets, covered = self._window(now_ms, window_ms)
        return sum(b.accepted_work for b in buckets) * 1000 // covered

    def rejected_speed(self, *, now_ms: int, window_ms: int) -> dict[str, int]:
        """Rejected H/s by reason over about the last ``window_ms``."""
        buckets, covered = self._window(now_ms, window_ms)
        work: dict[str, int] = {}
        for bucket in buckets:
            for reason, w in bucket.rejected_work.items():
                work[reason] = work.get(reason, 0) + w
        return {reason: w * 1000 // covered for reason, w in sorted(work.items())}

    def accepted_shares_in(self, *, now_ms: int, window_ms: int) -> tuple[int, int]:
        """(accepted shares, ms covered) over about the last ``window_ms``."""
        buckets, covered = self._window(now_ms, window_ms)
        return sum(b.accepted_shares for b in buckets), covered

    def rejected_shares_in(self, *, now_ms: int, window_ms: int) -> tuple[dict[str, int], int]:
        """(rejected shares by reason, ms covered) over about the last ``window_ms``."""
        buckets, covered = self._window(now_ms, window_ms)
        counts: dict[str, int] = {}
        for bucket in buckets:
            for reason, n in bucket.rejected_shares.items():
                counts[reason] = counts.get(reason, 0) + n
        return dict(sorted(counts.items())), covered

    def rejected_recent(self, *, now_ms: int) -> dict[str, int]:
        """Rejected shares by reason over the last 24 h."""
        counts: dict[str, int] = {}
        horizon = now_ms // MINUTE_MS - HISTORY_MINUTES
        for minute in self._minutes:
            if minute > horizon:
                for reason, n in self._buckets[minute].rejected_shares.items():
                    counts[reason] = counts.get(reason, 0) + n
        return dict(sorted(counts.items()))

    def points(self, *, since_ms: int, now_ms: int) -> list[StatPoint]:
        """One point per minute from ``since_ms`` (at most 24 h back) to ``now_ms``, oldest first;
        minutes without activity are zero points. The current minute's speeds are over its
        elapsed part."""
        first = max(since_ms, now_ms - HISTORY_MINUTES * MINUTE_MS) // MINUTE_MS
        last = now_ms // MINUTE_MS
        empty = Bucket()
        points: list[StatPoint] = []
        for minute in range(first, last + 1):
            bucket = self._buckets.get(minute, empty)
            start = minute * MINUTE_MS
            span_ms = min(MINUTE_MS, max(now_ms - start, 1000))
            points.append(
                StatPoint(
                    time_ms=start,
                    accepted_speed_hs=bucket.accepted_work * 1000 // span_ms,
                    rejected_speed_hs=sum(bucket.rejected_work.values()) * 1000 // span_ms,
                    accepted_shares=bucket.accepted_shares,
                    rejected_shares=sum(bucket.rejected_shares.values()),
                    spend_msat=bucket.spend_msat,
                )
            )
        return points


class RateWindow:
    """Accepted work rate of one connection over a sliding window, at share resolution."""

    __slots__ = ("_seen", "_shares", "_work", "joined_ms", "prior_hs", "window_ms")

    def __init__(self, *, joined_ms: int, prior_hs: int, window_ms: int) -> None:
        self.joined_ms = joined_ms
        self.prior_hs = prior_hs
        self.window_ms = window_ms
        self._shares: deque[tuple[int, int]] = deque()
        self._work = 0
        self._seen = False

    def add(self, *, time_ms: int, work: int) -> None:
        """Count ``work`` hashes accepted at ``time_ms``."""
        shares = self._shares
        if shares and shares[-1][0] == time_ms:
            # Shares of one millisecond (a batch) leave the window together: one entry.
            shares[-1] = (time_ms, shares[-1][1] + work)
        else:
            shares.append((time_ms, work))
        self._work += work
        self._seen = True

    def shift(self, delta_ms: int) -> None:
        """Move the window's history ``delta_ms`` later: time that passed without the worker
        being measured (a jump of market time) is not time it was idle."""
        self.joined_ms += delta_ms
        self._shares = deque((time_ms + delta_ms, work) for time_ms, work in self._shares)

    def rate(self, now_ms: int) -> int:
        """Estimated H/s at ``now_ms``: the work of the last window, with the start estimate
        standing in for the part of the window before the worker joined (and all of it until
        the first share)."""
        if not self._seen:
            return self.prior_hs
        horizon = now_ms - self.window_ms
        shares = self._shares
        while shares and shares[0][0] <= horizon:
            self._work -= shares.popleft()[1]
        observed = min(self.window_ms, max(0, now_ms - self.joined_ms))
        return (self._work * 1000 + self.prior_hs * (self.window_ms - observed)) // self.window_ms
