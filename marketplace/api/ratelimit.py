"""Per-key token buckets, in integer arithmetic.

Theory of operation
-------------------
Each key has a bucket of at most ``burst`` tokens that refills at ``rate_per_s``; a call takes
one token. Tokens are counted in thousandths and time in milliseconds, so a refill of
``rate_per_s`` tokens per second is exactly ``rate_per_s`` thousandths per millisecond and
nothing is ever rounded. A refused take changes nothing and says how long until it would pass
(``retry_after_ms``). Time is passed in; the buckets are ephemeral (a restart refills them).
"""

from __future__ import annotations

_MILLI = 1000


class RateLimiter:
    """Token buckets keyed by API key id."""

    def __init__(self, *, rate_per_s: int, burst: int) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be positive")
        self._rate = rate_per_s  # thousandths of a token per ms
        self._capacity = burst * _MILLI
        self._buckets: dict[str, tuple[int, int]] = {}  # key -> (milli-tokens, at ms)

    @property
    def burst(self) -> int:
        """The most calls a full bucket allows at once."""
        return self._capacity // _MILLI

    def _level(self, key: str, now_ms: int) -> int:
        tokens, at = self._buckets.get(key, (self._capacity, now_ms))
        elapsed = max(0, now_ms - at)
        return min(self._capacity, tokens + elapsed * self._rate)

    def take(self, key: str, *, now_ms: int, cost: int = 1) -> int:
        """Take ``cost`` tokens from ``key``'s bucket: 0 if taken, else the milliseconds until
        they would be there (nothing taken). Raises ``ValueError`` if ``cost`` exceeds the
        burst (it could never pass)."""
        need = cost * _MILLI
        if need > self._capacity or cost < 0:
            raise ValueError(f"cost {cost} outside 0..{self.burst}")
        level = self._level(key, now_ms)
        if level < need:
            return -(-(need - level) // self._rate)
        self._buckets[key] = (level - need, now_ms)
        return 0

    def __len__(self) -> int:
        return len(self._buckets)

    def prune(self, *, now_ms: int) -> None:
        """Drop the buckets that are full again at ``now_ms``: a full bucket and no bucket
        are the same, so the table holds only recent callers."""
        for key in [k for k in self._buckets if self._level(k, now_ms) >= self._capacity]:
            del self._buckets[key]

    def forget(self, key: str) -> None:
        """Drop ``key``'s bucket (a revoked key)."""
        self._buckets.pop(key, None)
