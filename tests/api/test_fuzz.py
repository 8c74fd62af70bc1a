"""Arbitrary bytes and JSON at the endpoint: always a JSON-RPC answer, never a crash, and a
refused call changes nothing."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from marketplace.api.app import ApiApp, ApiSettings
from marketplace.api.methods import METHODS
from marketplace.core.invariants import check_invariants
from tests.api.conftest import Harness, real_stack, signed_headers

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id",
    "amount",
    "price",
    "limit",
    "algorithm",
    "type",
    "address",
    "key_id",
    "grace_s",
    "label",
    "scopes",
    "status",
    "before",
    "since_ms",
    "duration_s",
    "expires_in_s",
]
params = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5) | json_values
calls = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": st.sampled_from(sorted(METHODS))},
    optional={"params": params, "id": st.integers(-5, 5) | st.text(max_size=5) | st.none()},
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | calls.map(lambda c: json.dumps(c).encode())
    | st.lists(calls | json_values, max_size=5).map(lambda v: json.dumps(v).encode())
)


async def asgi_post(
    app: ApiApp, body: bytes, headers: dict[bytes, bytes] | None = None
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/rpc",
        "query_string": b"",
        "headers": list((headers or {}).items()),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def check_answers(status: int, content: bytes) -> list[dict[str, Any]]:
    """The answer is JSON-RPC: one response or a non-empty array of them (204: none)."""
    if status == 204:
        assert content == b""
        return []
    assert status == 200
    answer = json.loads(content)
    answers = answer if isinstance(answer, list) else [answer]
    assert answers
    for one in answers:
        assert one["jsonrpc"] == "2.0"
        assert "id" in one
        assert ("result" in one) != ("error" in one)
        if "error" in one:
            assert isinstance(one["error"]["code"], int)
            assert isinstance(one["error"]["message"], str)
            assert one["error"]["code"] != -32603, one
    return answers


def snapshot(h: Harness) -> Any:
    market = h.market
    return (
        len(h.executor.events),
        market.balance("alice"),
        h.views.list_orders(account="alice"),
        market.ledger("alice", limit=1000),
        h.keyring.list_keys("alice", now_ms=h.clock()),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
async def test_unsigned_junk_is_answered_and_changes_nothing(body: bytes) -> None:
    h = Harness()
    await h.bootstrap()
    before = snapshot(h)
    status, content = await asgi_post(h.app, body)
    check_answers(status, content)
    assert snapshot(h) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
async def test_signed_junk_refused_calls_change_nothing(body: bytes) -> None:
    h = Harness()
    creds = await h.bootstrap()
    await h.call(creds, "account.deposit", {"amount": "1"})
    before = snapshot(h)
    with capture_logs() as logs:
        status, content = await asgi_post(h.app, body, h.sign(creds, body))
    check_answers(status, content)
    # Notifications succeed silently (account.2fa.enable takes no params): ask the log.
    if all(e["ok"] == 0 for e in logs if e["event"] == "api.request"):  # none: not JSON-RPC
        assert snapshot(h) == before
    check_invariants(h.market, h.fleet)


async def test_junk_through_real_http(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    corpus = [rng.randbytes(rng.randrange(0, 400)) for _ in range(25)]
    corpus += [b"", b"null", b"[]", b"[1]", b'{"jsonrpc":"2.0"}', b"\x00" * 50, b"[" * 3000]
    corpus += [json.dumps({"jsonrpc": "2.0", "id": 1, "method": m, "params": []}).encode()
               for m in sorted(METHODS)]  # fmt: skip
    # Every body is parsed, not refused by the client address's bucket of unsigned calls.
    roomy = ApiSettings(public_rate_per_s=10_000, public_burst=10_000)
    async with real_stack(tmp_path / "j.db", settings=roomy) as stack:
        creds = await stack.bootstrap()
        journal = stack.engine.journal
        before = journal.last_seq
        for number, body in enumerate(corpus):
            response = await stack.post(body)
            check_answers(response.status_code, response.content)
            headers = signed_headers(creds, body, now_ms=stack.clock(), nonce=f"fuzz-{number}")
            response = await stack.post(body, headers)
            answers = check_answers(response.status_code, response.content)
            assert all("error" in answer for answer in answers), answers
        assert journal.last_seq == before
