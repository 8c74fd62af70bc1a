"""A key can only grant what it has: every pairing of caller scopes and target scopes for
``apikey.create``, ``apikey.rotate`` and ``apikey.revoke``, against security.md's rule.

The rule: the call needs the ``keys`` scope (4003 otherwise), and the key it makes, rotates or
ends must have no scope the caller lacks (4003 otherwise). Before the rule, a ``keys``-only key
could rotate the account's all-scope key and receive its successor, secret included.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest

from marketplace.accounts import Bootstrap
from marketplace.core.key_events import ALL_SCOPES, Scope
from tests.api.conftest import Harness, error_of, result_of

SCOPE_SETS = [
    frozenset(chosen) for n in range(1, 5) for chosen in combinations(ALL_SCOPES, n)
]  # all 15 non-empty sets


def allowed(caller: frozenset[Scope], target: frozenset[Scope]) -> bool:
    return Scope.KEYS in caller and target <= caller


async def key_with(h: Harness, scopes: frozenset[Scope], label: str) -> Bootstrap:
    issued = await h.executor.execute(
        lambda: h.keyring.create_key(
            account="alice", label=label, scopes=scopes, expires_ms=None, now_ms=h.clock()
        )
    )
    return Bootstrap("alice", issued.key.key_id, issued.secret)


def state(h: Harness) -> Any:
    keys = h.keyring.list_keys("alice", now_ms=h.clock())
    return [(k.key_id, k.scopes, k.expires_ms, k.revoked_ms) for k in keys]


def show(scopes: frozenset[Scope]) -> str:
    return ",".join(s.value for s in ALL_SCOPES if s in scopes)


@pytest.mark.parametrize("operation", ["create", "rotate", "revoke"])
async def test_every_pairing_of_caller_and_target_scopes(operation: str) -> None:
    wrong = []
    for caller_scopes in SCOPE_SETS:
        for target_scopes in SCOPE_SETS:
            h = Harness()
            await h.bootstrap()
            caller = await key_with(h, caller_scopes, "caller")
            target = await key_with(h, target_scopes, "target")
            before, events = state(h), len(h.executor.events)
            target_scope_list = [s.value for s in ALL_SCOPES if s in target_scopes]
            if operation == "create":
                params: dict[str, Any] = {"label": "new", "scopes": target_scope_list}
                answer = await h.call(caller, "apikey.create", params)
            elif operation == "rotate":
                params = {"key_id": target.key_id, "grace_s": 0}
                answer = await h.call(caller, "apikey.rotate", params)
            else:
                answer = await h.call(caller, "apikey.revoke", {"key_id": target.key_id})
            expected = allowed(caller_scopes, target_scopes)
            pairing = f"{operation} {show(target_scopes)} by {show(caller_scopes)}"
            if expected != ("result" in answer):
                wrong.append(f"{pairing}: {answer.get('result') or answer.get('error')}")
                continue
            if not expected:
                code, _, data = error_of(answer)
                assert code == 4003, pairing
                assert data["scopes"] if Scope.KEYS in caller_scopes else data["scope"] == "keys"
                assert state(h) == before, f"{pairing} changed the keys"
                # Nothing journaled but the owner's record of the attempt.
                assert len(h.executor.events) <= events + 1, pairing
                continue
            result = result_of(answer)
            if operation != "revoke":
                assert set(result["scopes"]) == target_scopes, pairing
    assert wrong == [], f"{len(wrong)} pairings break the rule:\n" + "\n".join(wrong[:20])


async def test_the_escalation_as_reported_is_refused() -> None:
    h = Harness()
    owner = await h.bootstrap()  # every scope
    keys_only = await key_with(h, frozenset({Scope.KEYS}), "stolen")
    code, message, data = error_of(
        await h.call(keys_only, "apikey.rotate", {"key_id": owner.key_id, "grace_s": 0})
    )
    assert (code, data) == (4003, {"scopes": ["read", "trade", "withdraw"]})
    assert "scopes" in message
    code, _, _ = error_of(await h.call(keys_only, "apikey.revoke", {"key_id": owner.key_id}))
    assert code == 4003
    # The owner's key still works, and the attempts are in the owner's activity log.
    events = result_of(await h.call(owner, "account.activity"))["events"]
    assert [(e["kind"], e["key_id"], e["detail"]) for e in events[:1]] == [
        ("auth.failed", keys_only.key_id, {"rule": "scope", "count": 1})
    ]
