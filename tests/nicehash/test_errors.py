"""Every error of nicehash-rest.md's table, produced through the NiceHash door of a whole node:
the HTTP status, NiceHash's code and the message verbatim, in NiceHash's error body; and a
refused call changes nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import trio

from marketplace.api.app import ApiSettings
from marketplace.core.rules import RuleChange
from stratum.core.shares import Algorithm

from .helpers import Buyer, NiceHashNode, error_of, nicehash_node, signed

ORDER = "/main/api/v2/hashpower/order/"


def now_ms() -> int:
    return int(time.time() * 1000)


async def send(
    nh: NiceHashNode,
    buyer: Buyer,
    method: str,
    path: str,
    query: str = "",
    body: Any = None,
    **kw: Any,
) -> httpx.Response:
    url, headers, data = signed(buyer.creds, method, path, query, body, time_ms=now_ms(), **kw)
    with trio.fail_after(10):
        return await nh.http.request(method, url, headers=headers, content=data)


async def test_malformed_session_balance_not_found(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        order_id = await alice.place()
        before = (await alice.rpc.get_order(order_id), await alice.rpc.balance())
        refill = ORDER + order_id + "/refill"
        # 60: a body of the wrong shape or type, or no JSON at all.
        for body in ({"amount": "lots"}, {"amount": [1]}, {}):
            assert error_of(await send(nh, alice, "POST", refill, body=body)) == (
                400,
                60,
                "Malformed request",
            )
        for junk in (b"{not json", b'"x"', b"[]"):
            url, headers, data = signed(alice.creds, "POST", refill, data=junk, time_ms=now_ms())
            response = await nh.http.post(url, headers=headers, content=data)
            assert error_of(response) == (400, 60, "Malformed request")
        # 2000/401: a bad signature, an unknown key, a time outside the window, a replay.
        url, headers, data = signed(
            alice.creds, "GET", "/main/api/v2/accounting/accounts2", time_ms=now_ms()
        )
        forged = {
            **headers,
            "X-Auth": headers["X-Auth"][:-1] + ("0" if headers["X-Auth"][-1] != "0" else "1"),
        }
        assert error_of(await nh.http.get(url, headers=forged)) == (401, 2000, "Invalid session")
        stranger = {**headers, "X-Auth": "no-such-key:" + headers["X-Auth"].split(":")[1]}
        assert error_of(await nh.http.get(url, headers=stranger)) == (401, 2000, "Invalid session")
        old_url, old_headers, _ = signed(
            alice.creds, "GET", "/main/api/v2/accounting/accounts2", time_ms=now_ms() - 120_000
        )
        assert error_of(await nh.http.get(old_url, headers=old_headers)) == (
            401,
            2000,
            "Invalid session",
        )
        assert (await nh.http.get(url, headers=headers)).status_code == 200
        assert error_of(await nh.http.get(url, headers=headers)) == (401, 2000, "Invalid session")
        # 3001/409: more than the account has.
        assert error_of(await send(nh, alice, "POST", refill, body={"amount": "5"})) == (
            409,
            3001,
            "Insufficient balance in account: (BTC, USER, alice)",
        )
        # 404: no such order (another account's is none either), no such path.
        bob = await nh.buyer("bob")
        for who, path in ((alice, ORDER + "o-999999"), (bob, ORDER + order_id)):
            assert error_of(await send(nh, who, "GET", path)) == (404, 404, "Not found")
            assert error_of(await send(nh, who, "DELETE", path)) == (404, 404, "Not found")
        assert error_of(await nh.http.get("/main/api/v2/public/orders/active2")) == (
            404,
            404,
            "Not found",
        )
        assert error_of(await nh.http.put("/main/api/v2/mining/algorithms")) == (
            404,
            404,
            "Not found",
        )
        assert (await alice.rpc.get_order(order_id), await alice.rpc.balance()) == before


async def test_scope_is_403(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        order_id = await alice.place()
        with trio.fail_after(10):
            issued = await alice.rpc.create_key(label="reader", scopes=["read"])
        assert isinstance(issued.secret, str)
        reader = Buyer(
            alice.creds._replace(key_id=issued.key_id, secret=issued.secret), alice.rpc, alice.demo
        )
        assert (await send(nh, reader, "GET", ORDER + order_id)).status_code == 200
        for method, path, body in (
            ("DELETE", ORDER + order_id, None),
            ("POST", ORDER + order_id + "/refill", {"amount": "0.001"}),
            ("POST", ORDER + order_id + "/updatePriceAndLimit", {"price": "0.02"}),
        ):
            assert error_of(await send(nh, reader, method, path, body=body)) == (
                403,
                2000,
                "Invalid session",
            )
        with trio.fail_after(10):
            activity = await alice.rpc.activity()
        assert any(e.kind == "auth.failed" and e.detail.get("rule") == "scope" for e in activity)
        assert (await alice.rpc.get_order(order_id)).status == "active"


async def test_order_rules(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, price_down_interval=600) as nh:
        alice = await nh.buyer()
        order_id = await alice.place()
        update = ORDER + order_id + "/updatePriceAndLimit"
        # 5061: a second decrease within the interval; the seconds come from our rule.
        assert (await send(nh, alice, "POST", update, body={"price": "0.0095"})).status_code == 200
        status, code, message = error_of(
            await send(nh, alice, "POST", update, body={"price": "0.0090"})
        )
        assert (status, code) == (400, 5061)
        found = re.fullmatch(
            r"Order price cannot be decreased yet, allowed once per 10 minutes\. "
            r"Seconds till available: (\d+)",
            message,
        )
        assert found is not None
        assert 590 <= int(found.group(1)) <= 600
        # A raise is allowed meanwhile, and does not restart the wait.
        assert (await send(nh, alice, "POST", update, body={"price": "0.0200"})).status_code == 200
        status, code, message = error_of(
            await send(nh, alice, "POST", update, body={"price": "0.0190"})
        )
        assert code == 5061
        assert int(message.rsplit(" ", 1)[1]) <= 600
        # 2997: more decimals than NiceHash's scales, a value no market takes, a market rule.
        assert error_of(await send(nh, alice, "POST", update, body={"price": "0.00001"})) == (
            400,
            2997,
            "Invalid input: PRICE_DATA_SCALE",
        )
        assert error_of(await send(nh, alice, "POST", update, body={"limit": 1.005})) == (
            400,
            2997,
            "Invalid input: LIMIT_DATA_SCALE",
        )
        assert error_of(await send(nh, alice, "POST", update, body={"limit": "-1"})) == (
            400,
            2997,
            "Invalid input: LIMIT",
        )
        core = nh.node.core

        def stricter() -> None:
            change = RuleChange(min_price_msat=10**9, min_limit_hs=2 * 10**6)
            core.market.change_rules(
                algorithm=Algorithm.SHA256D, change=change, now_ms=core.clock.now_ms()
            )

        await core.engine.execute(stricter)
        assert error_of(await send(nh, alice, "POST", update, body={"limit": "1.5"})) == (
            400,
            2997,
            "Invalid input: LIMIT",
        )
        # 5060: under the market's minimum price (0.01 now).
        assert error_of(await send(nh, alice, "POST", update, body={"price": "0.0099"})) == (
            400,
            5060,
            "Order price too low",
        )
        # 5068: factors that are not the algorithm's.
        for factors in ({"marketFactor": "1000000000000"}, {"displayPriceFactor": "TH"}):
            assert error_of(
                await send(nh, alice, "POST", update, body={"price": "0.03", **factors})
            ) == (
                400,
                5068,
                "Invalid order market factor",
            )
        # 5059: the order is over.
        assert (await send(nh, alice, "DELETE", ORDER + order_id)).status_code == 200
        for method, path, body in (
            ("DELETE", ORDER + order_id, None),
            ("POST", ORDER + order_id + "/refill", {"amount": "0.001"}),
            ("POST", update, {"price": "0.05"}),
        ):
            assert error_of(await send(nh, alice, method, path, body=body)) == (
                400,
                5059,
                "Order not active",
            )
        assert (await alice.rpc.get_order(order_id)).price == "0.02000000"


async def test_rate_limit_is_429(tmp_path: Path) -> None:
    async with nicehash_node(
        tmp_path, api=ApiSettings(rate_per_s=1, burst=2, public_rate_per_s=1, public_burst=2)
    ) as nh:
        alice = await nh.buyer(deposit=None)
        codes = [
            (await send(nh, alice, "GET", "/main/api/v2/accounting/accounts2")).status_code
            for _ in range(3)
        ]
        assert codes[:2] == [200, 200]
        response = await send(nh, alice, "GET", "/main/api/v2/accounting/accounts2")
        assert error_of(response) == (429, 429, "Too many requests")
        assert int(response.headers["retry-after"]) >= 1
        public = [
            (await nh.http.get("/main/api/v2/mining/algorithms")).status_code for _ in range(3)
        ]
        assert public[-1] == 429
        # The clock is never rate-limited: every client finds its X-Time through it.
        for _ in range(5):
            assert (await nh.http.get("/api/v2/time")).status_code == 200


async def test_order_creation_and_pool_errors(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        pool = {
            "name": "home",
            "algorithm": "SHA256",
            "stratumHostname": "127.0.0.1",
            "stratumPort": 3456,
            "username": "alice.rig",
            "password": "x",
        }
        created = await send(nh, alice, "POST", "/main/api/v2/pool", body=pool)
        assert created.status_code == 200
        pool_id = created.json()["id"]
        order = {
            "market": "EU",
            "algorithm": "SHA256",
            "amount": "0.01",
            "price": "0.0100",
            "limit": "0",
            "poolId": pool_id,
            "type": "STANDARD",
        }
        create = "/main/api/v2/hashpower/order"
        table: list[tuple[dict[str, Any], tuple[int, int, str]]] = [
            ({"type": "FIXED"}, (500, 2999, "Generic Server Error")),
            ({"type": "SPOT"}, (400, 2997, "Invalid input: TYPE")),
            ({"poolId": "p-999999"}, (404, 404, "Not found")),
            ({"algorithm": "SCRYPT"}, (400, 2997, "Invalid input: POOL_ID")),
            ({"algorithm": "X16R"}, (400, 2997, "Invalid input: ALGORITHM")),
            ({"market": "ASIA"}, (400, 2997, "Invalid input: MARKET")),
            ({"amount": "0.0001"}, (400, 2997, "Invalid input: AMOUNT")),
            ({"amount": "0.000000001"}, (400, 2997, "Invalid input: AMOUNT")),
            ({"amount": "2"}, (409, 3001, "Insufficient balance in account: (BTC, USER, alice)")),
            ({"price": "0.01001"}, (400, 2997, "Invalid input: PRICE_DATA_SCALE")),
            ({"marketFactor": "1000"}, (400, 5068, "Invalid order market factor")),
            ({"displayMarketFactor": "TH"}, (400, 5068, "Invalid order market factor")),
            ({"poolId": None}, (400, 60, "Malformed request")),
        ]
        for change, expected in table:
            body = {k: v for k, v in {**order, **change}.items() if v is not None}
            assert error_of(await send(nh, alice, "POST", create, body=body)) == expected, change
        for change, expected in (
            ({"stratumHostname": "192.0.2.7"}, (400, 2997, "Invalid input: STRATUM_HOSTNAME")),
            ({"stratumPort": "http"}, (400, 2997, "Invalid input: STRATUM_PORT")),
            ({"stratumPort": 70000}, (400, 2997, "Invalid input: STRATUM_PORT")),
            ({"id": "p-999999"}, (404, 404, "Not found")),
            ({"algorithm": "ETHASH"}, (400, 2997, "Invalid input: ALGORITHM")),
        ):
            refused = await send(nh, alice, "POST", "/main/api/v2/pool", body={**pool, **change})
            assert error_of(refused) == expected, change
        for method in ("GET", "DELETE"):
            missing = await send(nh, alice, method, "/main/api/v2/pool/p-999999")
            assert error_of(missing) == (404, 404, "Not found")
        bob = await nh.buyer("bob")
        assert error_of(await send(nh, bob, "GET", "/main/api/v2/pool/" + pool_id)) == (
            404,
            404,
            "Not found",
        )
        # Nothing of it happened.
        with trio.fail_after(10):
            assert await alice.rpc.list_orders() == []
            assert [p.id for p in await alice.rpc.list_pools()] == [pool_id]
            assert (await alice.rpc.balance()).available == "1.00000000"
