"""NiceHash's transport habits on the door of a whole node: trailing slashes, a bare ``?``,
empty query values, enum values in any case, numbers as strings or numbers, HTTP 200 JSON for
every method (DELETE too), decimals as strings, ISO times, integer ``serverTime``; injected API
faults answered in NiceHash's error body, the clock never."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from marketplace.client import AsyncMarketClient, Credentials
from marketplace.config import add_serve_arguments, load_config

from .helpers import decode, error_of, nicehash_node, signed

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
ORDER = "/main/api/v2/hashpower/order/"


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_paths_queries_and_values(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        http = nh.http
        before = now_ms()
        server = decode(await http.get("/api/v2/time"))
        assert isinstance(server["serverTime"], int)
        assert before - 1000 <= server["serverTime"] <= now_ms() + 1000
        for path in ("/main/api/v2/mining/algorithms", "/main/api/v2/mining/algorithms/"):
            for tail in ("", "?"):
                assert decode(await http.get(path + tail))["miningAlgorithms"]
        assert (await http.get("/main/api/v2/mining/algorithms//")).status_code == 404
        for name in ("SHA256", "sha256", "Sha256AsicBoost"):
            book = decode(
                await http.get(f"/main/api/v2/hashpower/orderBook?algorithm={name}&size=")
            )
            assert book["stats"]["EU"]["pagination"]["size"] == 100
        assert error_of(await http.get("/main/api/v2/hashpower/orderBook?algorithm=X16R")) == (
            400,
            2997,
            "Invalid input: ALGORITHM",
        )
        assert error_of(await http.get("/main/api/v2/hashpower/orderBook?algorithm=&size=5")) == (
            400,
            60,
            "Malformed request",
        )
        assert error_of(
            await http.get("/main/api/v2/hashpower/orderBook?algorithm=SCRYPT&size=1&size=2")
        ) == (400, 60, "Malformed request")
        alice = await nh.buyer()
        with trio.fail_after(10):
            order = await alice.rpc.create_order(
                algorithm="sha256d", type="standard", price="0.0120", limit="0", amount="0.01"
            )

        async def call(method: str, path: str, query: str = "", body: Any = None) -> Any:
            url, headers, data = signed(alice.creds, method, path, query, body, time_ms=now_ms())
            with trio.fail_after(10):
                return decode(await http.request(method, url, headers=headers, content=data))

        # Empty values count as absent; enum values in any case.
        listed = await call(
            "GET",
            "/main/api/v2/hashpower/myOrders",
            "algorithm=sha256&market=eu&op=le&limit=&active=TRUE&status=&ts=",
        )
        (shown,) = listed["list"]
        for key in ("startTs", "createdTs", "updatedTs"):
            assert ISO.fullmatch(shown[key]), shown[key]
        assert (shown["price"], shown["limit"], shown["amount"]) == ("0.0120", "0.00", "0.01000000")
        assert shown["rigsCount"] == 0
        assert shown["alive"] is True
        assert shown["type"] == {"code": "STANDARD", "description": "Standard"}
        assert shown["market"] == "EU"
        # Numbers as numbers or strings, any exponent.
        refilled = await call("POST", ORDER + order.id + "/refill/", body={"amount": 5e-3})
        assert refilled["amount"] == "0.01500000"
        refilled = await call("POST", ORDER + order.id + "/refill", body={"amount": "0.005"})
        assert refilled["amount"] == "0.02000000"
        changed = await call(
            "POST", ORDER + order.id + "/updatePriceAndLimit", body={"price": 0.013, "limit": "2"}
        )
        assert (changed["price"], changed["limit"]) == ("0.0130", "2.00")
        changed = await call(
            "POST",
            ORDER + order.id + "/updatePriceAndLimit",
            body={"limit": 0, "marketFactor": 1e6},
        )
        assert changed["limit"] == "0.00"
        stats = await call("GET", ORDER + order.id + "/stats", "afterTimestamp=0&beforeTimestamp=")
        assert stats["columns"][0] == "time"
        # DELETE answers 200 with the order, like every other success.
        cancelled = await call("DELETE", ORDER + order.id + "/")
        assert cancelled["status"]["code"] == "CANCELLED"
        assert ISO.fullmatch(cancelled["endTs"])
        none_active = await call("GET", "/main/api/v2/hashpower/myOrders", "active=true")
        assert none_active["list"] == []
        assert (
            len((await call("GET", "/main/api/v2/hashpower/myOrders", "status=cancelled"))["list"])
            == 1
        )
        # The door's calls are in the node's metrics beside JSON-RPC's, by route.
        metrics = (await http.get("/metrics")).text
        refills = 'hashmarket_api_requests_total{code="0",method="nicehash.order_refill"} 2.0'
        assert refills in metrics
        assert 'method="nicehash.order_book"' in metrics
        assert 'code="2997",method="nicehash.order_book"' in metrics


async def test_injected_api_faults_in_nicehash_shape(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, control=True) as nh:
        operator = await nh.node.core.issue_operator_key()
        creds = Credentials(operator.account_id, operator.key_id, operator.secret)
        async with AsyncMarketClient(nh.url, credentials=creds) as admin:
            with trio.fail_after(10):
                await admin.set_fault("api", error_rate=1.0)
            response = await nh.http.get("/main/api/v2/mining/algorithms")
            assert error_of(response) == (503, 503, "Service unavailable")
            assert response.headers["retry-after"] == "1"
            assert (await nh.http.get("/api/v2/time")).status_code == 200
            with trio.fail_after(10):
                await admin.clear_faults()
            assert (await nh.http.get("/main/api/v2/mining/algorithms")).status_code == 200


@pytest.mark.parametrize(
    ("argv", "env", "on"),
    [
        ([], {}, True),
        (["--no-nicehash-api"], {}, False),
        (["--nicehash-api"], {"HASHMARKET_NICEHASH_API": "false"}, True),
        ([], {"HASHMARKET_NICEHASH_API": "false"}, False),
    ],
)
def test_serve_flag(argv: list[str], env: dict[str, str], on: bool) -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert load_config(parser.parse_args(argv), environ=env).nicehash_api is on


async def test_door_off_is_404(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path, nicehash_api=False) as nh:
        for path in ("/api/v2/time", "/main/api/v2/mining/algorithms"):
            response = await nh.http.get(path)
            assert response.status_code == 404
            assert response.headers["content-type"].startswith("text/plain")


async def test_an_order_whose_pool_is_dead_is_dead(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()

        async def call(method: str, path: str, query: str = "", body: Any = None) -> Any:
            url, headers, data = signed(alice.creds, method, path, query, body, time_ms=now_ms())
            with trio.fail_after(10):
                return decode(await nh.http.request(method, url, headers=headers, content=data))

        # Nothing listens on port 9 of loopback: the pool is dead once the first try fails.
        pool = await call(
            "POST",
            "/main/api/v2/pool",
            body={
                "name": "gone",
                "algorithm": "SHA256",
                "stratumHostname": "127.0.0.1",
                "stratumPort": 9,
                "username": "alice.rig",
                "password": "",
            },
        )
        order = await call(
            "POST",
            "/main/api/v2/hashpower/order",
            body={
                "algorithm": "SHA256",
                "amount": "0.01",
                "price": "0.0100",
                "limit": "0",
                "poolId": pool["id"],
                "type": "standard",
            },
        )

        async def link_status() -> str | None:
            link = (await alice.rpc.get_order(order["id"])).pool
            return None if link is None else link.status

        with trio.fail_after(10):
            while await link_status() != "dead":
                await trio.sleep(0.05)
        dead = await call("GET", ORDER + order["id"])
        assert dead["status"] == {"code": "DEAD", "description": "Dead"}
        assert dead["alive"] is False
        listed = await call("GET", "/main/api/v2/hashpower/myOrders", "status=dead&active=true")
        assert [o["id"] for o in listed["list"]] == [order["id"]]
        assert (await call("GET", "/main/api/v2/hashpower/myOrders", "status=ACTIVE"))["list"] == []


async def test_request_ids_make_mutations_idempotent(tmp_path: Path) -> None:
    async with nicehash_node(tmp_path) as nh:
        alice = await nh.buyer()
        order_id = await alice.place()
        path = ORDER + order_id + "/refill"

        async def refill(request_id: str, amount: str = "0.005") -> Any:
            url, headers, data = signed(
                alice.creds,
                "POST",
                path,
                body={"amount": amount},
                time_ms=now_ms(),
                request_id=request_id,
            )
            with trio.fail_after(10):
                return await nh.http.post(url, headers=headers, content=data)

        first = await refill("refill-1")
        again = await refill("refill-1")
        assert first.status_code == again.status_code == 200
        assert first.content == again.content  # the first answer, and nothing done again
        with trio.fail_after(10):
            assert (await alice.rpc.get_order(order_id)).amount == "0.01500000"
        # The same id for another call: refused, as on the JSON-RPC door.
        assert error_of(await refill("refill-1", amount="0.006")) == (400, 60, "Malformed request")
        with trio.fail_after(10):
            assert (await alice.rpc.get_order(order_id)).amount == "0.01500000"
