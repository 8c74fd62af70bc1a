"""The key ring's vocabulary: scopes, events, views. Values only, no key ring.

Theory of operation
-------------------
The key ring (``keys.py``) changes only by the events defined here, which the engine journals
under the component ``"keys"``. Their tags (``key_created`` ...) and field names and order are
the journal's format: existing databases replay them, so they never change (a new field gets a
default and goes last). ``KeyRingState`` is the key ring's snapshot, made of the same views
and events, so a snapshot and a replay describe a key in the same words.

``Scope`` and ``KeyView`` are also what the API's wire types and the buyer client speak; they
live in this module, apart from the ``KeyRing``, so a client imports them without any of the
server (no master key, no journal, no HTTP server).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

import msgspec


class Scope(StrEnum):
    """What a key may do. Public methods need none."""

    READ = "read"
    TRADE = "trade"
    WITHDRAW = "withdraw"
    KEYS = "keys"
    #: The ``admin.*`` methods of a node serving with ``--control`` (control.md). Only keys of
    #: the reserved ``OPERATOR_ACCOUNT`` have it, and they have nothing else.
    OPERATOR = "operator"


#: Every scope an account's key may have (an account's first key has them all).
ALL_SCOPES: Final = (Scope.READ, Scope.TRADE, Scope.WITHDRAW, Scope.KEYS)

#: The reserved account of the operator's keys: not a buyer or seller, it holds the fees.
OPERATOR_ACCOUNT: Final = "operator"


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


# ---------------------------------------------------------------------------------- events


class _KeyEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the key ring's events: each is about one key. Every event is ``kw_only`` like
    this base, which keeps the inherited ``key_id`` first (right after the tag) in the
    encoding, where the journal has it; msgspec would move it last otherwise."""

    key_id: str


class KeyCreated(_KeyEvent, frozen=True, kw_only=True, tag="key_created"):
    """A key was issued (a new one, or the successor of a rotated one): no secret in it, the
    secret is derived from the master key, the id and the version."""

    account: str
    label: str
    scopes: tuple[Scope, ...]
    version: int
    expires_ms: int | None
    time_ms: int


class KeyExpirySet(_KeyEvent, frozen=True, kw_only=True, tag="key_expiry_set"):
    """A key's end moved earlier (rotation's grace period)."""

    expires_ms: int
    time_ms: int


class KeyRevoked(_KeyEvent, frozen=True, kw_only=True, tag="key_revoked"):
    """A key ended now; its recorded answers go with it."""

    time_ms: int


class KeyUsed(_KeyEvent, frozen=True, kw_only=True, tag="key_used"):
    """A key's last use, journaled at most once per interval."""

    time_ms: int


class RequestRecorded(_KeyEvent, frozen=True, kw_only=True, tag="request_recorded"):
    """The first answer of a mutating call with an ``X-Request-Id`` (no secret: see app)."""

    request_id: str
    index: int
    method: str
    digest: str
    result: bytes
    time_ms: int


KeyEvent = KeyCreated | KeyExpirySet | KeyRevoked | KeyUsed | RequestRecorded


# ---------------------------------------------------------------------------------- views


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """A key as the API shows it (never with its secret)."""

    key_id: str
    account: str
    label: str
    scopes: tuple[Scope, ...]
    version: int
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None
    last_used_ms: int | None

    def state(self, now_ms: int) -> KeyState:
        """Whether the key authenticates at ``now_ms``."""
        if self.revoked_ms is not None:
            return KeyState.REVOKED
        if self.expires_ms is not None and now_ms >= self.expires_ms:
            return KeyState.EXPIRED
        return KeyState.ACTIVE


class KeyRingState(msgspec.Struct, frozen=True, kw_only=True):
    """The key ring's durable state for snapshots: keys in creation order (as views: no secret,
    secrets are derived from the master key), the recorded answers (as the events that recorded
    them) and the queue that prunes them (time, key id, request id, index)."""

    keys: list[KeyView]
    requests: list[RequestRecorded]
    prune_queue: list[tuple[int, str, str, int]]


class IssuedKey(NamedTuple):
    """A key just created, with its secret: show it once, never store it."""

    key: KeyView
    secret: str
