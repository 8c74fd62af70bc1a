"""Account security's vocabulary: activity kinds, events, views, snapshot state. Values only.

Theory of operation
-------------------
``AccountSecurity`` (``security.py``) changes only by the events defined here, journaled under
the component ``"security"``. Their tags and field names and order are the journal's format:
existing databases replay them, so they never change (a new field gets a default and goes
last). No event holds a secret: a second factor is named by its enrollment id (the secret is
derived from the node's key), recovery codes by their keyed hashes, a code that was used by its
step.

Every event carries the market time it happened (``time_ms``, what the journal records); the
second factor's own events also carry the wall-clock time (``wall_ms``), because TOTP steps and
the lockout run on the wall clock, which market time may have left behind.

``ActivityKind`` and the views are also what the API's wire types speak, so they live apart
from the component, like ``key_events.py``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import msgspec


class ActivityKind(StrEnum):
    """What an activity entry records (security.md, "Activity log")."""

    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_REVOKED = "key.revoked"
    KEY_RECOVERED = "key.recovered"
    AUTH_FAILED = "auth.failed"
    TWO_FACTOR_ENABLED = "2fa.enabled"
    TWO_FACTOR_DISABLED = "2fa.disabled"
    TWO_FACTOR_FAILED = "2fa.failed"
    TWO_FACTOR_LOCKED = "2fa.locked"
    ADDRESS_ADDED = "address.added"
    ADDRESS_REMOVED = "address.removed"
    WITHDRAWAL = "withdrawal"


class AuthRule(StrEnum):
    """The signing rules whose failures an ``auth.failed`` entry records."""

    SIGNATURE = "signature"
    WINDOW = "window"
    REPLAY = "replay"
    SCOPE = "scope"


#: An activity entry's details: names and scalars, never a secret, a code or a signature.
Detail = dict[str, str | int]


# ---------------------------------------------------------------------------------- events


class _SecurityEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the security events: each is about one account (kept first in the encoding,
    as ``key_events._KeyEvent`` explains)."""

    account: str


class TwoFactorPending(_SecurityEvent, frozen=True, kw_only=True, tag="2fa_pending"):
    """``account.2fa.enable``: a new secret (derived from ``enrollment``) awaits its first
    code; it replaces any earlier pending one."""

    enrollment: str
    time_ms: int


class TwoFactorEnabled(_SecurityEvent, frozen=True, kw_only=True, tag="2fa_enabled"):
    """``account.2fa.confirm``: the pending secret is the account's second factor now, with
    these recovery codes (their keyed hashes)."""

    recovery_hashes: tuple[str, ...]
    time_ms: int


class TwoFactorDisabled(_SecurityEvent, frozen=True, kw_only=True, tag="2fa_disabled"):
    """``account.2fa.disable``: no second factor any more."""

    time_ms: int


class CodeUsed(_SecurityEvent, frozen=True, kw_only=True, tag="code_used"):
    """A code was verified and is used up: a TOTP ``step`` (that step and every earlier one
    are refused from now on) or a recovery code (``recovery_hash``)."""

    step: int | None
    recovery_hash: str | None
    wall_ms: int
    time_ms: int


class CodeFailed(_SecurityEvent, frozen=True, kw_only=True, tag="code_failed"):
    """A wrong code (``reason``: "otp invalid" or "otp reused"), counted towards the lockout;
    ``locked_until_ms`` (wall clock) when it was the one too many."""

    reason: str
    wall_ms: int
    locked_until_ms: int | None
    time_ms: int


class AddressAdded(_SecurityEvent, frozen=True, kw_only=True, tag="address_added"):
    """A withdrawal address joined the account's list; usable from ``usable_from_ms``."""

    address: str
    label: str
    usable_from_ms: int
    time_ms: int


class AddressRemoved(_SecurityEvent, frozen=True, kw_only=True, tag="address_removed"):
    """A withdrawal address left the account's list."""

    address: str
    time_ms: int


class ActivityRecorded(_SecurityEvent, frozen=True, kw_only=True, tag="activity"):
    """One entry of the account's activity log (also its view: ``account.activity``)."""

    id: int
    kind: ActivityKind
    key_id: str | None
    remote: str | None
    detail: Detail
    time_ms: int


SecurityEvent = (
    TwoFactorPending
    | TwoFactorEnabled
    | TwoFactorDisabled
    | CodeUsed
    | CodeFailed
    | AddressAdded
    | AddressRemoved
    | ActivityRecorded
)


# ---------------------------------------------------------------------------------- views


class TwoFactorStatus(NamedTuple):
    """Whether the account's second factor is on, and whether a new one awaits its code."""

    enabled: bool
    pending: bool


class Enrollment(NamedTuple):
    """A pending second factor: show the secret once (as text and as an otpauth URI)."""

    secret: str
    otpauth_uri: str


class AddressView(msgspec.Struct, frozen=True, kw_only=True):
    """A withdrawal address on an account's list."""

    address: str
    label: str
    usable_from_ms: int
    added_ms: int


# ---------------------------------------------------------------------------------- state


class FactorState(msgspec.Struct, frozen=True, kw_only=True):
    """One account's second factor for snapshots: enrollment ids, the last step used, the
    recovery hashes left and used, the wall times of recent wrong codes and the lock."""

    account: str
    pending: str | None
    enrollment: str | None
    last_step: int | None
    recovery_left: list[str]
    recovery_used: list[str]
    failures: list[int]
    locked_until_ms: int | None


class SecurityState(msgspec.Struct, frozen=True, kw_only=True):
    """The component's durable state: factors, address lists (as the events that added the
    addresses), the kept activity entries, the last activity id and, per (key, rule), when
    the last ``auth.failed`` entry was written."""

    factors: list[FactorState]
    addresses: list[AddressAdded]
    activity: list[ActivityRecorded]
    activity_seq: int
    auth_entries: list[tuple[str, str, int]]
