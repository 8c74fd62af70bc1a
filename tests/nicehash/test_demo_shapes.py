"""The request shapes of NiceHash's other published clients, as they write them (``clients.py``):
the JavaScript demo (server time first, compact JSON, a bare ``?``, qs-encoded queries), the C#
demo (one server time for every call, all-string bodies), the Java demo (the path and query
signed decoded) and NiceHashBot (``GET /api/v2/time`` before every signed call, all-string
bodies, paths NiceHash has and we do not answered 404 in NiceHash's shape, which it reads as
"nothing")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import trio

from .clients import CSharpDemo, JavaDemo, JsDemo, NiceHashBot
from .helpers import nicehash_node

ORDER = "/main/api/v2/hashpower/order/"


async def test_javascript_demo(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        order_id = await alice.place()
        js = JsDemo(
            nh.http, org=alice.creds.account_id, key=alice.creds.key_id, secret=alice.creds.secret
        )
        await js.get_time()
        algorithms = await js.get("/main/api/v2/mining/algorithms")
        algo = algorithms["miningAlgorithms"][0]
        assert algo["algorithm"] == "SCRYPT"  # the demo's "algo = res.miningAlgorithms[0]"
        sha = algorithms["miningAlgorithms"][1]
        accounts = await js.get("/main/api/v2/accounting/accounts2")
        assert accounts["total"]["available"] == "0.99000000"
        mine = await js.get(
            "/main/api/v2/hashpower/myOrders?algorithm=SHA256", query={"op": "LT", "limit": 10}
        )
        assert [o["id"] for o in mine["list"]] == [order_id]
        updated = await js.post(
            f"/main/api/v2/hashpower/order/{order_id}/updatePriceAndLimit",
            body={
                "displayMarketFactor": sha["displayMarketFactor"],
                "marketFactor": sha["marketFactor"],
                "limit": "0.11",
                "price": "0.0123",
            },
        )
        assert (updated["price"], updated["limit"]) == ("0.0123", "0.11")
        deleted = await js.delete(f"/main/api/v2/hashpower/order/{order_id}")
        assert deleted["status"]["code"] == "CANCELLED"
        sent = {(s.method, s.url.partition("?")[0]): s for s in js.sent}
        accounts_sent = sent[("GET", "/main/api/v2/accounting/accounts2")]
        assert accounts_sent.url.endswith("accounts2?")  # the bare "?" the demo always sends
        assert accounts_sent.headers["X-Request-Id"] == accounts_sent.headers["X-Nonce"]
        assert re.fullmatch(r"[0-9a-z]{32}", accounts_sent.headers["X-Nonce"])
        posted = sent[("POST", f"/main/api/v2/hashpower/order/{order_id}/updatePriceAndLimit")]
        assert posted.body is not None
        assert b" " not in posted.body  # JSON.stringify: compact
        assert posted.headers["Content-Type"] == "application/json"
        with trio.fail_after(10):
            seen = await alice.rpc.get_order(order_id)
        assert (seen.status, seen.price, seen.limit) == ("cancelled", "0.01230000", "0.110000")


async def test_csharp_and_java_demos(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        creds = alice.creds
        for make in (
            lambda: CSharpDemo(
                nh.http, org_id=creds.account_id, api_key=creds.key_id, api_secret=creds.secret
            ),
            lambda: JavaDemo(
                nh.http, org_id=creds.account_id, api_key=creds.key_id, api_secret=creds.secret
            ),
        ):
            api = make()
            order_id = await alice.place()
            server_time = str(json.loads(await api.get("/api/v2/time"))["serverTime"])
            settings = next(
                a
                for a in json.loads(await api.get("/main/api/v2/mining/algorithms"))[
                    "miningAlgorithms"
                ]
                if a["algorithm"] == "SHA256"
            )
            accounts = json.loads(
                await api.get("/main/api/v2/accounting/accounts2", True, server_time)
            )
            assert accounts["currencies"][0]["currency"] == "BTC"
            # The Java demo's URI decodes the query it signs; the C# demo signs it as sent.
            listed = json.loads(
                await api.get(
                    "/main/api/v2/hashpower/myOrders?algorithm=SHA%32%35%36&op=LT&limit=10",
                    True,
                    server_time,
                )
            )
            assert order_id in [o["id"] for o in listed["list"]]
            update = {
                "displayMarketFactor": str(settings["displayMarketFactor"]),
                "limit": "0.11",
                "marketFactor": str(settings["marketFactor"]),
                "price": "0.0123",
            }
            updated = json.loads(
                await api.post(ORDER + order_id + "/updatePriceAndLimit", update, server_time, True)
            )
            assert (updated["price"], updated["limit"]) == ("0.0123", "0.11")
            deleted = json.loads(await api.delete(ORDER + order_id, server_time, True))
            assert deleted["status"]["code"] == "CANCELLED"
            posted = [s for s in api.sent if s.method == "POST"][-1]
            assert posted.body == json.dumps(update, separators=(",", ":")).encode()
            assert "X-Request-Id" in posted.headers
            # One server time for every call, as the demos keep it.
            assert {s.headers["X-Time"] for s in api.sent if "X-Time" in s.headers} == {server_time}


async def test_nicehashbot(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, price_down_interval=600) as nh:
        alice = await nh.buyer()
        creds = alice.creds
        order_id = await alice.place(price="0.0200")
        bot = NiceHashBot(
            nh.http, org_id=creds.account_id, api_key=creds.key_id, api_secret=creds.secret
        )
        algorithms, buy = await bot.setup()
        assert [a["algorithm"] for a in algorithms] == ["SCRYPT", "SHA256"]
        assert [b["name"] for b in buy] == ["Scrypt", "SHA256"]
        balance = await bot.get_balance("BTC")
        assert balance is not None
        assert balance["available"] == "0.99000000"
        # Paths NiceHash has and this door does not: an error the bot reads as "none".
        assert await bot.get_market_for_algo("SHA256") == []
        (order,) = await bot.get_orders()
        assert order["id"] == order_id
        assert order["type"]["code"] == "STANDARD"
        assert order["algorithm"]["algorithm"] == "SHA256"
        # The bot's own arithmetic: refill by the minimal amount, price down by one step.
        algo = bot.get_algo(order["algorithm"]["algorithm"])
        refilled = await bot.refill_order(order_id, str(algo["minimalOrderAmount"]))
        assert refilled["amount"] == "0.01100000"
        new_price = round(float(order["price"]) + float(algo["priceDownStep"]), 4)
        lowered = await bot.update_order("SHA256", order_id, f"{new_price}", str(order["limit"]))
        assert lowered["price"] == "0.0199"
        again = await bot.update_order("SHA256", order_id, "0.0198", str(order["limit"]))
        assert again == {}  # 5061: the bot sees an error
        cancelled = await bot.cancel_order(order_id)
        assert cancelled["status"]["code"] == "CANCELLED"
        # GET /api/v2/time before every signed call, its serverTime the X-Time.
        for before, call in zip(bot.sent, bot.sent[1:], strict=False):
            if "X-Auth" in call.headers:
                assert before.url == "/api/v2/time"
                assert "X-Auth" not in before.headers
        signed_calls = [s for s in bot.sent if "X-Auth" in s.headers]
        assert len(signed_calls) == 6
        for call in signed_calls:
            if call.body is not None:
                assert all(isinstance(v, str) for v in json.loads(call.body).values())
        with trio.fail_after(10):
            seen = await alice.rpc.get_order(order_id)
        assert (seen.status, seen.price, seen.amount) == ("cancelled", "0.01990000", "0.01100000")
