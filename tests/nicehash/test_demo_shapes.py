"""The request shapes of NiceHash's other published clients, as they write them (``clients.py``),
each running its own flow against a whole node: the JavaScript demo (server time first,
compact JSON, a bare ``?``, qs-encoded queries, a port as a string), the C# demo (one server
time for every call, all-string bodies), the Java demo (the path and query signed decoded) and
NiceHashBot (``GET /api/v2/time`` before every signed call, all-string bodies with every
factor, a pool edited by id, paths NiceHash has and we do not answered 404 in NiceHash's shape,
which it reads as "nothing"). The JSON-RPC door sees what each did."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import trio

from .clients import CSharpDemo, JavaDemo, JsDemo, NiceHashBot
from .helpers import Buyer, nicehash_node

ORDER = "/main/api/v2/hashpower/order/"
#: Loopback (the pools --pool-allow takes by default); nothing needs to listen there.
POOL_HOST = "127.0.0.1"


async def rpc_order(buyer: Buyer, order_id: str) -> Any:
    with trio.fail_after(10):
        return await buyer.rpc.get_order(order_id)


async def test_javascript_demo(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        creds = alice.creds
        js = JsDemo(nh.http, org=creds.account_id, key=creds.key_id, secret=creds.secret)
        await js.get_time()
        algorithms = await js.get("/main/api/v2/mining/algorithms")
        algo = algorithms["miningAlgorithms"][0]
        assert algo["algorithm"] == "SCRYPT"  # the demo's "algo = res.miningAlgorithms[0]"
        accounts = await js.get("/main/api/v2/accounting/accounts2")
        assert accounts["total"]["available"] == "1.00000000"
        pool = await js.post(
            "/main/api/v2/pool",
            body={
                "algorithm": "SCRYPT",
                "name": "my pool",
                "username": "pool_username",
                "password": "x",
                "stratumHostname": POOL_HOST,
                "stratumPort": "3456",
            },
        )
        assert (pool["algorithm"], pool["stratumPort"]) == ("SCRYPT", 3456)
        order = await js.post(
            "/main/api/v2/hashpower/order",
            body={
                "algorithm": "SCRYPT",
                "amount": "0.005",
                "displayMarketFactor": algo["displayMarketFactor"],
                "limit": algo["minSpeedLimit"],
                "market": "EU",
                "marketFactor": algo["marketFactor"],
                "poolId": pool["id"],
                "price": "0.0010",
                "type": "STANDARD",
            },
        )
        assert order["requestId"] == js.sent[-1].headers["X-Request-Id"]
        mine = await js.get(
            "/main/api/v2/hashpower/myOrders?algorithm=SCRYPT", query={"op": "LT", "limit": 10}
        )
        assert [o["id"] for o in mine["list"]] == [order["id"]]
        updated = await js.post(
            f"/main/api/v2/hashpower/order/{order['id']}/updatePriceAndLimit",
            body={
                "displayMarketFactor": algo["displayMarketFactor"],
                "marketFactor": algo["marketFactor"],
                "limit": "0.11",
                "price": "0.0012",
            },
        )
        assert (updated["price"], updated["limit"]) == ("0.0012", "0.11")
        deleted = await js.delete(f"/main/api/v2/hashpower/order/{order['id']}")
        assert deleted["status"]["code"] == "CANCELLED"
        assert await js.delete(f"/main/api/v2/pool/{pool['id']}") == {}
        sent = {(s.method, s.url.partition("?")[0]): s for s in js.sent}
        accounts_sent = sent[("GET", "/main/api/v2/accounting/accounts2")]
        assert accounts_sent.url.endswith("accounts2?")  # the bare "?" the demo always sends
        assert accounts_sent.headers["X-Request-Id"] == accounts_sent.headers["X-Nonce"]
        assert re.fullmatch(r"[0-9a-z]{32}", accounts_sent.headers["X-Nonce"])
        posted = sent[("POST", "/main/api/v2/hashpower/order")]
        assert posted.body is not None
        assert b" " not in posted.body  # JSON.stringify: compact
        assert posted.headers["Content-Type"] == "application/json"
        seen = await rpc_order(alice, order["id"])
        assert (seen.status, seen.price, seen.limit, seen.pool_id) == (
            "cancelled",
            "0.00120000",
            "0.110",
            pool["id"],
        )


async def test_csharp_and_java_demos(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        creds = alice.creds
        org, key, secret = creds.account_id, creds.key_id, creds.secret
        for api in (
            CSharpDemo(nh.http, org_id=org, api_key=key, api_secret=secret),
            JavaDemo(nh.http, org_id=org, api_key=key, api_secret=secret),
        ):
            server_time = str(json.loads(await api.get("/api/v2/time"))["serverTime"])
            algos = json.loads(await api.get("/main/api/v2/mining/algorithms"))
            settings = next(a for a in algos["miningAlgorithms"] if a["algorithm"] == "SHA256")
            accounts = json.loads(
                await api.get("/main/api/v2/accounting/accounts2", True, server_time)
            )
            assert accounts["currencies"][0]["currency"] == "BTC"
            pool_body = {
                "algorithm": "SHA256",
                "name": "my pool",
                "username": "pool_username",
                "password": "x",
                "stratumHostname": POOL_HOST,
                "stratumPort": "3456",
            }
            pool = json.loads(await api.post("/main/api/v2/pool", pool_body, server_time, False))
            order_body = {
                "algorithm": "SHA256",
                "amount": str(settings["minimalOrderAmount"]),
                "displayMarketFactor": str(settings["displayMarketFactor"]),
                "limit": str(settings["minSpeedLimit"]),
                "market": "EU",
                "marketFactor": str(settings["marketFactor"]),
                "poolId": pool["id"],
                "price": "0.0010",
                "type": "STANDARD",
            }
            order = json.loads(
                await api.post("/main/api/v2/hashpower/order", order_body, server_time, True)
            )
            assert order["requestId"] == api.sent[-1].headers["X-Request-Id"]
            # The Java demo's URI decodes the query it signs; the C# demo signs it as sent.
            listed = json.loads(
                await api.get(
                    "/main/api/v2/hashpower/myOrders?algorithm=SHA%32%35%36&op=LT&limit=10",
                    True,
                    server_time,
                )
            )
            assert order["id"] in [o["id"] for o in listed["list"]]
            update = {
                "displayMarketFactor": str(settings["displayMarketFactor"]),
                "limit": "0.11",
                "marketFactor": str(settings["marketFactor"]),
                "price": "0.0012",
            }
            updated = json.loads(
                await api.post(
                    ORDER + order["id"] + "/updatePriceAndLimit", update, server_time, True
                )
            )
            assert (updated["price"], updated["limit"]) == ("0.0012", "0.11")
            deleted = json.loads(await api.delete(ORDER + order["id"], server_time, True))
            assert deleted["status"]["code"] == "CANCELLED"
            assert (
                json.loads(await api.delete("/main/api/v2/pool/" + pool["id"], server_time, True))
                == {}
            )
            posted = [s for s in api.sent if s.method == "POST"][-1]
            assert posted.body == json.dumps(update, separators=(",", ":")).encode()
            # One server time for every call, as the demos keep it.
            assert {s.headers["X-Time"] for s in api.sent if "X-Time" in s.headers} == {server_time}
            seen = await rpc_order(alice, order["id"])
            assert (seen.status, seen.price, seen.pool_id) == (
                "cancelled",
                "0.00120000",
                pool["id"],
            )


async def test_nicehashbot(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, price_down_interval=600) as nh:
        alice = await nh.buyer()
        creds = alice.creds
        bot = NiceHashBot(
            nh.http, org_id=creds.account_id, api_key=creds.key_id, api_secret=creds.secret
        )
        algorithms, buy = await bot.setup()
        assert [a["algorithm"] for a in algorithms] == ["SCRYPT", "SHA256"]
        assert [b["name"] for b in buy] == ["Scrypt", "SHA256"]
        balance = await bot.get_balance("BTC")
        assert balance is not None
        assert balance["available"] == "1.00000000"
        # Paths NiceHash has and this door does not: an error the bot reads as "none".
        assert await bot.get_market_for_algo("SHA256") == []
        await bot.add_pool("home", "SHA256", POOL_HOST, "3456", "alice.rig", "x")
        (pool,) = await bot.get_pools()
        await bot.edit_pool("home2", "SHA256", POOL_HOST, "3457", "alice.rig2", "y", pool["id"])
        (edited,) = await bot.get_pools()
        assert (edited["id"], edited["name"], edited["stratumPort"], edited["username"]) == (
            pool["id"],
            "home2",
            3457,
            "alice.rig2",
        )
        order = await bot.create_order(
            "SHA256", "EU", "STANDARD", pool["id"], "0.0200", "0", "0.01"
        )
        assert order["pool"]["id"] == pool["id"]
        (listed,) = await bot.get_orders()
        assert listed["id"] == order["id"]
        assert listed["type"]["code"] == "STANDARD"
        assert listed["algorithm"]["algorithm"] == "SHA256"
        # The bot's own arithmetic: refill by the minimal amount, price down by one step.
        algo = bot.get_algo(listed["algorithm"]["algorithm"])
        refilled = await bot.refill_order(order["id"], str(algo["minimalOrderAmount"]))
        assert refilled["amount"] == "0.01100000"
        new_price = round(float(listed["price"]) + float(algo["priceDownStep"]), 4)
        lowered = await bot.update_order(
            "SHA256", order["id"], f"{new_price}", str(listed["limit"])
        )
        assert lowered["price"] == "0.0199"
        again = await bot.update_order("SHA256", order["id"], "0.0198", str(listed["limit"]))
        assert again == {}  # 5061: the bot sees an error
        # An edit while an active order uses the pool is refused like a delete.
        await bot.edit_pool("home3", "SHA256", POOL_HOST, "3458", "alice.rig3", "z", pool["id"])
        assert (await bot.get_pools())[0]["name"] == "home2"
        cancelled = await bot.cancel_order(order["id"])
        assert cancelled["status"]["code"] == "CANCELLED"
        await bot.delete_pool(pool["id"])
        assert await bot.get_pools() == []
        # GET /api/v2/time before every signed call, its serverTime the X-Time.
        for before, call in zip(bot.sent, bot.sent[1:], strict=False):
            if "X-Auth" in call.headers:
                assert before.url == "/api/v2/time"
                assert "X-Auth" not in before.headers
        signed_calls = [s for s in bot.sent if "X-Auth" in s.headers]
        assert len(signed_calls) == 15
        for call in signed_calls:
            if call.body is not None:
                assert all(isinstance(v, str) for v in json.loads(call.body).values())
        seen = await rpc_order(alice, order["id"])
        assert (seen.status, seen.price, seen.amount) == ("cancelled", "0.01990000", "0.01100000")
