"""Account security's pure parts, synchronously, with every time passed in: what a code means
(``second_factor.Factor``), the lockout window's edges, the address lock's edge, the activity
log's paging and cap, and the component's guards."""

from __future__ import annotations

import pytest

from marketplace.core import totp
from marketplace.core.activity import MAX_ENTRIES_PER_ACCOUNT, ActivityLog
from marketplace.core.addresses import AddressBook
from marketplace.core.errors import InvalidState
from marketplace.core.second_factor import FAILURE_WINDOW_MS, LOCK_MS, Against, Factor, Reason
from marketplace.core.security import AccountSecurity, Actor
from marketplace.core.security_events import ActivityKind, ActivityRecorded, AddressAdded

KEY = b"k" * 32
SECRET = totp.derive_secret(KEY, account="alice", enrollment="e-1")
WALL = 1_700_000_000_000


def enabled() -> Factor:
    factor = Factor()
    factor.apply_pending("e-1")
    factor.apply_enabled(tuple(totp.recovery_hash(KEY, c) for c in recovery_codes()))
    return factor


def recovery_codes() -> list[str]:
    return totp.derive_recovery_codes(KEY, account="alice", enrollment="e-1")


def judge(factor: Factor, code: str | None, wall_ms: int = WALL) -> tuple[object, ...]:
    verdict = factor.judge(
        code,
        against=Against.ACTIVE,
        secret_of=lambda e: SECRET,
        hash_of=lambda c: totp.recovery_hash(KEY, c),
        wall_ms=wall_ms,
    )
    return verdict.passed, verdict.reason, verdict.counted, verdict.retry_after_ms


def test_what_a_code_means() -> None:
    factor = enabled()
    step = totp.step_at(WALL)
    now = totp.code_at(SECRET, step)
    assert judge(factor, None) == (False, Reason.REQUIRED, False, None)
    assert judge(factor, now) == (True, None, False, None)
    factor.apply_used(step=step, recovery_hash=None)
    assert judge(factor, now) == (False, Reason.REUSED, True, None)
    assert judge(factor, totp.code_at(SECRET, step - 1)) == (False, Reason.REUSED, True, None)
    assert judge(factor, totp.code_at(SECRET, step + 1))[0] is True
    assert judge(factor, totp.code_at(SECRET, step + 2))[1] is Reason.INVALID
    first = recovery_codes()[0]
    assert judge(factor, first)[0] is True
    factor.apply_used(step=None, recovery_hash=totp.recovery_hash(KEY, first))
    assert judge(factor, first) == (False, Reason.REUSED, True, None)
    assert judge(factor, "aaaa-aaaa-aaaa") == (False, Reason.INVALID, True, None)
    with pytest.raises(RuntimeError):
        Factor().judge(
            now, against=Against.ACTIVE, secret_of=str, hash_of=str, wall_ms=WALL
        )  # nothing to check against: the dispatcher's bug


def test_the_lock_counts_wrong_codes_of_the_last_fifteen_minutes_only() -> None:
    factor = enabled()
    for n in range(4):
        assert factor.lock_after_failure(WALL + n) is None
        factor.apply_failed(wall_ms=WALL + n, locked_until_ms=None)
    # The first failure leaves the window exactly FAILURE_WINDOW_MS after it.
    assert factor.lock_after_failure(WALL + FAILURE_WINDOW_MS) is None
    late = WALL + FAILURE_WINDOW_MS - 1
    assert factor.lock_after_failure(late) == late + LOCK_MS
    factor.apply_failed(wall_ms=late, locked_until_ms=late + LOCK_MS)
    assert factor.locked(late) == LOCK_MS
    assert judge(factor, totp.code_at(SECRET, totp.step_at(late)), late) == (
        False,
        None,
        False,
        LOCK_MS,
    )
    assert judge(factor, recovery_codes()[1], late)[0] is True  # recovery codes still work
    assert factor.locked(late + LOCK_MS) == 0
    assert factor.lock_after_failure(late + LOCK_MS) is None  # counting starts afresh


def test_an_address_is_usable_from_its_lock_end_exactly() -> None:
    book = AddressBook()
    book.check_withdrawal("alice", address="anything", now_ms=0)  # empty list: anywhere
    book.apply_added(
        AddressAdded(account="alice", address="a1", label="", usable_from_ms=1_000, time_ms=0)
    )
    with pytest.raises(InvalidState) as info:
        book.check_withdrawal("alice", address="a1", now_ms=999)
    assert info.value.data == {"usable_from_ms": 1_000}
    book.check_withdrawal("alice", address="a1", now_ms=1_000)
    with pytest.raises(InvalidState):
        book.check_withdrawal("alice", address="a2", now_ms=5_000)
    book.check_withdrawal("bob", address="a2", now_ms=0)  # lists are per account


def entry(number: int, account: str = "alice") -> ActivityRecorded:
    return ActivityRecorded(
        account=account,
        id=number,
        kind=ActivityKind.WITHDRAWAL,
        key_id="k",
        remote=None,
        detail={},
        time_ms=number,
    )


def test_the_log_pages_by_id_and_keeps_the_newest_entries_of_each_account() -> None:
    log = ActivityLog()
    for number in range(1, MAX_ENTRIES_PER_ACCOUNT + 6):
        log.append(entry(number))
    log.append(entry(MAX_ENTRIES_PER_ACCOUNT + 6, "bob"))
    kept = log.entries("alice", limit=MAX_ENTRIES_PER_ACCOUNT + 10)
    assert len(kept) == MAX_ENTRIES_PER_ACCOUNT
    assert kept[0].id == MAX_ENTRIES_PER_ACCOUNT + 5
    assert kept[-1].id == 6
    assert [e.id for e in log.entries("alice", limit=3, before=100)] == [99, 98, 97]
    assert log.seq == MAX_ENTRIES_PER_ACCOUNT + 6


def test_the_component_refuses_a_short_key_and_a_detail_that_could_hold_a_secret() -> None:
    with pytest.raises(ValueError, match="master key"):
        AccountSecurity(master_key=b"short", new_id=str)
    security = AccountSecurity(master_key=KEY, new_id=lambda: "e-1")
    for name in ("secret", "otp", "recovery_codes", "signature"):
        with pytest.raises(RuntimeError, match="secret"):
            security.record(
                account="alice",
                kind=ActivityKind.KEY_CREATED,
                actor=Actor("k", None),
                detail={name: "x"},
                now_ms=0,
            )
    assert security.drain_events() == []
