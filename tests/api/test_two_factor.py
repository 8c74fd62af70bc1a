"""TOTP two-factor authentication through the API (security.md, "TOTP").

Codes are computed by the tests from the secret the API shows, at the wall clock's step; the
node's clock is a ``SplitClock``, so wall time (TOTP, the lockout) and market time move
separately and only when a test moves them (no sleeps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from marketplace.accounts import Bootstrap
from marketplace.core import totp
from marketplace.core.keys import KeyRing
from tests.api.conftest import (
    MASTER,
    Harness,
    counter_ids,
    error_of,
    make_components,
    real_stack,
    result_of,
)
from tests.clocks import SplitClock

MINUTE = 60_000
ADDRESS = "bc1qowner"


def code(clock: SplitClock, secret: str, steps: int = 0) -> str:
    """The code an authenticator app shows ``steps`` steps from the wall clock's now."""
    return totp.code_at(secret, totp.step_at(clock.wall) + steps)


async def turned_on(h: Any, creds: Bootstrap) -> tuple[str, list[str]]:
    """Enable and confirm 2FA for ``creds``'s account: (secret, recovery codes). Leaves the
    wall clock one step on, so the confirming code is in the past."""
    secret = result_of(await h.call(creds, "account.2fa.enable"))["secret"]
    confirmed = result_of(
        await h.call(creds, "account.2fa.confirm", {"otp": code(h.clock, secret)})
    )
    h.clock.wall += totp.STEP_MS
    return secret, confirmed["recovery_codes"]


async def two_factor_harness() -> tuple[Harness, Bootstrap]:
    h = Harness(clock=SplitClock())
    creds = await h.bootstrap()
    result_of(await h.call(creds, "account.deposit", {"amount": "1"}))
    return h, creds


def withdraw(otp: str | None = None, amount: str = "0.01") -> dict[str, Any]:
    params: dict[str, Any] = {"amount": amount, "address": ADDRESS}
    if otp is not None:
        params["otp"] = otp
    return params


def kinds(h: Harness) -> list[str]:
    """The account's activity kinds, oldest first."""
    return [e.kind.value for e in reversed(h.security.activity("alice", limit=500))]


async def test_enable_confirm_with_a_live_code_then_status() -> None:
    h, creds = await two_factor_harness()
    status = result_of(await h.call(creds, "account.2fa.status"))
    assert status == {"enabled": False, "pending": False}
    enabled = result_of(await h.call(creds, "account.2fa.enable"))
    secret = enabled["secret"]
    assert len(secret) == 32
    assert enabled["otpauth_uri"] == (
        f"otpauth://totp/hashmarket:alice?secret={secret}&issuer=hashmarket"
    )
    assert result_of(await h.call(creds, "account.2fa.status")) == {
        "enabled": False,
        "pending": True,
    }
    # Pending is not on: withdrawals need no code yet.
    result_of(await h.call(creds, "account.withdraw", withdraw()))
    wrong = "000000" if code(h.clock, secret) != "000000" else "111111"
    code_, _, data = error_of(await h.call(creds, "account.2fa.confirm", {"otp": wrong}))
    assert (code_, data) == (4011, {"reason": "otp invalid"})
    confirmed = result_of(
        await h.call(creds, "account.2fa.confirm", {"otp": code(h.clock, secret)})
    )
    assert confirmed["enabled"] is True
    assert len(set(confirmed["recovery_codes"])) == 10
    assert result_of(await h.call(creds, "account.2fa.status")) == {
        "enabled": True,
        "pending": False,
    }
    # The confirming code is used up too; enabling again needs disabling first.
    code_, _, data = error_of(
        await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret)))
    )
    assert (code_, data) == (4011, {"reason": "otp reused"})
    assert error_of(await h.call(creds, "account.2fa.enable"))[0] == 4090
    assert kinds(h) == [
        "key.created",
        "2fa.enabled",
        "withdrawal",
        "2fa.failed",
        "2fa.enabled",
        "2fa.failed",
    ]


async def test_every_gated_call_needs_a_code_and_the_rest_do_not() -> None:
    h, creds = await two_factor_harness()
    await turned_on(h, creds)
    reader = result_of(await h.call(creds, "apikey.create", {"label": "ro", "scopes": ["read"]}))
    gated: list[tuple[str, dict[str, Any]]] = [
        ("account.withdraw", withdraw()),
        ("account.address.add", {"address": ADDRESS, "label": "mine"}),
        ("apikey.create", {"label": "w", "scopes": ["withdraw"]}),
        ("apikey.create", {"label": "k", "scopes": ["read", "keys"]}),
        ("apikey.rotate", {"key_id": creds.key_id, "grace_s": 0}),
        ("account.2fa.disable", {}),
    ]
    for method, params in gated:
        before = h.security.export_state(), h.keyring.export_state(), h.market.export_state()
        code_, message, data = error_of(await h.call(creds, method, params))
        assert (code_, data) == (4011, {"reason": "otp required"}), method
        assert message == "otp required"
        assert (
            h.security.export_state(),
            h.keyring.export_state(),
            h.market.export_state(),
        ) == before, method
    # Keys that cannot move money or make keys, and everything else, need none.
    result_of(await h.call(creds, "apikey.create", {"label": "t", "scopes": ["read", "trade"]}))
    result_of(await h.call(creds, "apikey.rotate", {"key_id": reader["key_id"]}))
    result_of(await h.call(creds, "account.balance"))
    result_of(await h.call(creds, "account.address.list"))


async def test_one_step_either_side_is_accepted_two_are_not() -> None:
    h, creds = await two_factor_harness()
    secret, _ = await turned_on(h, creds)
    h.clock.wall += 5 * totp.STEP_MS  # well past the confirming code
    for steps in (-2, 2):
        code_, _, data = error_of(
            await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret, steps)))
        )
        assert (code_, data) == (4011, {"reason": "otp invalid"}), steps
    for steps in (-1, 0, 1):  # in that order: each later than the last one used
        result_of(await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret, steps))))


async def test_a_code_is_used_up_and_no_earlier_code_passes_after_it() -> None:
    h, creds = await two_factor_harness()
    secret, _ = await turned_on(h, creds)
    h.clock.wall += 5 * totp.STEP_MS
    now = code(h.clock, secret)
    result_of(await h.call(creds, "account.withdraw", withdraw(now)))
    for replay in (now, code(h.clock, secret, -1)):
        code_, _, data = error_of(await h.call(creds, "account.withdraw", withdraw(replay)))
        assert (code_, data) == (4011, {"reason": "otp reused"})
    # Used up whatever the call then did: a refused withdrawal spends its code too.
    h.clock.wall += totp.STEP_MS
    too_much = withdraw(code(h.clock, secret), amount="5")
    assert error_of(await h.call(creds, "account.withdraw", too_much))[0] == 4020
    again = withdraw(code(h.clock, secret))
    assert error_of(await h.call(creds, "account.withdraw", again))[2] == {"reason": "otp reused"}
    assert result_of(await h.call(creds, "account.balance"))["available"] == "0.99000000"


async def test_five_wrong_codes_lock_gated_calls_for_fifteen_minutes_of_wall_time() -> None:
    h, creds = await two_factor_harness()
    secret, _ = await turned_on(h, creds)
    good = code(h.clock, secret)
    bad = "000000" if good != "000000" else "111111"
    result_of(await h.call(creds, "account.withdraw", withdraw(good)))
    for n in range(5):
        wrong = bad if n % 2 else good  # invalid and reused both count
        code_, _, data = error_of(await h.call(creds, "account.withdraw", withdraw(wrong)))
        assert code_ == 4011, n
        h.clock.wall += 1_000
    assert kinds(h)[-5:] == ["2fa.failed"] * 4 + ["2fa.locked"]
    locked_at = h.clock.wall - 1_000
    h.clock.wall += totp.STEP_MS
    # Even a correct, unused code is refused while locked, and is not counted or used up.
    fresh = code(h.clock, secret)
    events = len(h.executor.events)
    code_, _, data = error_of(await h.call(creds, "account.withdraw", withdraw(fresh)))
    assert code_ == 4029
    assert data == {"retry_after_ms": locked_at + 15 * MINUTE - h.clock.wall}
    assert len(h.executor.events) == events
    code_, _, _ = error_of(
        await h.call(creds, "account.address.add", {"address": "x", "label": "", "otp": fresh})
    )
    assert code_ == 4029
    # Other calls keep working.
    result_of(await h.call(creds, "account.balance"))
    result_of(await h.call(creds, "apikey.create", {"label": "ro", "scopes": ["read"]}))
    result_of(await h.call(creds, "account.address.list"))
    # Market time does not end the lock; wall time does.
    h.clock.market += 24 * 60 * MINUTE
    assert error_of(await h.call(creds, "account.withdraw", withdraw(fresh)))[0] == 4029
    h.clock.wall = locked_at + 15 * MINUTE - 1
    assert (
        error_of(await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret))))[0]
        == 4029
    )
    h.clock.wall += 1
    result_of(await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret))))


async def test_wrong_codes_spread_over_more_than_fifteen_minutes_do_not_lock() -> None:
    h, creds = await two_factor_harness()
    secret, _ = await turned_on(h, creds)
    bad = "000000" if code(h.clock, secret) != "000000" else "111111"
    for _ in range(4):
        assert error_of(await h.call(creds, "account.withdraw", withdraw(bad)))[0] == 4011
    h.clock.wall += 15 * MINUTE
    assert error_of(await h.call(creds, "account.withdraw", withdraw(bad)))[0] == 4011
    result_of(await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret))))


async def test_a_recovery_code_works_once_also_during_a_lockout() -> None:
    h, creds = await two_factor_harness()
    secret, recovery = await turned_on(h, creds)
    first, second = recovery[0], recovery[1]
    result_of(await h.call(creds, "account.withdraw", withdraw(first)))
    code_, _, data = error_of(await h.call(creds, "account.withdraw", withdraw(first)))
    assert (code_, data) == (4011, {"reason": "otp reused"})
    for _ in range(4):
        error_of(await h.call(creds, "account.withdraw", withdraw("zzzz-zzzz-zzzz")))
    assert (
        error_of(await h.call(creds, "account.withdraw", withdraw(code(h.clock, secret))))[0]
        == 4029
    )
    # Locked out: an unused recovery code still gets the owner in (typed loosely), once.
    loosely = second.replace("-", "").upper()
    result_of(await h.call(creds, "account.withdraw", withdraw(loosely)))
    assert error_of(await h.call(creds, "account.withdraw", withdraw(second)))[0] == 4029
    # It is how an owner turns 2FA off without the app.
    result_of(await h.call(creds, "account.2fa.disable", {"otp": recovery[2]}))
    assert result_of(await h.call(creds, "account.2fa.status"))["enabled"] is False
    result_of(await h.call(creds, "account.withdraw", withdraw()))


async def test_disable_then_enable_gives_a_new_secret_and_new_recovery_codes() -> None:
    h, creds = await two_factor_harness()
    secret, recovery = await turned_on(h, creds)
    off = result_of(await h.call(creds, "account.2fa.disable", {"otp": code(h.clock, secret)}))
    assert off == {"enabled": False}
    assert error_of(await h.call(creds, "account.2fa.disable", {"otp": recovery[0]}))[0] == 4090
    again, recovery_again = await turned_on(h, creds)
    assert again != secret
    assert set(recovery_again).isdisjoint(recovery)
    code_, _, data = error_of(await h.call(creds, "account.withdraw", withdraw(recovery[0])))
    assert (code_, data) == (4011, {"reason": "otp invalid"})


async def test_retried_enable_and_confirm_answer_the_same_secret_and_codes() -> None:
    h, creds = await two_factor_harness()
    first = await h.call(creds, "account.2fa.enable", request_id="enable-1")
    assert await h.call(creds, "account.2fa.enable", request_id="enable-1") == first
    secret = result_of(first)["secret"]
    confirm = {"otp": code(h.clock, secret)}
    confirmed = await h.call(creds, "account.2fa.confirm", confirm, request_id="confirm-1")
    again = await h.call(creds, "account.2fa.confirm", confirm, request_id="confirm-1")
    assert again == confirmed
    journal = b"".join(body for _, body in h.executor.events)
    assert secret.encode() not in journal
    assert secret.lower().encode() not in journal
    for recovery in result_of(confirmed)["recovery_codes"]:
        assert recovery.encode() not in journal
        assert recovery.replace("-", "").encode() not in journal


@pytest.mark.parametrize("snapshot", [False, True], ids=["replay", "snapshot"])
async def test_after_a_restart_2fa_is_on_and_codes_used_before_are_refused(
    tmp_path: Path, snapshot: bool
) -> None:
    path = tmp_path / "j.db"
    clock = SplitClock()

    def restarted() -> Any:
        """The API over the same journal, with fresh components (same master key)."""
        market, _ = make_components()
        keyring = KeyRing(master_key=MASTER, new_key_id=counter_ids("r"))
        return real_stack(path, clock=clock, market=market, keyring=keyring)

    async with real_stack(path, clock=clock) as stack:
        creds = await stack.bootstrap()
        result_of(await stack.call(creds, "account.deposit", {"amount": "1"}))
        secret, recovery = await turned_on(stack, creds)
        used = code(clock, secret)
        result_of(await stack.call(creds, "account.withdraw", withdraw(used)))
        result_of(await stack.call(creds, "account.withdraw", withdraw(recovery[0])))
        if snapshot:
            stack.engine.snapshot()
    async with restarted() as stack:
        assert stack.engine.journal.last_seq > 0
        status = result_of(await stack.call(creds, "account.2fa.status"))
        assert status == {"enabled": True, "pending": False}
        for replay in (used, recovery[0]):
            code_, _, data = error_of(await stack.call(creds, "account.withdraw", withdraw(replay)))
            assert (code_, data) == (4011, {"reason": "otp reused"})
        # Three more wrong codes: with the two replays, five.
        for _ in range(3):
            error_of(await stack.call(creds, "account.withdraw", withdraw("zzzz-zzzz-zzzz")))
        if snapshot:
            stack.engine.snapshot()
    async with restarted() as stack:
        # The lockout survives the restart too, and ends on the wall clock.
        clock.wall += totp.STEP_MS
        assert (
            error_of(await stack.call(creds, "account.withdraw", withdraw(code(clock, secret))))[0]
            == 4029
        )
        clock.wall += 15 * MINUTE
        result_of(await stack.call(creds, "account.withdraw", withdraw(code(clock, secret))))
