"""A buying bot's whole session through the NiceHash door alone, with NiceHash's Python client
(``clients.PythonDemo``) and the door's other endpoints, against a whole node: algorithms, buy
info, balance, a pool verified and created, an order on it, the order in ``myOrders``, a
worker mining into the pool through it (a standalone pool started here, an in-process miner,
loopback, a tiny difficulty), refill, price up, price down, a second price down refused with
5061 and its seconds, the same decrease taken once market time has moved past them, a limit
change, the order's stats, cancel, pool delete. At every step the JSON-RPC door sees the same
state."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from marketplace.client import AsyncMarketClient, Credentials
from stratum.core.shares import Algorithm
from tests.marketplace_io.miner import RawMiner
from tests.marketplace_io.node import TINY
from tests.proxy.test_standalone_upstream import start_standalone

from .clients import ClientError, PythonDemo
from .helpers import Buyer, nicehash_node

ORDER = "/main/api/v2/hashpower/order/"


async def eventually(what: Callable[[], Any], *, timeout: float = 15.0) -> Any:
    """Poll the awaitable ``what()`` until it returns something true; its value."""
    with trio.fail_after(timeout):
        while not (found := await what()):
            await trio.sleep(0.05)
    return found


async def miner(port: int, username: str) -> RawMiner:
    """A miner that asked for ``mining.extranonce.subscribe``, logged in, with a job."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    found = RawMiner(stream)
    result = await found.call("mining.subscribe", ["bot-session/1.0"])
    found.extranonce1, found.extranonce2_size = result[1], int(result[2])
    assert await found.call("mining.extranonce.subscribe", []) is True
    assert await found.call("mining.authorize", [username, "x"]) is True
    await found.pump()
    return found


async def same_order(buyer: Buyer, order: dict[str, Any]) -> Any:
    """The JSON-RPC door's view of ``order`` (a NiceHash ORDER), checked against it."""
    with trio.fail_after(10):
        seen = await buyer.rpc.get_order(order["id"])
    assert seen.status.upper() == order["status"]["code"] or order["status"]["code"] == "DEAD"
    assert Decimal(seen.price) == Decimal(order["price"])
    assert Decimal(seen.limit) == Decimal(order["limit"])
    assert seen.amount == order["amount"]
    assert seen.spent == order["payedAmount"]
    assert seen.remaining == order["availableAmount"]
    assert seen.pool_id == order["pool"]["id"]
    return seen


async def same_balance(buyer: Buyer) -> None:
    accounts = await buyer.demo.get_accounts()
    with trio.fail_after(10):
        balance = await buyer.rpc.balance()
    assert accounts["total"]["available"] == balance.available
    assert accounts["total"]["pending"] == balance.escrowed


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_a_bot_session_through_the_nicehash_door(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    pool_server, pool_shares = await start_standalone(nursery)
    assert pool_server.port is not None
    async with nicehash_node(
        tmp_path,
        control=True,
        settle_interval=0.5,
        rebalance_interval=0.5,
        price_down_interval=600,
        sha256d_start_difficulty=TINY,
        sha256d_min_difficulty=TINY,
        sha256d_max_difficulty=TINY,
    ) as nh:
        alice = await nh.buyer()
        demo, public = alice.demo, nh.public()
        # What the market is: algorithms, buy info, the balance.
        algorithms = await public.get_algorithms()
        sha = PythonDemo.algo_settings_from_response("SHA256", algorithms)
        assert (sha["marketFactor"], sha["displayMarketFactor"]) == ("1000000", "MH")
        info = await public.buy_info()
        assert info["miningAlgorithms"][1]["min_amount"] == sha["minimalOrderAmount"]
        await same_balance(alice)
        # A pool, verified, then created.
        verified = await demo.request(
            "POST",
            "/main/api/v2/pools/verify",
            "",
            {
                "poolVerificationServiceLocation": "EUROPE",
                "miningAlgorithm": "SHA256",
                "stratumHost": "127.0.0.1",
                "stratumPort": pool_server.port,
                "username": "alice.pool",
                "password": "x",
            },
        )
        assert verified["success"] is True
        assert verified["logs"][-1] == "verification passed"
        pool = await demo.create_pool(
            "home", "SHA256", "127.0.0.1", pool_server.port, "alice.pool", "x"
        )
        assert pool["status"] == "VERIFIED"
        with trio.fail_after(10):
            assert (await alice.rpc.get_pool(pool["id"])).port == pool_server.port
        # An order for it, at 1 BTC per MH/s per day so that tiny shares cost whole satoshis.
        order = await demo.create_hashpower_order(
            "EU", "STANDARD", "SHA256", 1, 0, 0.01, pool["id"], algorithms
        )
        await same_order(alice, order)
        await same_balance(alice)
        listed = await demo.get_my_active_orders("SHA256", "EU", 10)
        assert [o["id"] for o in listed["list"]] == [order["id"]]
        order_path = ORDER + order["id"]

        async def alive() -> Any:
            found = await demo.request("GET", order_path, "", None)
            return found if found["alive"] else None

        order = await eventually(alive)
        assert order["status"]["code"] == "ACTIVE"
        # A worker mines into the pool through the order.
        worker = await miner(nh.node.stratum_ports[Algorithm.SHA256D], "bob.rig1")
        for _ in range(6):
            assert await worker.submit("bob.rig1") is True

        async def mined() -> Any:
            found = await demo.request("GET", order_path, "", None)
            with trio.fail_after(10):
                link = (await alice.rpc.get_order(order["id"])).pool
            busy = found["rigsCount"] == 1 and Decimal(found["payedAmount"]) > 0
            return found if busy and link is not None and link.accepted == 6 else None

        order = await eventually(mined)
        assert Decimal(order["acceptedCurrentSpeed"]) > 0
        assert len(pool_shares.shares) == 6  # the pool got every share
        await same_order(alice, order)
        await same_balance(alice)
        # Refill, price up, price down, and a second decrease too soon.
        order = await demo.refill_hashpower_order(order["id"], 0.005)
        assert order["amount"] == "0.01500000"
        await same_order(alice, order)
        await same_balance(alice)
        order = await demo.set_price_hashpower_order(order["id"], 1.1, "SHA256", algorithms)
        assert order["price"] == "1.1000"
        await same_order(alice, order)
        order = await demo.set_price_hashpower_order(order["id"], 1.05, "SHA256", algorithms)
        assert order["price"] == "1.0500"
        await same_order(alice, order)
        with pytest.raises(ClientError) as refused:
            await demo.set_price_hashpower_order(order["id"], 1.0, "SHA256", algorithms)
        text = str(refused.value)
        assert text.startswith("400: ")
        body = msgspec.json.decode(text.split(": ", 2)[2][2:-1].encode())
        (error,) = body["errors"]
        assert error["code"] == 5061
        seconds = re.search(r"Seconds till available:\s*(\d+)", error["message"])
        assert seconds is not None
        wait_s = int(seconds.group(1))
        assert 590 <= wait_s <= 600
        with trio.fail_after(10):
            assert (await alice.rpc.get_order(order["id"])).price == "1.05000000"
        # Once market time has moved on by those seconds, the decrease is taken.
        operator = await nh.node.core.issue_operator_key()
        creds = Credentials(operator.account_id, operator.key_id, operator.secret)
        async with AsyncMarketClient(nh.url, credentials=creds) as admin:
            with trio.fail_after(20):
                await admin.advance(wait_s)
        order = await demo.set_price_hashpower_order(order["id"], 1.0, "SHA256", algorithms)
        assert order["price"] == "1.0000"
        await same_order(alice, order)
        # A limit, the minutes, cancel, the pool gone.
        order = await demo.set_limit_hashpower_order(order["id"], 2.5, "SHA256", algorithms)
        assert order["limit"] == "2.50"
        await same_order(alice, order)
        stats = await demo.request("GET", order_path + "/stats", "", None)
        column = stats["columns"].index("accepted_shares")
        assert sum(row[column] for row in stats["data"]) == 6
        with trio.fail_after(10):
            points = (await alice.rpc.order_stats(order["id"])).points
        assert [(row[0], row[column]) for row in stats["data"]] == [
            (p.time_ms, p.accepted_shares) for p in points
        ]
        order = await demo.cancel_hashpower_order(order["id"])
        assert order["status"]["code"] == "CANCELLED"
        assert order["availableAmount"] == "0.00000000"
        seen = await same_order(alice, order)
        assert seen.status == "cancelled"
        await same_balance(alice)
        assert await demo.delete_pool(pool["id"]) == {}
        assert (await demo.get_my_pools(0, 10))["list"] == []
        # The cancelled order still shows the pool it mined for, as it was (NiceHash's ORDER
        # always has its POOL).
        path = f"/main/api/v2/hashpower/order/{order['id']}"
        shown = await demo.request("GET", path, "", None)
        assert (shown["pool"]["id"], shown["pool"]["name"]) == (pool["id"], pool["name"])
        with trio.fail_after(10):
            assert await alice.rpc.list_pools() == []
        await worker.stream.aclose()
