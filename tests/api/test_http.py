"""The API through real HTTP (hypercorn on 127.0.0.1) over the real Market and Engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import trio
from structlog.testing import capture_logs

from marketplace.api import wire
from marketplace.api.app import ApiSettings
from marketplace.api.methods import METHODS, CallContext, Method
from marketplace.api.signing import sign_headers
from marketplace.core.security_events import ActivityKind, ActivityRecorded
from tests.api.conftest import (
    Harness,
    ManualClock,
    MemoryExecutor,
    error_of,
    make_components,
    real_stack,
    result_of,
    rpc_body,
    signed_headers,
)

ORDER = {
    "algorithm": "sha256d",
    "type": "standard",
    "price": "0.00200000",
    "limit": "1.5",
    "amount": "0.01",
}


async def funded(stack: Any, account: str = "alice", amount: str = "1") -> Any:
    creds = await stack.bootstrap(account)
    result_of(await stack.call(creds, "account.deposit", {"amount": amount}))
    return creds


async def test_public_methods_need_no_signature(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        assert result_of(await stack.call(None, "server.time")) == {
            "time_ms": stack.clock(),
            "market_time_ms": stack.clock(),
        }
        info = result_of(await stack.call(None, "market.info"))
        sha = next(m for m in info["markets"] if m["algorithm"] == "sha256d")
        assert sha["unit"] == "MH"
        assert sha["stratum_port"] == 3333
        assert sha["fee_bps"] == 200
        assert sha["min_amount"] == "0.00100000"
        creds = await funded(stack)
        order = result_of(await stack.call(creds, "order.create", ORDER))
        book = result_of(await stack.call(None, "market.orderbook", {"algorithm": "sha256d"}))
        assert book["orders"] == [
            {
                "id": order["id"],
                "type": "standard",
                "price": "0.00200000",
                "limit": "1.500000",
                "accepted_speed": "0.000000",
                "workers": 0,
            }
        ]
        stats = result_of(await stack.call(None, "market.stats", {"algorithm": "scrypt"}))
        assert stats["workers"] == 0
        assert stats["active_orders"] == 0


async def test_order_lifecycle_and_objects(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        creds = await funded(stack)
        order = result_of(await stack.call(creds, "order.create", ORDER))
        assert order["status"] == "active"
        assert order["amount"] == order["remaining"] == "0.01000000"
        assert order["spent"] == "0.00000000"
        assert set(order) >= {
            "id", "algorithm", "type", "status", "price", "limit", "amount", "spent",
            "remaining", "accepted_speed", "workers", "created_ms", "ends_ms",
        }  # fmt: skip
        assert result_of(await stack.call(creds, "account.balance")) == {
            "available": "0.99000000",
            "escrowed": "0.01000000",
            "currency": "BTC",
        }
        oid = order["id"]
        raised = result_of(
            await stack.call(creds, "order.set_price", {"id": oid, "price": "0.003"})
        )
        assert raised["price"] == "0.00300000"
        limited = result_of(await stack.call(creds, "order.set_limit", {"id": oid, "limit": "2"}))
        assert limited["limit"] == "2.000000"
        refilled = result_of(await stack.call(creds, "order.refill", {"id": oid, "amount": "0.01"}))
        assert refilled["amount"] == "0.02000000"
        listed = result_of(await stack.call(creds, "order.list", {"status": "active"}))
        assert [o["id"] for o in listed["orders"]] == [oid]
        stats = result_of(await stack.call(creds, "order.stats", {"id": oid}))
        assert stats["id"] == oid
        cancelled = result_of(await stack.call(creds, "order.cancel", {"id": oid}))
        assert cancelled["status"] == "cancelled"
        ledger = result_of(await stack.call(creds, "account.ledger", {"limit": 10}))
        assert [e["kind"] for e in ledger["entries"]] == ["release", "escrow", "escrow", "deposit"]
        assert ledger["entries"][0]["amount"] == "0.02000000"
        withdrawn = result_of(
            await stack.call(creds, "account.withdraw", {"amount": "0.5", "address": "bc1qtest"})
        )
        assert withdrawn["entry"]["kind"] == "withdrawal"
        assert withdrawn["balance"]["available"] == "0.50000000"
        assert result_of(await stack.call(creds, "worker.list")) == {"workers": []}


async def test_every_error_code(tmp_path: Path) -> None:
    def boom(ctx: CallContext, p: wire.NoParams) -> wire.TimeOut:
        raise ZeroDivisionError("a bug")

    methods = dict(METHODS)
    methods["test.boom"] = Method(
        name="test.boom",
        scope=None,
        params=wire.NoParams,
        run=boom,
        mutating=False,
        decoder=msgspec.json.Decoder(wire.NoParams),
    )
    async with real_stack(tmp_path / "j.db", methods=methods) as stack:
        alice = await funded(stack)
        bob = await funded(stack, "bob")
        order = result_of(await stack.call(alice, "order.create", ORDER))
        journal = stack.engine.journal

        async def refused(
            expect: int, creds: Any, method: str, params: Any = None, **kw: Any
        ) -> dict[str, Any]:
            before = journal.last_seq
            code, message, data = error_of(await stack.call(creds, method, params, **kw))
            assert code == expect, (code, message, data)
            assert message
            # Nothing but the owner's record of a failed authentication (security.md).
            for event in await stack.journaled_since(before):
                assert isinstance(event, ActivityRecorded), "a refused call journaled something"
                assert event.kind is ActivityKind.AUTH_FAILED
            return data

        # JSON-RPC's own.
        response = await stack.post(b'{"jsonrpc":"2.0","method":')
        assert response.status_code == 200
        assert response.json()["error"]["code"] == -32700
        assert response.json()["id"] is None
        response = await stack.post(b'{"jsonrpc":"1.0","method":"server.time","id":9}')
        assert response.json()["error"]["code"] == -32600
        assert response.json()["id"] == 9
        await refused(-32601, None, "no.such")
        data = await refused(-32602, alice, "order.create", {**ORDER, "colour": "red"})
        assert "colour" in data["detail"]
        data = await refused(-32602, alice, "order.create", {**ORDER, "amount": "1e5"})
        assert data == {"value": "1e5"}
        # Amounts and speeds too big to journal are refused at the edge, changing nothing.
        balance = result_of(await stack.call(alice, "account.balance"))
        data = await refused(-32602, alice, "account.deposit", {"amount": "21000000.00000001"})
        assert data["max"] == "21000000"
        data = await refused(-32602, alice, "order.create", {**ORDER, "limit": "1000000000001"})
        assert data["max"] == "1000000000000.000000"
        await refused(-32602, alice, "order.create", {**ORDER, "price": "30000000"})
        assert result_of(await stack.call(alice, "account.balance")) == balance
        assert len(result_of(await stack.call(alice, "order.list"))) == 1
        data = await refused(-32602, None, "market.orderbook", {"algorithm": "x11"})
        assert "algorithm" in data["detail"]
        with capture_logs() as logs:
            data = await refused(-32603, None, "test.boom")
        assert list(data) == ["log_id"]
        logged = next(e for e in logs if e["event"] == "api.internal_error")
        assert logged["log_id"] == data["log_id"]
        assert logged["exc_info"] is True
        # Authentication.
        data = await refused(4001, None, "account.balance")
        assert data == {"header": "X-Auth"}
        forged = alice._replace(secret="0" * 64)
        data = await refused(4001, forged, "account.balance")
        assert data == {"header": "X-Auth"}
        await refused(4001, alice._replace(key_id="k-9999"), "account.balance")
        await refused(4001, alice, "account.balance", org="bob")
        await refused(4008, alice, "account.balance", now_ms=stack.clock() - 60_001)
        await refused(4008, alice, "account.balance", now_ms=stack.clock() + 60_001)
        # The window is inclusive; nothing stamped before the server started passes.
        stack.clock.advance(60_000)
        assert "error" not in await stack.call(
            alice, "account.balance", now_ms=stack.clock() - 60_000
        )
        # Scope.
        reader = result_of(
            await stack.call(alice, "apikey.create", {"label": "ro", "scopes": ["read"]})
        )
        ro = alice._replace(key_id=reader["key_id"], secret=reader["secret"])
        data = await refused(4003, ro, "order.create", ORDER)
        assert data == {"scope": "trade"}
        await refused(4003, ro, "apikey.create", {"label": "x", "scopes": ["read"]})
        # Market refusals, mapped at the edge.
        await refused(4040, bob, "order.get", {"id": order["id"]})
        await refused(4040, alice, "order.get", {"id": "o-999999"})
        await refused(4040, alice, "apikey.revoke", {"key_id": "k-9999"})
        # Their data speaks the wire's units: BTC and speed strings, not msat or H/s.
        available = result_of(await stack.call(alice, "account.balance"))["available"]
        data = await refused(4020, alice, "order.create", {**ORDER, "amount": "5"})
        assert data == {"available": available}
        data = await refused(4220, alice, "order.create", {**ORDER, "price": "0.00000001"})
        assert data == {"field": "price", "min": "0.00001000"}
        data = await refused(4220, alice, "order.create", {**ORDER, "limit": "0.001"})
        assert data == {"field": "limit", "min": "0.010000", "algorithm": "sha256d"}
        lowered = {"id": order["id"], "price": "0.00100000"}
        data = await refused(4090, alice, "order.set_price", lowered)
        assert data == {"id": order["id"], "min": "0.00180000", "step_bps": 1000}
        result_of(await stack.call(alice, "order.cancel", {"id": order["id"]}))
        await refused(4090, alice, "order.cancel", {"id": order["id"]})
        # HTTP edge.
        assert (await stack.post(b"{}", path="/other")).status_code == 404
        with trio.fail_after(10):
            assert (await stack.http.get("/rpc")).status_code == 405
        assert (await stack.post(b" " * (64 * 1024 + 1))).status_code == 413
        response = await stack.post(b" " * (64 * 1024 - 2) + b"[]")
        assert response.json()["error"]["code"] == -32600


async def test_replayed_request_is_refused(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        creds = await funded(stack)
        body = rpc_body("order.create", ORDER)
        headers = signed_headers(creds, body, now_ms=stack.clock(), nonce="captured-1")
        first = (await stack.post(body, headers)).json()
        assert first["result"]["status"] == "active"
        before = stack.engine.journal.last_seq
        again = (await stack.post(body, headers)).json()
        assert again["error"]["code"] == 4009
        assert again["error"]["data"] == {"header": "X-Nonce"}
        # Nothing changed but the owner's activity log, which shows the replay.
        (entry,) = await stack.journaled_since(before)
        assert isinstance(entry, ActivityRecorded)
        assert (entry.kind, entry.key_id, entry.detail) == (
            ActivityKind.AUTH_FAILED,
            creds.key_id,
            {"rule": "replay", "count": 1},
        )
        # Still refused at the very end of the window; refused by the window after it.
        stack.clock.advance(60_000)
        assert (await stack.post(body, headers)).json()["error"]["code"] == 4009
        stack.clock.advance(1)
        assert (await stack.post(body, headers)).json()["error"]["code"] == 4008
        orders = result_of(await stack.call(creds, "order.list"))["orders"]
        assert len(orders) == 1


async def test_rotation_grace_then_old_key_fails(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        old = await funded(stack)
        rotated = result_of(
            await stack.call(old, "apikey.rotate", {"key_id": old.key_id, "grace_s": 300})
        )
        assert rotated["version"] == 2
        assert rotated["scopes"] == ["read", "trade", "withdraw", "keys"]
        new = old._replace(key_id=rotated["key_id"], secret=rotated["secret"])
        listed = result_of(await stack.call(new, "apikey.list"))["keys"]
        assert {k["key_id"] for k in listed} == {old.key_id, new.key_id}
        assert all("secret" not in k for k in listed)
        expiring = next(k for k in listed if k["key_id"] == old.key_id)
        assert expiring["expires_ms"] == stack.clock() + 300_000
        stack.clock.advance(299_999)
        assert "error" not in await stack.call(old, "account.balance")
        assert "error" not in await stack.call(new, "account.balance")
        stack.clock.advance(1)
        code, message, _ = error_of(await stack.call(old, "account.balance"))
        assert (code, message) == (4001, "key expired")
        assert "error" not in await stack.call(new, "account.balance")
        result_of(await stack.call(new, "apikey.revoke", {"key_id": new.key_id}))
        code, message, _ = error_of(await stack.call(new, "account.balance"))
        assert (code, message) == (4001, "key revoked")


async def test_retried_create_with_same_request_id_creates_one_order(tmp_path: Path) -> None:
    clock = ManualClock()
    path = tmp_path / "j.db"
    async with real_stack(path, clock=clock) as stack:
        creds = await funded(stack)
        first = await stack.call(creds, "order.create", ORDER, request_id="retry-1")
        clock.advance(1_000)
        second = await stack.call(creds, "order.create", ORDER, request_id="retry-1")
        assert second == first
        other = await stack.call(
            creds, "order.create", {**ORDER, "amount": "0.02"}, request_id="retry-1"
        )
        assert error_of(other)[0] == -32600
        assert len(result_of(await stack.call(creds, "order.list"))["orders"]) == 1
        key = result_of(
            await stack.call(
                creds, "apikey.create", {"label": "b", "scopes": ["read"]}, request_id="key-1"
            )
        )
        assert key["secret"]
    # After a restart (journal replay) the record is still there.
    clock.advance(1_000)
    market, keyring = make_components()
    async with real_stack(path, clock=clock, market=market, keyring=keyring) as stack:
        third = await stack.call(creds, "order.create", ORDER, request_id="retry-1")
        assert third == first
        assert len(result_of(await stack.call(creds, "order.list"))["orders"]) == 1
        again = result_of(
            await stack.call(
                creds, "apikey.create", {"label": "b", "scopes": ["read"]}, request_id="key-1"
            )
        )
        assert again == key  # the secret is derived again, never stored
        assert result_of(await stack.call(creds, "account.balance"))["escrowed"] == "0.01000000"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert creds.secret.encode() not in raw
    assert key["secret"].encode() not in raw


async def test_rate_limit(tmp_path: Path) -> None:
    settings = ApiSettings(rate_per_s=2, burst=3)
    async with real_stack(tmp_path / "j.db", settings=settings) as stack:
        creds = await stack.bootstrap()
        for _ in range(3):
            assert "error" not in await stack.call(creds, "account.balance")
        code, _, data = error_of(await stack.call(creds, "account.balance"))
        assert code == 4029
        assert data == {"retry_after_ms": 500}
        stack.clock.advance(500)
        assert "error" not in await stack.call(creds, "account.balance")
        # Public methods are not charged.
        assert "error" not in await stack.call(None, "server.time")


async def test_batch_signed_once_scopes_per_call(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        alice = await funded(stack)
        reader = result_of(
            await stack.call(alice, "apikey.create", {"label": "ro", "scopes": ["read"]})
        )
        ro = alice._replace(key_id=reader["key_id"], secret=reader["secret"])
        batch = json.dumps(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "account.balance"},
                {"jsonrpc": "2.0", "id": 2, "method": "order.create", "params": ORDER},
                {"jsonrpc": "2.0", "method": "account.balance"},
                {"jsonrpc": "2.0", "id": 3, "method": "server.time"},
            ]
        ).encode()
        headers = sign_headers(
            key_id=ro.key_id,
            secret=ro.secret,
            org_id="alice",
            time_ms=stack.clock(),
            nonce="batch-1",
            body=batch,
        )
        answers = (await stack.post(batch, headers)).json()
        assert [a["id"] for a in answers] == [1, 2, 3]
        assert answers[0]["result"]["currency"] == "BTC"
        assert answers[1]["error"]["code"] == 4003
        assert answers[2]["result"]["time_ms"] == stack.clock()
        # A notification alone gets no answer at all.
        response = await stack.post(b'{"jsonrpc":"2.0","method":"server.time"}')
        assert response.status_code == 204
        assert response.content == b""


async def test_concurrent_repeats_act_once() -> None:
    h = Harness()

    class YieldingExecutor(MemoryExecutor):
        async def execute(self, fn: Any) -> Any:
            await trio.sleep(0)  # like the engine waiting for journal capacity
            return await super().execute(fn)

    h.executor = YieldingExecutor([h.market, h.keyring, h.security])
    h.service._executor = h.executor
    creds = await h.bootstrap()
    await h.call(creds, "account.deposit", {"amount": "1"})
    answers: list[Any] = []

    async def create() -> None:
        answers.append(await h.call(creds, "order.create", ORDER, request_id="same"))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            nursery.start_soon(create)
    assert answers[0] == answers[1]
    assert len(h.views.list_orders(account="alice")) == 1


async def test_parse_errors_say_what_is_wrong(tmp_path: Path) -> None:
    async with real_stack(tmp_path / "j.db") as stack:
        for body, detail in (
            (b"", "empty body"),
            (b" \r\n", "empty body"),
            (b'{"jsonrpc":"2.0","method":"server.time","id":"\\ud800"}', "lone surrogate"),
            (b'{"jsonrpc":"2.0","method":"server.time","id":"\xed\xa0\x80"}', "invalid UTF-8"),
            (b'{"jsonrpc":"2.0","method":', "Input data was truncated"),
        ):
            response = await stack.post(body, {"Content-Type": "application/json"})
            assert response.status_code == 200
            answer = response.json()
            assert answer["id"] is None
            assert answer["error"]["code"] == -32700
            assert answer["error"]["message"] == "parse error"
            assert answer["error"]["data"]["detail"].startswith(detail), (body, answer)
        surrogate = await stack.post(b'["\\ud800"]')
        assert surrogate.json()["error"]["data"]["detail"] == (
            "lone surrogate \\ud800 at byte 2: not a character"
        )
        utf8 = await stack.post(b'["ok", "\xff"]')
        assert utf8.json()["error"]["data"]["detail"] == "invalid UTF-8 at byte 8"
