"""Single-use nonces per key, remembered exactly as long as a replay could pass the window.

Theory of operation
-------------------
A signed request is valid while its ``X-Time`` is within ``window_ms`` of the server clock.
A nonce therefore only needs remembering until neither the request's time nor the moment it
was seen can be in a later request's window: until ``max(x_time, seen) + window + 1`` (the
``+ 1`` because the window test is inclusive). Past that, a replay fails the window check
(4008) on its own, so forgetting is safe and memory stays bounded by the rate limit times the
window. Expired entries leave through a heap ordered by forget time, pruned on every call.
Ephemeral (not journaled): a restart forgets every nonce, so the authenticator refuses any
request stamped before the process started (``auth.py``); a captured request can then never be
replayed across a restart either.
"""

from __future__ import annotations

import heapq


class NonceStore:
    """Which (key, nonce) pairs were used recently. Time is passed in (ms)."""

    def __init__(self, *, window_ms: int) -> None:
        if window_ms < 0:
            raise ValueError("window_ms must not be negative")
        self._window_ms = window_ms
        self._forget_at: dict[tuple[str, bytes], int] = {}
        self._heap: list[tuple[int, str, bytes]] = []

    def __len__(self) -> int:
        return len(self._forget_at)

    def _prune(self, now_ms: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            forget_at, key_id, nonce = heapq.heappop(heap)
            if self._forget_at.get((key_id, nonce)) == forget_at:
                del self._forget_at[(key_id, nonce)]

    def seen(self, key_id: str, nonce: bytes, *, now_ms: int) -> bool:
        """Whether ``nonce`` was used with ``key_id`` and is still remembered at ``now_ms``."""
        self._prune(now_ms)
        return (key_id, nonce) in self._forget_at

    def add(self, key_id: str, nonce: bytes, *, request_ms: int, now_ms: int) -> None:
        """Remember ``nonce`` for ``key_id`` until no request carrying it can pass the window."""
        self._prune(now_ms)
        forget_at = max(request_ms, now_ms) + self._window_ms + 1
        previous = self._forget_at.get((key_id, nonce))
        if previous is not None and previous >= forget_at:
            return
        self._forget_at[(key_id, nonce)] = forget_at
        heapq.heappush(self._heap, (forget_at, key_id, nonce))
