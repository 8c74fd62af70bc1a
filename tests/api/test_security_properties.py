"""Hypothesis: for any sequence of security calls, the activity log has exactly one entry per
call that changed something, and a refused call changed nothing.

"Nothing" is exact but for what security.md requires a refusal to leave behind: a wrong code
is counted and logged (one ``2fa.failed`` or ``2fa.locked`` entry), a call refused for a scope
is logged (at most one ``auth.failed`` entry a minute), and a code that passed stays used up
even when its call is then refused (the second factor's own bookkeeping: used steps, recovery
codes left, recent failures, the lock). Keys, balances, the ledger, orders, addresses, whether
2FA is on or pending, and every other activity entry stay as they were.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.accounts import Bootstrap
from marketplace.core import totp
from marketplace.core.key_events import ALL_SCOPES
from tests.api.conftest import Harness, make_security
from tests.clocks import SplitClock

KIND_OF = {
    "apikey.create": "key.created",
    "apikey.rotate": "key.rotated",
    "apikey.revoke": "key.revoked",
    "account.2fa.enable": "2fa.enabled",
    "account.2fa.confirm": "2fa.enabled",
    "account.2fa.disable": "2fa.disabled",
    "account.address.add": "address.added",
    "account.address.remove": "address.removed",
    "account.withdraw": "withdrawal",
}
CODES = ("none", "good", "next", "prev", "bad", "reused", "recovery", "used-recovery")
ADDRESSES = ("a1", "a2")

scope_sets = st.sets(st.sampled_from(ALL_SCOPES), min_size=1).map(
    lambda chosen: [s.value for s in ALL_SCOPES if s in chosen]
)
pick = st.integers(0, 7)
codes = st.sampled_from(CODES)
#: Confirmations mostly with a code of the pending secret, so 2FA is often on.
confirm_codes = st.sampled_from(("good", "good", "next", "bad", "reused"))
actions = st.one_of(
    st.tuples(st.just("apikey.create"), pick, scope_sets, codes),
    st.tuples(st.just("apikey.rotate"), pick, pick, codes),
    st.tuples(st.just("apikey.revoke"), pick, pick),
    st.tuples(st.just("account.2fa.enable"), pick),
    st.tuples(st.just("account.2fa.confirm"), pick, confirm_codes),
    # Both, one after the other (each checked as a call of its own): 2FA is often on.
    st.tuples(st.just("2fa-on"), pick, confirm_codes),
    st.tuples(st.just("account.2fa.disable"), pick, codes),
    st.tuples(st.just("account.address.add"), pick, st.sampled_from(ADDRESSES), codes),
    st.tuples(st.just("account.address.remove"), pick, st.sampled_from(ADDRESSES)),
    st.tuples(
        st.just("account.withdraw"),
        pick,
        st.sampled_from(ADDRESSES),
        st.sampled_from(["0.01", "0.3", "5"]),
        codes,
    ),
    st.tuples(
        st.just("tick"), st.integers(0, 20 * 60_000), st.sampled_from([0, 3_600_000, 86_400_000])
    ),
)


class Owner:
    """What the account's owner knows: keys (those that still sign), the TOTP secret,
    recovery codes, used codes. Keys it ended stay known as ``dead``: calls signed with
    them are refused (4001) and are part of the sequence too, but rarely."""

    def __init__(self, h: Harness, first: Bootstrap) -> None:
        self.h = h
        self.keys = [first]
        self.dead: list[Bootstrap] = []
        self.secret: str | None = None
        self.recovery: list[str] = []
        self.used_recovery: list[str] = []
        self.last_code: str | None = None

    def key(self, index: int) -> Bootstrap:
        if not self.keys or (index == 7 and self.dead):
            return self.dead[index % len(self.dead)]
        return self.keys[index % len(self.keys)]

    def end(self, key_id: str) -> None:
        for key in [k for k in self.keys if k.key_id == key_id]:
            self.keys.remove(key)
            self.dead.append(key)

    def code(self, kind: str) -> str | None:
        step = totp.step_at(self.h.clock.wall)
        secret = self.secret or "A" * 32
        chosen = {
            "none": None,
            "good": totp.code_at(secret, step),
            "next": totp.code_at(secret, step + 1),
            "prev": totp.code_at(secret, max(step - 1, 0)),
            "bad": "000000" if totp.code_at(secret, step) != "000000" else "111111",
            "reused": self.last_code,
            "recovery": next((c for c in self.recovery if c not in self.used_recovery), None),
            "used-recovery": self.used_recovery[-1] if self.used_recovery else None,
        }[kind]
        if kind in ("good", "next", "prev"):
            self.last_code = chosen
        return chosen

    def learn(self, method: str, params: dict[str, Any], answer: dict[str, Any]) -> None:
        result = answer.get("result")
        otp = params.get("otp")
        if otp in self.recovery and otp not in self.used_recovery:
            self.used_recovery.append(otp)  # used up, passed or not, is harmless to assume
        if result is None:
            return
        if method in ("apikey.rotate", "apikey.revoke"):
            self.end(params["key_id"])  # rotated with no grace: ended now
        if method in ("apikey.create", "apikey.rotate"):
            self.keys.append(Bootstrap("alice", result["key_id"], result["secret"]))
        elif method == "account.2fa.enable":
            self.secret = result["secret"]
        elif method == "account.2fa.confirm":
            self.recovery = result["recovery_codes"]
            self.used_recovery = []


def params_of(owner: Owner, action: tuple[Any, ...]) -> tuple[str, Bootstrap, dict[str, Any]]:
    method, caller = action[0], owner.key(action[1])
    params: dict[str, Any]
    code_kind = "none"
    if method == "apikey.create":
        params, code_kind = {"label": "k", "scopes": action[2]}, action[3]
    elif method == "apikey.rotate":
        params = {"key_id": owner.key(action[2]).key_id, "grace_s": 0}
        code_kind = action[3]
    elif method == "apikey.revoke":
        params = {"key_id": owner.key(action[2]).key_id}
    elif method == "account.2fa.enable":
        params = {}
    elif method in ("account.2fa.confirm", "account.2fa.disable"):
        params, code_kind = {}, action[2]
    elif method == "account.address.add":
        params, code_kind = {"address": action[2], "label": ""}, action[3]
    elif method == "account.address.remove":
        params = {"address": action[2]}
    else:
        params = {"amount": action[3], "address": action[2]}
        code_kind = action[4]
    otp = owner.code(code_kind)
    if otp is not None:
        params["otp"] = otp
    elif method == "account.2fa.confirm":
        params["otp"] = "000000"  # confirm's code is required by its params type
    return method, caller, params


def world(h: Harness) -> Any:
    """Everything a refused call must leave as it was (see the module doc)."""
    security = h.security.export_state()
    factors = [(f.account, f.pending, f.enrollment) for f in security.factors]
    return (
        h.market.export_state(),
        h.keyring.export_state().keys,
        factors,
        security.addresses,
    )


def refusal_entries(answer: dict[str, Any]) -> tuple[set[str], int]:
    """The entry kinds a refusal may leave, and how many at most."""
    error = answer["error"]
    reason = (error.get("data") or {}).get("reason")
    if error["code"] == 4011 and reason in ("otp invalid", "otp reused"):
        return {"2fa.failed", "2fa.locked"}, 1
    if error["code"] == 4003:
        return {"auth.failed"}, 1
    return set(), 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(actions, min_size=1, max_size=40))
async def test_one_entry_per_change_and_refusals_change_nothing(steps: list[Any]) -> None:
    h = Harness(clock=SplitClock())
    owner = Owner(h, await h.bootstrap())
    await h.call(owner.keys[0], "account.deposit", {"amount": "1"})
    calls = []
    for action in steps:
        if action[0] == "2fa-on":
            calls += [("account.2fa.enable", action[1]), ("account.2fa.confirm", *action[1:])]
        else:
            calls.append(action)
    for action in calls:
        if action[0] == "tick":
            h.clock.wall += action[1]
            h.clock.market += action[2]
            continue
        method, caller, params = params_of(owner, action)
        before_world = world(h)
        before = h.security.activity("alice", limit=500)
        answer = await h.call(caller, method, params)
        owner.learn(method, params, answer)
        after = h.security.activity("alice", limit=500)
        new = after[: len(after) - len(before)]
        assert after[len(new) :] == before, "an earlier entry changed"
        if "result" in answer:
            assert [e.kind.value for e in new] == [KIND_OF[method]], (method, params, new)
        else:
            allowed, most = refusal_entries(answer)
            assert len(new) <= most, (method, params, answer, new)
            assert {e.kind.value for e in new} <= allowed, (method, answer, new)
            if allowed and answer["error"]["code"] == 4011:
                assert len(new) == 1, "a wrong code must be counted and logged"
            assert world(h) == before_world, (method, params, answer)
    # The journal rebuilds the same component, by replay and from a snapshot.
    replayed = make_security()
    for component, body in h.executor.events:
        if component == "security":
            replayed.apply(replayed.decode_event(body))
    assert replayed.export_state() == h.security.export_state()
    restored = make_security()
    restored.import_state(restored.decode_state(h.security.encode_state()))
    assert restored.export_state() == h.security.export_state()
