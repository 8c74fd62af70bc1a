"""Account security: the second factor, withdrawal addresses and the activity log.

Theory of operation
-------------------
``AccountSecurity`` is an event-sourced component (``component = "security"``) journaled by the
engine beside the market and the key ring; a command that changes a key or moves money emits
its activity entry here in the same engine command, so the change and its entry are durable
together. Its parts are pure helpers, each with its own module: ``second_factor.Factor`` (one
account's TOTP enrollment, codes used up, wrong codes and the lockout), ``addresses.AddressBook``
(withdrawal lists with a lock in market time) and ``activity.ActivityLog``.

Secrets. No secret is stored: a TOTP secret and its recovery codes are derived (``totp.py``)
from a key of this component's own, itself derived from the node's master key (so it is
separate from the API keys' derivation), and an enrollment id that the driver draws at random
(``new_id``). The journal holds enrollment ids, recovery codes' keyed hashes and used steps.

Checking a code is a command of its own (``check_code``) because its outcome must be journaled
whatever happens next: a code that passed is used up even if the call it authorised is then
refused, and a wrong code is counted (and logged) although its call is refused. So
``check_code`` never raises for a wrong code: it emits what it must and returns a ``CodeCheck``
whose ``refusal`` the dispatcher raises once the events are durable. A code that passed gives a
``Passed`` token, which ``confirm_2fa`` and ``disable_2fa`` demand as proof.

Two clocks: the second factor runs on the wall clock (``wall_ms``: TOTP steps are wall-clock
time, and market time may be advanced by an operator), everything else, the activity entries'
times and the addresses' locks included, on market time (``now_ms``).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

from marketplace.core import totp
from marketplace.core.activity import MAX_LIMIT, ActivityLog
from marketplace.core.addresses import DEFAULT_LOCK_MS, AddressBook
from marketplace.core.errors import (
    InvalidArgument,
    InvalidState,
    Locked,
    MarketError,
    SecondFactorRefused,
)
from marketplace.core.eventsourced import EventSourced
from marketplace.core.keys import check_master_key
from marketplace.core.second_factor import Against, Factor, Reason
from marketplace.core.security_events import (
    ActivityKind,
    ActivityRecorded,
    AddressAdded,
    AddressRemoved,
    AddressView,
    AuthRule,
    CodeFailed,
    CodeUsed,
    Detail,
    Enrollment,
    SecurityEvent,
    SecurityState,
    TwoFactorDisabled,
    TwoFactorEnabled,
    TwoFactorPending,
    TwoFactorStatus,
)

#: Words no activity detail may be named after: the log never holds a secret.
_SECRET_WORDS: Final = ("secret", "otp", "code", "signature", "password")


class Passed(NamedTuple):
    """Proof that a code of ``account``'s ``against`` enrollment passed in this command."""

    account: str
    enrollment: str
    against: Against


class CodeCheck(NamedTuple):
    """The outcome of ``check_code``: ``passed`` (a code was used up), ``refusal`` (raise it
    once the command's events are durable), or neither (no second factor to check)."""

    passed: Passed | None = None
    refusal: MarketError | None = None


class Actor(NamedTuple):
    """Who made a call, for its activity entry: the key (``None``: the operator) and the
    client's address."""

    key_id: str | None
    remote: str | None


def _check_detail(detail: Detail) -> Detail:
    for name in detail:
        if any(word in name for word in _SECRET_WORDS):
            raise RuntimeError(f"activity detail {name!r} could hold a secret")  # a bug: ours
    return detail


class AccountSecurity(EventSourced[SecurityEvent]):
    """Every account's second factor, withdrawal addresses and activity (see the module
    doc). ``master_key`` is the node's (``marketplace.masterkey``), ``new_id`` draws random
    enrollment ids, ``address_lock_ms`` is how long a new address waits (market time)."""

    component: ClassVar[str] = "security"
    event_type: ClassVar[Any] = SecurityEvent
    state_type: ClassVar[Any] = SecurityState

    def __init__(
        self,
        *,
        master_key: bytes,
        new_id: Callable[[], str],
        address_lock_ms: int = DEFAULT_LOCK_MS,
    ) -> None:
        super().__init__()
        if address_lock_ms < 0:
            raise ValueError("the address lock must not be negative")
        # A sub-key of our own: what is derived here can never collide with an API secret.
        root = check_master_key(master_key)
        self._key = hmac.new(root, b"hashmarket account security", hashlib.sha256).digest()
        self._new_id = new_id
        self._address_lock_ms = address_lock_ms
        self._clear()

    def _clear(self) -> None:
        self._factors: dict[str, Factor] = {}
        self._addresses = AddressBook()
        self._activity = ActivityLog()

    def blank(self) -> AccountSecurity:
        """A twin with this one's derived key, id source and address lock, and no event
        applied (see ``EventSourced``)."""
        twin = copy.copy(self)
        EventSourced.__init__(twin)
        twin._clear()
        return twin

    # ------------------------------------------------------------------ queries

    def status(self, account: str) -> TwoFactorStatus:
        """Whether ``account``'s second factor is on, and whether one awaits confirmation."""
        factor = self._factors.get(account)
        if factor is None:
            return TwoFactorStatus(enabled=False, pending=False)
        return TwoFactorStatus(enabled=factor.enabled, pending=factor.pending is not None)

    def addresses(self, account: str) -> list[AddressView]:
        """``account``'s withdrawal addresses, oldest first."""
        return self._addresses.of(account)

    def activity(
        self, account: str, *, limit: int, before: int | None = None
    ) -> list[ActivityRecorded]:
        """Up to ``limit`` (1-500) of ``account``'s activity entries with ids below
        ``before``, newest first. Raises ``InvalidArgument`` for a limit out of range."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be 1-{MAX_LIMIT}", {"field": "limit"})
        return self._activity.entries(account, limit=limit, before=before)

    def enrollment(self, account: str, against: Against) -> str | None:
        """The id of ``account``'s active or pending enrollment, if it has one."""
        factor = self._factors.get(account)
        if factor is None:
            return None
        return factor.enrollment if against is Against.ACTIVE else factor.pending

    def reveal_enrollment(self, account: str, enrollment: str) -> Enrollment:
        """The secret of ``account``'s ``enrollment`` (derived, never stored), and its URI."""
        secret = totp.derive_secret(self._key, account=account, enrollment=enrollment)
        return Enrollment(secret, totp.otpauth_uri(secret, account=account))

    def reveal_recovery_codes(self, account: str, enrollment: str) -> list[str]:
        """The recovery codes of ``account``'s ``enrollment`` (derived, never stored)."""
        return totp.derive_recovery_codes(self._key, account=account, enrollment=enrollment)

    # ------------------------------------------------------------------ activity

    def record(
        self, *, account: str, kind: ActivityKind, actor: Actor, detail: Detail, now_ms: int
    ) -> ActivityRecorded:
        """Command: add an entry to ``account``'s activity log. ``detail`` names no secret
        (``RuntimeError`` if a name looks like one: a bug)."""
        event = ActivityRecorded(
            account=account,
            id=self._activity.seq + 1,
            kind=kind,
            key_id=actor.key_id,
            remote=actor.remote,
            detail=_check_detail(dict(detail)),
            time_ms=now_ms,
        )
        self._emit(event)
        return event

    def note_auth_failure(
        self, *, account: str, key_id: str, rule: AuthRule, remote: str | None, now_ms: int
    ) -> bool:
        """Command: count a failed authentication of ``key_id`` (``account``'s); journal an
        ``auth.failed`` entry if none was written for this key and rule in the last minute
        (it counts the failures since the last one). Whether an entry was written."""
        log = self._activity
        if not log.auth_entry_due(key_id, rule, now_ms=now_ms):
            log.count_unlogged(key_id, rule)
            return False
        count = log.unlogged(key_id, rule) + 1
        self.record(
            account=account,
            kind=ActivityKind.AUTH_FAILED,
            actor=Actor(key_id, remote),
            detail={"rule": rule.value, "count": count},
            now_ms=now_ms,
        )
        return True

    # ------------------------------------------------------------------ second factor

    def check_code(
        self,
        *,
        account: str,
        code: str | None,
        against: Against,
        actor: Actor,
        wall_ms: int,
        now_ms: int,
    ) -> CodeCheck:
        """Command: check ``code`` against ``account``'s active or pending second factor at
        the wall-clock time ``wall_ms`` (see the module doc and ``second_factor.py``). A code
        that passes is used up (journaled); a wrong one is counted, logged (``2fa.failed``,
        or ``2fa.locked`` when it was the one too many) and answered with a
        ``SecondFactorRefused`` refusal (4011, ``data.reason``); while locked the refusal is
        ``Locked`` (4029, ``data.retry_after_ms``) and nothing is journaled. With no such
        second factor there is nothing to check: an empty ``CodeCheck``."""
        factor = self._factors.get(account)
        enrollment = None if factor is None else self.enrollment(account, against)
        if factor is None or enrollment is None:
            return CodeCheck()
        verdict = factor.judge(
            code,
            against=against,
            secret_of=lambda e: totp.derive_secret(self._key, account=account, enrollment=e),
            hash_of=lambda c: totp.recovery_hash(self._key, c),
            wall_ms=wall_ms,
        )
        if verdict.passed:
            self._emit(
                CodeUsed(
                    account=account,
                    step=verdict.step,
                    recovery_hash=verdict.recovery_hash,
                    wall_ms=wall_ms,
                    time_ms=now_ms,
                )
            )
            return CodeCheck(passed=Passed(account, enrollment, against))
        if verdict.retry_after_ms is not None:
            return CodeCheck(
                refusal=Locked(
                    "too many wrong codes: calls that need one are locked; a recovery code works",
                    {"retry_after_ms": verdict.retry_after_ms},
                )
            )
        reason = verdict.reason or Reason.INVALID
        if verdict.counted:
            until = factor.lock_after_failure(wall_ms)
            self._emit(
                CodeFailed(
                    account=account,
                    reason=reason.value,
                    wall_ms=wall_ms,
                    locked_until_ms=until,
                    time_ms=now_ms,
                )
            )
            detail: Detail = {"reason": reason.value}
            if until is not None:
                detail["locked_until_ms"] = until
            kind = ActivityKind.TWO_FACTOR_LOCKED if until else ActivityKind.TWO_FACTOR_FAILED
            self.record(account=account, kind=kind, actor=actor, detail=detail, now_ms=now_ms)
        return CodeCheck(refusal=SecondFactorRefused(reason.value, {"reason": reason.value}))

    def enable_2fa(self, *, account: str, actor: Actor, now_ms: int) -> Enrollment:
        """Command: a new pending second factor for ``account`` (replacing a pending one); its
        secret, to show once. Raises ``InvalidState`` if one is on already."""
        if self.status(account).enabled:
            raise InvalidState("two-factor authentication is already on; disable it first")
        enrollment = self._new_id()
        self._emit(TwoFactorPending(account=account, enrollment=enrollment, time_ms=now_ms))
        self.record(
            account=account,
            kind=ActivityKind.TWO_FACTOR_ENABLED,
            actor=actor,
            detail={"stage": "pending"},
            now_ms=now_ms,
        )
        return self.reveal_enrollment(account, enrollment)

    def confirm_2fa(
        self, *, account: str, passed: Passed | None, actor: Actor, now_ms: int
    ) -> list[str]:
        """Command: make ``account``'s pending second factor its own, given a code of it that
        passed in this command (``passed``); its recovery codes, to show once. Raises
        ``InvalidState`` if nothing is pending or no code of it passed."""
        pending = self.enrollment(account, Against.PENDING)
        if pending is None:
            raise InvalidState("no two-factor set-up is pending: call account.2fa.enable")
        if passed != Passed(account, pending, Against.PENDING):
            raise RuntimeError("confirm_2fa without a code of the pending secret")  # ours
        codes = self.reveal_recovery_codes(account, pending)
        hashes = tuple(totp.recovery_hash(self._key, code) for code in codes)
        self._emit(TwoFactorEnabled(account=account, recovery_hashes=hashes, time_ms=now_ms))
        self.record(
            account=account,
            kind=ActivityKind.TWO_FACTOR_ENABLED,
            actor=actor,
            detail={"stage": "confirmed"},
            now_ms=now_ms,
        )
        return codes

    def disable_2fa(
        self, *, account: str, passed: Passed | None, actor: Actor, now_ms: int
    ) -> None:
        """Command: turn ``account``'s second factor off, given a code of it that passed in
        this command. Raises ``InvalidState`` if it is not on."""
        active = self.enrollment(account, Against.ACTIVE)
        if active is None:
            raise InvalidState("two-factor authentication is not on")
        if passed != Passed(account, active, Against.ACTIVE):
            raise RuntimeError("disable_2fa without a code of the second factor")  # ours
        self._emit(TwoFactorDisabled(account=account, time_ms=now_ms))
        self.record(
            account=account,
            kind=ActivityKind.TWO_FACTOR_DISABLED,
            actor=actor,
            detail={},
            now_ms=now_ms,
        )

    # ------------------------------------------------------------------ addresses

    def add_address(
        self, *, account: str, address: str, label: str, actor: Actor, now_ms: int
    ) -> AddressView:
        """Command: put ``address`` on ``account``'s withdrawal list, usable after the lock
        period. Raises as ``AddressBook.check_add``."""
        self._addresses.check_add(account, address=address, label=label)
        usable = now_ms + self._address_lock_ms
        self._emit(
            AddressAdded(
                account=account,
                address=address,
                label=label,
                usable_from_ms=usable,
                time_ms=now_ms,
            )
        )
        self.record(
            account=account,
            kind=ActivityKind.ADDRESS_ADDED,
            actor=actor,
            detail={"address": address, "label": label, "usable_from_ms": usable},
            now_ms=now_ms,
        )
        return next(v for v in self._addresses.of(account) if v.address == address)

    def remove_address(self, *, account: str, address: str, actor: Actor, now_ms: int) -> None:
        """Command: take ``address`` off ``account``'s list. Raises ``NotFound``."""
        self._addresses.check_remove(account, address=address)
        self._emit(AddressRemoved(account=account, address=address, time_ms=now_ms))
        self.record(
            account=account,
            kind=ActivityKind.ADDRESS_REMOVED,
            actor=actor,
            detail={"address": address},
            now_ms=now_ms,
        )

    def check_withdrawal(self, account: str, *, address: str, now_ms: int) -> None:
        """Raise ``InvalidState`` (4090) unless ``account`` may withdraw to ``address`` now
        (``AddressBook.check_withdrawal``)."""
        self._addresses.check_withdrawal(account, address=address, now_ms=now_ms)

    # ------------------------------------------------------------------ snapshots

    def export_state(self) -> SecurityState:
        """The durable state (see ``EventSourced``); uncounted auth failures are not in it."""
        entries, auth = self._activity.export()
        return SecurityState(
            factors=[factor.export(account) for account, factor in self._factors.items()],
            addresses=self._addresses.export(),
            activity=entries,
            activity_seq=self._activity.seq,
            auth_entries=auth,
        )

    def import_state(self, state: SecurityState) -> None:
        """Become the component that exported ``state``. Raises ``RuntimeError`` unless
        fresh."""
        if self._factors or self._activity.seq or self._addresses.export():
            raise RuntimeError("import_state needs a fresh component")
        self._factors = {f.account: Factor.restore(f) for f in state.factors}
        for added in state.addresses:
            self._addresses.apply_added(added)
        self._activity.restore(state.activity, state.auth_entries, state.activity_seq)

    # ------------------------------------------------------------------ apply

    def _factor(self, account: str) -> Factor:
        factor = self._factors.get(account)
        if factor is None:
            factor = self._factors[account] = Factor()
        return factor

    def apply(self, event: SecurityEvent) -> None:
        """Fold one event into the state (deterministic)."""
        match event:
            case TwoFactorPending():
                self._factor(event.account).apply_pending(event.enrollment)
            case TwoFactorEnabled():
                self._factor(event.account).apply_enabled(event.recovery_hashes)
            case TwoFactorDisabled():
                self._factor(event.account).apply_disabled()
            case CodeUsed():
                factor = self._factor(event.account)
                factor.apply_used(step=event.step, recovery_hash=event.recovery_hash)
            case CodeFailed():
                factor = self._factor(event.account)
                factor.apply_failed(wall_ms=event.wall_ms, locked_until_ms=event.locked_until_ms)
            case AddressAdded():
                self._addresses.apply_added(event)
            case AddressRemoved():
                self._addresses.apply_removed(event.account, event.address)
            case ActivityRecorded():
                self._activity.append(event)
