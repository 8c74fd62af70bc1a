"""NiceHash's Python client (rest-clients-demo ``python/nicehash.py``) as it is written, through
``clients.PythonDemo``, against a whole node: every helper of its hash-power subset answers
HTTP 200 with NiceHash's objects, and the JSON-RPC door sees what each one did."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from stratum.core.shares import Algorithm
from tests.proxy.test_standalone_upstream import start_standalone

from .clients import ClientError
from .helpers import nicehash_node

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def test_public_helpers(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        public = nh.public()
        algorithms = await public.get_algorithms()
        assert [a["algorithm"] for a in algorithms["miningAlgorithms"]] == ["SCRYPT", "SHA256"]
        sha = algorithms["miningAlgorithms"][1]
        assert sha["order"] == 1
        assert (sha["marketFactor"], sha["displayMarketFactor"]) == ("1000000", "MH")
        assert (sha["priceFactor"], sha["displayPriceFactor"]) == ("1000000", "MH")
        assert sha["port"] == nh.node.stratum_ports[Algorithm.SHA256D]
        assert algorithms["miningAlgorithms"][0]["port"] == nh.node.stratum_ports[Algorithm.SCRYPT]
        assert sha["minimalOrderAmount"] == "0.00100000"
        assert sha["minSpeedLimit"] == "0.01"
        assert sha["priceDownStep"].startswith("-")
        assert await public.get_markets() == ["EU", "USA"]
        currencies = await public.get_currencies()
        assert currencies["currencies"][0]["symbol"] == "BTC"
        info = await public.buy_info()
        assert [a["name"] for a in info["miningAlgorithms"]] == ["Scrypt", "SHA256"]
        assert info["miningAlgorithms"][1]["speed_text"] == "MH"


async def test_account_and_order_helpers(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, price_down_interval=600) as nh:
        alice = await nh.buyer()
        demo, rpc = alice.demo, alice.rpc
        accounts = await demo.get_accounts()
        assert accounts["total"]["available"] == "1.00000000"
        assert accounts["currencies"][0]["currency"] == "BTC"
        btc = await demo.get_accounts_for_currency(
            (await nh.public().get_currencies())["currencies"][0]["symbol"]
        )
        assert btc["available"] == "1.00000000"
        with trio.fail_after(10):
            placed = await rpc.create_order(
                algorithm="sha256d", type="standard", price="0.0100", limit="1.5", amount="0.01"
            )
        book = await demo.get_hashpower_orderbook("SHA256")
        assert demo.sent[-1].headers["X-Auth"].startswith(alice.creds.key_id + ":")
        assert set(book["stats"]) == {"EU", "USA"}
        (offer,) = book["stats"]["EU"]["orders"]
        assert (offer["id"], offer["type"], offer["price"], offer["limit"]) == (
            placed.id,
            "STANDARD",
            "0.0100",
            "1.50",
        )
        assert book["stats"]["USA"] == book["stats"]["EU"]
        assert (await demo.get_hashpower_orderbook("SCRYPT"))["stats"]["EU"]["orders"] == []
        mine = await demo.get_my_active_orders("SHA256", "EU", 10)
        (order,) = mine["list"]
        assert order["id"] == placed.id
        assert order["price"] == "0.0100"
        assert order["limit"] == "1.50"
        assert order["status"]["code"] == "ACTIVE"
        assert order["algorithm"]["algorithm"] == "SHA256"
        algos = await nh.public().get_algorithms()
        refilled = await demo.refill_hashpower_order(placed.id, 0.005)
        assert refilled["amount"] == "0.01500000"
        raised = await demo.set_price_hashpower_order(placed.id, 0.0123, "SHA256", algos)
        assert raised["price"] == "0.0123"
        limited = await demo.set_limit_hashpower_order(placed.id, 2.12, "SHA256", algos)
        assert limited["limit"] == "2.12"
        both = await demo.set_price_and_limit_hashpower_order(
            placed.id, 0.0124, 1.2, "SHA256", algos
        )
        assert (both["price"], both["limit"]) == ("0.0124", "1.20")
        with trio.fail_after(10):
            seen = await rpc.get_order(placed.id)
        assert (seen.price, seen.limit, seen.amount) == ("0.01240000", "1.200000", "0.01500000")
        cancelled = await demo.cancel_hashpower_order(placed.id)
        assert cancelled["status"]["code"] == "CANCELLED"
        with trio.fail_after(10):
            assert (await rpc.get_order(placed.id)).status == "cancelled"
            balance = await rpc.balance()
        assert balance.available == "1.00000000"
        with pytest.raises(ClientError, match=r"^404: .*\"code\":404,\"message\":\"Not found\""):
            await demo.cancel_hashpower_order("o-999999")


async def test_pool_and_order_creation_helpers(tmp_path: Path, nursery: trio.Nursery) -> None:
    pool_server, _ = await start_standalone(nursery)
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        demo, rpc = alice.demo, alice.rpc
        algorithms = await nh.public().get_algorithms()
        pool = await demo.create_pool(
            "home", "SHA256", "127.0.0.1", pool_server.port, "alice.pool", "x"
        )
        assert pool["id"] == "p-000001"
        assert (pool["stratumHostname"], pool["stratumPort"], pool["username"]) == (
            "127.0.0.1",
            pool_server.port,
            "alice.pool",
        )
        assert pool["password"] == ""  # write-only
        assert pool["status"] == "NOT_VERIFIED"
        assert pool["algorithm"] == "SHA256"
        pools = await demo.get_my_pools(0, 10)
        assert [p["id"] for p in pools["list"]] == [pool["id"]]
        # The demo's own test_bot.py passes floats; limit 0 is no limit.
        order = await demo.create_hashpower_order(
            "EU", "STANDARD", "SHA256", 0.0123, 0, 0.005, pool["id"], algorithms
        )
        sent = demo.sent[-1]
        assert sent.body is not None
        assert b'"price": 0.0123' in sent.body  # json.dumps's separators, a JSON number
        assert order["requestId"] == sent.headers["X-Request-Id"]
        assert order["pool"]["id"] == pool["id"]
        assert (order["price"], order["limit"], order["amount"]) == ("0.0123", "0.00", "0.00500000")
        assert order["status"]["code"] in ("ACTIVE", "DEAD")
        mine = await demo.get_my_active_orders("SHA256", "EU", 10)
        assert [o["id"] for o in mine["list"]] == [order["id"]]
        assert mine["list"][0]["requestId"] == order["requestId"]
        with trio.fail_after(10):
            seen = await rpc.get_order(order["id"])
            listed = await rpc.list_pools()
        assert (seen.pool_id, seen.price, seen.amount) == (pool["id"], "0.01230000", "0.00500000")
        assert [p.id for p in listed] == [pool["id"]]
        # A pool an active order uses stays.
        with pytest.raises(ClientError, match=r"^400: .*Invalid input: ID"):
            await demo.delete_pool(pool["id"])
        await demo.cancel_hashpower_order(order["id"])
        assert await demo.delete_pool(pool["id"]) == {}
        with trio.fail_after(10):
            assert await rpc.list_pools() == []
        # NiceHash refuses FIXED orders today: so does this door.
        with pytest.raises(
            ClientError, match=r"^500: .*\"code\":2999,\"message\":\"Generic Server"
        ):
            await demo.create_hashpower_order(
                "EU", "FIXED", "SHA256", 0.0123, 1, 0.005, "p-000001", algorithms
            )
