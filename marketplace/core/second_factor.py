"""One account's second factor: enrollment, codes used up, wrong codes counted, the lockout.

Theory of operation
-------------------
``Factor`` is the state; ``Factor.judge`` decides what one submitted code means, without
changing anything, and answers a ``Verdict``: the code passes (and which step or recovery code
it uses up), or it is refused (with the reason, and whether it counts as a wrong code), or the
account is locked. The component (``security.py``) turns the verdict into events, and
``Factor``'s ``apply_*`` methods fold those events, so a replay lands in the same state.

The rules (security.md, "TOTP"), in the order ``judge`` applies them:

1. While locked (``locked_until_ms`` ahead of the wall clock) only an unused recovery code
   passes; anything else is ``locked`` with the time left, and is not counted (the lock is
   already there, and a flood of tries must not journal anything).
2. No code: "otp required" (not counted: nothing was tried).
3. A recovery code passes once; a used one is "otp reused", an unknown one "otp invalid".
4. A six-digit code must be the code of a step within one of the wall clock's; a step at or
   before the last one used is "otp reused" (a code is used up when it is verified, so the same
   code, or an earlier one, never passes twice), no matching step is "otp invalid".

Five counted wrong codes within ``FAILURE_WINDOW_MS`` lock the account's code-gated calls for
``LOCK_MS``; the failures counted so far are then forgotten, so the lock's end gives five new
tries. Everything here runs on the wall clock (``wall_ms``), never on market time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Final, NamedTuple

from marketplace.core import totp
from marketplace.core.security_events import FactorState

LOCK_AFTER: Final = 5
FAILURE_WINDOW_MS: Final = 15 * 60_000
LOCK_MS: Final = 15 * 60_000


class Reason(StrEnum):
    """Why a code was refused: ``data.reason`` of error 4011."""

    REQUIRED = "otp required"
    INVALID = "otp invalid"
    REUSED = "otp reused"


class Against(StrEnum):
    """Which secret a code is checked against."""

    #: The account's second factor (a code or a recovery code).
    ACTIVE = "active"
    #: The secret awaiting ``account.2fa.confirm`` (codes only).
    PENDING = "pending"


class Verdict(NamedTuple):
    """What a submitted code means. ``passed``: it uses up ``step`` or ``recovery_hash``;
    otherwise ``reason`` (4011; ``counted`` towards the lock) or ``retry_after_ms`` (locked)."""

    passed: bool
    step: int | None = None
    recovery_hash: str | None = None
    reason: Reason | None = None
    counted: bool = False
    retry_after_ms: int | None = None


class Factor:
    """One account's second factor (see the module doc)."""

    __slots__ = (
        "enrollment",
        "failures",
        "last_step",
        "locked_until_ms",
        "pending",
        "recovery_left",
        "recovery_used",
    )

    def __init__(self) -> None:
        self.pending: str | None = None
        self.enrollment: str | None = None
        self.last_step: int | None = None
        self.recovery_left: set[str] = set()
        self.recovery_used: set[str] = set()
        self.failures: deque[int] = deque()
        self.locked_until_ms: int | None = None

    @property
    def enabled(self) -> bool:
        return self.enrollment is not None

    def locked(self, wall_ms: int) -> int:
        """Milliseconds the lock has left at ``wall_ms`` (0: not locked)."""
        if self.locked_until_ms is None:
            return 0
        return max(0, self.locked_until_ms - wall_ms)

    # ------------------------------------------------------------------ judging

    def judge(
        self,
        code: str | None,
        *,
        against: Against,
        secret_of: Callable[[str], str],
        hash_of: Callable[[str], str],
        wall_ms: int,
    ) -> Verdict:
        """What ``code`` means now (see the module doc), checked against the active or the
        pending enrollment, whose secret ``secret_of(enrollment)`` derives; ``hash_of`` is the
        keyed hash of a recovery code. Changes nothing."""
        enrollment = self.enrollment if against is Against.ACTIVE else self.pending
        if enrollment is None:
            raise RuntimeError(f"no {against.value} second factor to check a code against")
        recovery = None
        if code is not None and against is Against.ACTIVE:
            canonical = totp.normalize_recovery_code(code)
            recovery = None if canonical is None else hash_of(canonical)
        left = self.locked(wall_ms)
        if left:
            if recovery is not None and recovery in self.recovery_left:
                return Verdict(passed=True, recovery_hash=recovery)
            return Verdict(passed=False, retry_after_ms=left)
        if code is None:
            return Verdict(passed=False, reason=Reason.REQUIRED)
        if recovery is not None:
            if recovery in self.recovery_left:
                return Verdict(passed=True, recovery_hash=recovery)
            if recovery in self.recovery_used:
                return Verdict(passed=False, reason=Reason.REUSED, counted=True)
            return Verdict(passed=False, reason=Reason.INVALID, counted=True)
        step = totp.match_step(secret_of(enrollment), code, wall_ms=wall_ms)
        if step is None:
            return Verdict(passed=False, reason=Reason.INVALID, counted=True)
        if self.last_step is not None and step <= self.last_step:
            return Verdict(passed=False, reason=Reason.REUSED, counted=True)
        return Verdict(passed=True, step=step)

    def lock_after_failure(self, wall_ms: int) -> int | None:
        """The wall time the lock would end if one more wrong code came at ``wall_ms``
        (``None``: that one would not lock yet)."""
        recent = sum(1 for t in self.failures if t > wall_ms - FAILURE_WINDOW_MS)
        return wall_ms + LOCK_MS if recent + 1 >= LOCK_AFTER else None

    # ------------------------------------------------------------------ the fold

    def apply_pending(self, enrollment: str) -> None:
        self.pending = enrollment

    def apply_enabled(self, recovery_hashes: tuple[str, ...]) -> None:
        self.enrollment, self.pending = self.pending, None
        self.recovery_left = set(recovery_hashes)
        self.recovery_used = set()

    def apply_disabled(self) -> None:
        self.enrollment = None
        self.last_step = None
        self.recovery_left = set()
        self.recovery_used = set()

    def apply_used(self, *, step: int | None, recovery_hash: str | None) -> None:
        if step is not None:
            self.last_step = step if self.last_step is None else max(self.last_step, step)
        if recovery_hash is not None:
            self.recovery_left.discard(recovery_hash)
            self.recovery_used.add(recovery_hash)

    def apply_failed(self, *, wall_ms: int, locked_until_ms: int | None) -> None:
        failures = self.failures
        while failures and failures[0] <= wall_ms - FAILURE_WINDOW_MS:
            failures.popleft()
        if locked_until_ms is None:
            failures.append(wall_ms)
        else:
            failures.clear()
            self.locked_until_ms = locked_until_ms

    # ------------------------------------------------------------------ snapshots

    def export(self, account: str) -> FactorState:
        return FactorState(
            account=account,
            pending=self.pending,
            enrollment=self.enrollment,
            last_step=self.last_step,
            recovery_left=sorted(self.recovery_left),
            recovery_used=sorted(self.recovery_used),
            failures=list(self.failures),
            locked_until_ms=self.locked_until_ms,
        )

    @classmethod
    def restore(cls, state: FactorState) -> Factor:
        factor = cls()
        factor.pending = state.pending
        factor.enrollment = state.enrollment
        factor.last_step = state.last_step
        factor.recovery_left = set(state.recovery_left)
        factor.recovery_used = set(state.recovery_used)
        factor.failures = deque(state.failures)
        factor.locked_until_ms = state.locked_until_ms
        return factor
