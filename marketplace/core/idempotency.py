"""Idempotent retries: the first answer of a mutating call, kept per (key, request id).

Theory of operation
-------------------
A client that retries a mutating call with the same ``X-Request-Id`` must get the first call's
answer and cause nothing again. The first answer is recorded by the same command that made the
change (``KeyRing.remember`` inside the engine's ``execute``), so the record and the mutation
are journaled in one step: either both survive a crash or neither does. A record is identified
by the key, the request id and the call's position in its batch, and remembers the method and
a digest of the params, so a request id reused for a different call is refused rather than
answered with an unrelated result. Records older than the TTL (24 h) are ignored and pruned
as newer ones arrive (pruning uses event times only, so replay rebuilds the same set).

Only successful answers are recorded: a refused call changed nothing, so repeating it is
harmless and may succeed later (after a deposit, say).
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import NamedTuple

import msgspec

#: (key id, request id, position in the batch)
RecordKey = tuple[str, str, int]


class Recorded(NamedTuple):
    """A first answer: the call it answered and its JSON result."""

    method: str
    digest: str
    result: bytes
    time_ms: int


def params_digest(method: str, params: bytes) -> str:
    """A short digest identifying one call: its method and its params as JSON *values*, so a
    retry that re-serialises the same params (other spacing, other key order) is the same
    call. Params that are not JSON are digested as they are (the call is refused anyway)."""
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(params), order="sorted")
    except msgspec.DecodeError:
        canonical = params
    return hashlib.sha256(method.encode() + b"\x00" + canonical).hexdigest()[:32]


class IdempotencyRecords:
    """The recorded first answers of the last ``ttl_ms``."""

    def __init__(self, *, ttl_ms: int) -> None:
        self._ttl_ms = ttl_ms
        self._records: dict[RecordKey, Recorded] = {}
        self._order: deque[tuple[int, RecordKey]] = deque()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: RecordKey, *, now_ms: int) -> Recorded | None:
        """The record for ``key`` if it is younger than the TTL."""
        record = self._records.get(key)
        if record is None or now_ms - record.time_ms > self._ttl_ms:
            return None
        return record

    def put(self, key: RecordKey, record: Recorded) -> None:
        """Store ``record`` and drop those that expired by its time (deterministic)."""
        horizon = record.time_ms - self._ttl_ms
        order = self._order
        while order and order[0][0] < horizon:
            _, old = order.popleft()
            stored = self._records.get(old)
            if stored is not None and stored.time_ms < horizon:
                del self._records[old]
        self._records[key] = record
        order.append((record.time_ms, key))

    def export_state(self) -> tuple[list[tuple[RecordKey, Recorded]], list[tuple[int, RecordKey]]]:
        """(records in insertion order, the pruning queue): everything, for snapshots."""
        return list(self._records.items()), list(self._order)

    def import_state(
        self, records: list[tuple[RecordKey, Recorded]], order: list[tuple[int, RecordKey]]
    ) -> None:
        """Replace the contents with an ``export_state`` result."""
        self._records = dict(records)
        self._order = deque(order)

    def drop_key(self, key_id: str) -> None:
        """Forget every record of ``key_id`` (a revoked key can never retry)."""
        for record_key in [k for k in self._records if k[0] == key_id]:
            del self._records[record_key]
