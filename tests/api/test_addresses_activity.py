"""Withdrawal addresses with a lock in market time, the activity log, and the per-address
bucket of unsigned calls (security.md, issue 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from marketplace.api.app import ApiSettings
from marketplace.assembly import open_core
from marketplace.config import NodeConfig
from marketplace.core.keys import KeyRing
from marketplace.core.security import Actor
from tests.api.conftest import (
    MASTER,
    Harness,
    counter_ids,
    error_of,
    make_components,
    real_stack,
    result_of,
    rpc_body,
)
from tests.clocks import SplitClock

HOUR = 3_600_000
DAY = 24 * HOUR


async def funded() -> tuple[Harness, Any]:
    h = Harness(clock=SplitClock())
    creds = await h.bootstrap()
    result_of(await h.call(creds, "account.deposit", {"amount": "1"}))
    return h, creds


def out(address: str, amount: str = "0.01") -> dict[str, str]:
    return {"amount": amount, "address": address}


async def test_a_new_address_is_4090_until_its_lock_passes_in_market_time() -> None:
    h, creds = await funded()
    result_of(await h.call(creds, "account.withdraw", out("anywhere")))  # no list: anywhere
    added_at = h.clock.market
    added = result_of(
        await h.call(creds, "account.address.add", {"address": "bc1qmine", "label": "cold"})
    )
    assert added == {"address": "bc1qmine", "label": "cold", "usable_from_ms": added_at + DAY}
    listed = result_of(await h.call(creds, "account.address.list"))
    assert listed == {"addresses": [added]}
    code, _, data = error_of(await h.call(creds, "account.withdraw", out("bc1qmine")))
    assert (code, data) == (4090, {"usable_from_ms": added_at + DAY})
    code, _, data = error_of(await h.call(creds, "account.withdraw", out("anywhere")))
    assert (code, data) == (4090, {"address": "anywhere"})
    # The wall clock does not pass the lock; market time does (admin.time.advance's clock).
    h.clock.wall += 2 * DAY
    assert error_of(await h.call(creds, "account.withdraw", out("bc1qmine")))[0] == 4090
    h.clock.market = added_at + DAY - 1
    assert error_of(await h.call(creds, "account.withdraw", out("bc1qmine")))[0] == 4090
    h.clock.market += 1
    moved = result_of(await h.call(creds, "account.withdraw", out("bc1qmine")))
    assert moved["balance"]["available"] == "0.98000000"
    # Unlisted addresses stay refused; removing the last address lifts the list.
    assert error_of(await h.call(creds, "account.withdraw", out("anywhere")))[0] == 4090
    removed = result_of(await h.call(creds, "account.address.remove", {"address": "bc1qmine"}))
    assert removed == {"ok": True, "address": "bc1qmine"}
    result_of(await h.call(creds, "account.withdraw", out("anywhere")))


async def test_address_refusals_change_nothing() -> None:
    h, creds = await funded()
    result_of(await h.call(creds, "account.address.add", {"address": "a1", "label": ""}))
    before = h.security.export_state(), len(h.executor.events)
    refusals = [
        (4090, "account.address.add", {"address": "a1", "label": "again"}),
        (-32602, "account.address.add", {"address": "with space", "label": ""}),
        (-32602, "account.address.add", {"address": "a2", "label": "x" * 65}),
        (-32602, "account.address.add", {"address": "a2"}),
        (4040, "account.address.remove", {"address": "a2"}),
        (-32602, "account.activity", {"limit": 501}),
    ]
    for expected, method, params in refusals:
        assert error_of(await h.call(creds, method, params))[0] == expected, (method, params)
    assert (h.security.export_state(), len(h.executor.events)) == before


async def test_serve_address_lock_reaches_the_component(tmp_path: Path) -> None:
    config = NodeConfig(db=str(tmp_path / "n.db"), address_lock=60)
    with trio.fail_after(20):
        async with open_core(config) as core:
            made = await core.create_account("alice")
            view = await core.engine.execute(
                lambda: core.security.add_address(
                    account="alice",
                    address="a1",
                    label="",
                    actor=Actor(made.key_id, None),
                    now_ms=1_000,
                )
            )
    assert view.usable_from_ms == 61_000


async def test_the_activity_log_pages_newest_first_and_never_holds_a_secret() -> None:
    h, creds = await funded()
    made = result_of(await h.call(creds, "apikey.create", {"label": "bot", "scopes": ["read"]}))
    rotated = result_of(await h.call(creds, "apikey.rotate", {"key_id": made["key_id"]}))
    result_of(await h.call(creds, "apikey.revoke", {"key_id": rotated["key_id"]}))
    result_of(await h.call(creds, "account.address.add", {"address": "a1", "label": "l"}))
    result_of(await h.call(creds, "account.address.remove", {"address": "a1"}))
    result_of(await h.call(creds, "account.withdraw", out("a9", "0.25")))
    secret = result_of(await h.call(creds, "account.2fa.enable"))["secret"]
    events = result_of(await h.call(creds, "account.activity"))["events"]
    assert [e["kind"] for e in events] == [
        "2fa.enabled",
        "withdrawal",
        "address.removed",
        "address.added",
        "key.revoked",
        "key.rotated",
        "key.created",
        "key.created",
    ]
    assert [e["id"] for e in events] == list(range(8, 0, -1))
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["withdrawal"]["detail"] == {
        "ledger_id": 2,
        "amount": "0.25000000",
        "address": "a9",
    }
    assert by_kind["key.rotated"]["detail"] == {
        "key_id": made["key_id"],
        "new_key_id": rotated["key_id"],
        "grace_s": 3600,
    }
    assert by_kind["key.rotated"]["key_id"] == creds.key_id
    assert events[-1]["key_id"] is None  # the operator's account create
    assert all(e["time_ms"] == h.clock.market for e in events)
    page = result_of(await h.call(creds, "account.activity", {"limit": 3, "before": 6}))
    assert [e["id"] for e in page["events"]] == [5, 4, 3]
    text = json.dumps(events)
    for secret_text in (creds.secret, made["secret"], rotated["secret"], secret):
        assert secret_text not in text
    # Another account sees none of it.
    bob = await h.bootstrap("bob")
    assert [e["kind"] for e in result_of(await h.call(bob, "account.activity"))["events"]] == [
        "key.created"
    ]


async def test_failed_authentication_is_logged_at_most_once_a_minute_per_key_and_rule() -> None:
    h, creds = await funded()
    forged = creds._replace(secret="0" * 64)
    events = len(h.executor.events)
    for _ in range(50):
        assert error_of(await h.call(forged, "account.balance"))[0] == 4001
    assert len(h.executor.events) == events + 1  # one entry, not fifty
    stale = h.clock.wall - 120_000
    assert error_of(await h.call(creds, "account.balance", now_ms=stale))[0] == 4008
    h.clock.market += 59_999
    error_of(await h.call(forged, "account.balance"))
    assert len(h.executor.events) == events + 2
    h.clock.market += 1
    error_of(await h.call(forged, "account.balance"))
    # An unknown key belongs to no account: nothing to log.
    error_of(await h.call(creds._replace(key_id="k-9999"), "account.balance"))
    failed = [
        (e.key_id, e.detail)
        for e in h.security.activity("alice", limit=10)
        if e.kind.value == "auth.failed"
    ]
    assert failed == [
        # This one and the 50 since the last entry: none was lost, one entry a minute.
        (creds.key_id, {"rule": "signature", "count": 51}),
        (creds.key_id, {"rule": "window", "count": 1}),
        (creds.key_id, {"rule": "signature", "count": 1}),
    ]


async def test_the_activity_log_survives_a_restart(tmp_path: Path) -> None:
    clock = SplitClock()
    async with real_stack(tmp_path / "j.db", clock=clock) as stack:
        creds = await stack.bootstrap()
        result_of(await stack.call(creds, "account.address.add", {"address": "a1", "label": ""}))
        before = result_of(await stack.call(creds, "account.activity"))
    market, _ = make_components()
    keyring = KeyRing(master_key=MASTER, new_key_id=counter_ids("r"))
    async with real_stack(tmp_path / "j.db", clock=clock, market=market, keyring=keyring) as stack:
        assert result_of(await stack.call(creds, "account.activity")) == before
        assert len(before["events"]) == 2


async def test_unsigned_calls_share_a_bucket_per_client_address() -> None:
    h = Harness(settings=ApiSettings(public_rate_per_s=50, public_burst=100), clock=SplitClock())
    creds = await h.bootstrap()
    body = rpc_body("server.time")

    async def public(remote: str) -> Any:
        answer = await h.service.handle(body=body, headers={}, remote=remote)
        assert answer is not None
        return json.loads(answer)

    for _ in range(100):
        result_of(await public("10.0.0.1"))
    code, _, data = error_of(await public("10.0.0.1"))
    assert (code, data) == (4029, {"retry_after_ms": 20})  # one token every 20 ms
    result_of(await public("10.0.0.2"))  # another peer is not held up
    # Signed calls are the key's bucket, not the address's.
    signed = rpc_body("account.balance")
    answer = await h.service.handle(body=signed, headers=h.sign(creds, signed), remote="10.0.0.1")
    assert answer is not None
    result_of(json.loads(answer))
    h.clock.wall += 20
    result_of(await public("10.0.0.1"))
    # A batch of more unsigned calls than the burst could never pass.
    batch = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "server.time"} for i in range(101)])
    answer = await h.service.handle(body=batch.encode(), headers={}, remote="10.0.0.3")
    assert answer is not None
    answers = json.loads(answer)
    assert {a["error"]["code"] for a in answers} == {-32600}
    assert answers[0]["error"]["data"] == {"max_unsigned_calls": 100}
    # Unknown methods and malformed calls are unsigned calls too.
    junk = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "no.such"}, {"id": 2}])
    h.clock.wall += 60_000
    for _ in range(50):
        await h.service.handle(body=junk.encode(), headers={}, remote="10.0.0.4")
    code, _, _ = error_of(await public("10.0.0.4"))
    assert code == 4029
    # So is a body that is no request at all.
    h.clock.wall += 60_000
    for _ in range(100):
        answer = await h.service.handle(body=b"junk", headers={}, remote="10.0.0.5")
        assert answer is not None
        assert json.loads(answer)["error"]["code"] == -32700
    answer = await h.service.handle(body=b"junk", headers={}, remote="10.0.0.5")
    assert answer is not None
    assert json.loads(answer)["error"]["code"] == 4029


async def test_through_http_the_client_address_is_seen(tmp_path: Path) -> None:
    settings = ApiSettings(public_rate_per_s=1, public_burst=2)
    async with real_stack(tmp_path / "j.db", settings=settings) as stack:
        assert "result" in await stack.call(None, "server.time")
        assert "result" in await stack.call(None, "market.info")
        code, _, data = error_of(await stack.call(None, "server.time"))
        assert (code, data) == (4029, {"retry_after_ms": 1000})
        creds = await stack.bootstrap()
        result_of(await stack.call(creds, "account.address.add", {"address": "a", "label": ""}))
        (entry, _) = result_of(await stack.call(creds, "account.activity"))["events"]
        assert (entry["kind"], entry["remote"]) == ("address.added", "127.0.0.1")
