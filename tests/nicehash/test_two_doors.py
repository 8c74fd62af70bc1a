"""Hypothesis: random sequences of calls mixing the two doors, JSON-RPC and NiceHash's REST, over
one service (in process) with its pool registry, with shares charged and settlements between
them: orders placed on either door (NiceHash's always for a pool), changed, refilled and
cancelled on either, pools edited and deleted on either. After every step the market's
invariants hold, both doors report the same orders (status, price, limit, amount, spend, what
is left, pool), the same balance and the same pools, and a call refused on either door changes
nothing."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.accounts import Bootstrap
from marketplace.api.app import ApiSettings
from marketplace.api.nicehash.door import NiceHashDoor
from marketplace.core.invariants import check_invariants
from marketplace.core.money import format_btc
from marketplace.core.pools import PoolRegistry
from marketplace.core.rules import RuleChange
from marketplace.core.sealing import NONCE_BYTES
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm
from tests.api.conftest import Harness

from .helpers import signed

ORDER = "/main/api/v2/hashpower/order/"
POOL = {
    "name": "home",
    "algorithm": "SHA256",
    "stratumHostname": "127.0.0.1",
    "stratumPort": 3333,
    "username": "alice.rig",
    "password": "x",
}
#: The clock stands still between calls: no rate limit in the way.
UNLIMITED = ApiSettings(rate_per_s=10**6, burst=10**6)
prices = st.sampled_from(["0.0100", "0.0120", "0.0095", "0.0090", "0.0001", "0.00001", "0.5"])
#: The market's minimum limit is 0.5 here: 0.25 passes the door's scale and fails the market.
limits = st.sampled_from(["0", "0.5", "1.25", "0.25", "0.001", "3"])
amounts = st.sampled_from(["0.001", "0.01", "0.05", "2", "0"])
doors = st.sampled_from(["rpc", "nicehash"])
pick = st.integers(0, 5)
actions = st.one_of(
    st.tuples(st.just("create"), prices, limits, amounts),
    st.tuples(st.just("nh_create"), prices, limits, amounts, pick),
    st.tuples(st.just("pool_edit"), pick, st.sampled_from([3333, 4444])),
    st.tuples(st.just("pool_delete"), doors, pick),
    st.tuples(st.just("refill"), doors, pick, amounts),
    st.tuples(st.just("price"), doors, pick, prices),
    st.tuples(st.just("limit"), doors, pick, limits),
    st.tuples(st.just("both"), pick, prices, limits),
    st.tuples(st.just("cancel"), doors, pick),
    st.tuples(st.just("share"), pick, st.sampled_from([0.001, 0.5, 20.0])),
    st.tuples(st.just("settle")),
    st.tuples(st.just("tick"), st.integers(0, 700_000)),
)


class World:
    """One service, its two doors and a funded account."""

    def __init__(self, h: Harness, creds: Bootstrap) -> None:
        self.h, self.creds = h, creds
        self.door = NiceHashDoor(h.service)
        self.nonces = 0
        self.orders: list[str] = []

    def order(self, index: int) -> str:
        return self.orders[index % len(self.orders)] if self.orders else "o-000001"

    def pool(self, index: int) -> str:
        """One of the pools made at the start (p-000001 sha256d, p-000002 scrypt), or none."""
        return ("p-000001", "p-000002", "p-000009")[index % 3]

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = await self.h.call(self.creds, method, params)
        return answer

    async def nicehash(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        self.nonces += 1
        url, headers, data = signed(
            self.creds, method, path, query, body, time_ms=self.h.clock(), nonce=f"x{self.nonces}"
        )
        reply = await self.door.respond(
            http=method,
            raw_path=url.partition("?")[0].encode(),
            query=query.encode(),
            headers={k.lower().encode(): v.encode() for k, v in headers.items()},
            body=data or b"",
            remote=None,
        )
        return reply.status, json.loads(reply.body)

    def state(self) -> Any:
        assert self.h.pools is not None
        return self.h.market.export_state(), self.h.pools.export_state()


async def act(w: World, action: tuple[Any, ...]) -> bool:
    """Run one action; whether it changed anything it was asked to (refusals are fine)."""
    kind = action[0]
    if kind == "create":
        answer = await w.rpc(
            "order.create",
            {
                "algorithm": "sha256d",
                "type": "standard",
                "price": action[1],
                "limit": action[2],
                "amount": action[3],
            },
        )
        if "result" in answer:
            w.orders.append(answer["result"]["id"])
        return "result" in answer
    if kind == "nh_create":
        body = {
            "algorithm": "SHA256",
            "type": "STANDARD",
            "price": action[1],
            "limit": action[2],
            "amount": action[3],
            "poolId": w.pool(action[4]),
            "market": "EU",
        }
        status, answer = await w.nicehash("POST", "/main/api/v2/hashpower/order", body=body)
        if status == 200:
            w.orders.append(answer["id"])
        return bool(status == 200)
    if kind == "pool_edit":
        body = {**POOL, "id": w.pool(action[1]), "stratumPort": action[2]}
        status, _ = await w.nicehash("POST", "/main/api/v2/pool", body=body)
        return bool(status == 200)
    if kind == "pool_delete":
        if action[1] == "rpc":
            return "result" in await w.rpc("pool.delete", {"id": w.pool(action[2])})
        status, _ = await w.nicehash("DELETE", "/main/api/v2/pool/" + w.pool(action[2]))
        return bool(status == 200)
    if kind == "tick":
        w.h.clock.advance(action[1])
        return True
    if kind == "settle":
        await w.h.executor.execute(lambda: w.h.market.settle(now_ms=w.h.clock()))
        return True
    if kind == "share":
        share = Share(
            conn_id=1,
            account="seller",
            worker="rig",
            algorithm=Algorithm.SHA256D,
            source="",
            difficulty=action[2],
            accepted=True,
            reason=None,
            time_ms=w.h.clock(),
        )
        order_id = w.order(action[1])
        await w.h.executor.execute(lambda: w.h.market.record_share(share, order_id=order_id))
        return True
    door, order_id = (
        (action[1], w.order(action[2])) if kind != "both" else ("nicehash", w.order(action[1]))
    )
    if door == "rpc":
        method, params = {
            "refill": ("order.refill", {"id": order_id, "amount": action[-1]}),
            "price": ("order.set_price", {"id": order_id, "price": action[-1]}),
            "limit": ("order.set_limit", {"id": order_id, "limit": action[-1]}),
            "cancel": ("order.cancel", {"id": order_id}),
        }[kind]
        return "result" in await w.rpc(method, params)
    if kind == "cancel":
        status, _ = await w.nicehash("DELETE", ORDER + order_id)
    elif kind == "refill":
        status, _ = await w.nicehash(
            "POST", ORDER + order_id + "/refill", body={"amount": action[-1]}
        )
    else:
        body = {
            "price": {"price": action[-1]},
            "limit": {"limit": action[-1]},
            "both": {"price": action[2], "limit": action[3]},
        }[kind]
        status, _ = await w.nicehash("POST", ORDER + order_id + "/updatePriceAndLimit", body=body)
    return bool(status == 200)


async def same_picture(w: World) -> None:
    orders = (await w.rpc("order.list"))["result"]["orders"]
    balance = (await w.rpc("account.balance"))["result"]
    status, listed = await w.nicehash("GET", "/main/api/v2/hashpower/myOrders", "limit=1000")
    assert status == 200
    status, accounts = await w.nicehash("GET", "/main/api/v2/accounting/accounts2")
    assert status == 200
    shown = {o["id"]: o for o in listed["list"]}
    assert [o["id"] for o in listed["list"]] == [o["id"] for o in reversed(orders)]
    for order in orders:
        nh = shown[order["id"]]
        assert nh["status"]["code"] == order["status"].upper()
        assert Decimal(nh["price"]) == Decimal(order["price"])
        assert Decimal(nh["limit"]) == Decimal(order["limit"])
        assert nh["amount"] == order["amount"]
        assert nh["payedAmount"] == order["spent"]
        assert nh["availableAmount"] == order["remaining"]
        assert nh["rigsCount"] == order["workers"]
    for order in orders:
        pool = shown[order["id"]]["pool"]
        assert (None if pool is None else pool["id"]) == order["pool_id"]
    status, nh_pools = await w.nicehash("GET", "/main/api/v2/pools")
    assert status == 200
    rpc_pools = (await w.rpc("pool.list"))["result"]["pools"]
    assert [
        (p["id"], p["stratumHostname"], p["stratumPort"], p["username"]) for p in nh_pools["list"]
    ] == [(p["id"], p["host"], p["port"], p["username"]) for p in rpc_pools]
    btc = accounts["currencies"][0]
    assert btc["available"] == accounts["total"]["available"] == balance["available"]
    assert btc["pending"] == balance["escrowed"]
    # Each amount is shown truncated to the satoshi: the total is of the exact sum.
    exact = w.h.market.balance(w.creds.account_id)
    assert btc["totalBalance"] == format_btc(exact.available_msat + exact.escrowed_msat)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(actions, min_size=1, max_size=30))
async def test_two_doors_one_market(steps: list[tuple[Any, ...]]) -> None:
    nonces = itertools.count(1)
    pools = PoolRegistry(
        master_key=b"m" * 32, new_nonce=lambda: next(nonces).to_bytes(NONCE_BYTES, "big")
    )
    h = Harness(settings=UNLIMITED, pools=pools)
    w = World(h, await h.bootstrap())
    await w.rpc("account.deposit", {"amount": "1"})
    for algorithm in ("SHA256", "SCRYPT"):
        status, _ = await w.nicehash(
            "POST", "/main/api/v2/pool", body={**POOL, "algorithm": algorithm}
        )
        assert status == 200
    change = RuleChange(min_limit_hs=500_000)
    await h.executor.execute(
        lambda: h.market.change_rules(algorithm=Algorithm.SHA256D, change=change, now_ms=h.clock())
    )
    for action in steps:
        before = w.state()
        changed = await act(w, action)
        if not changed:
            assert w.state() == before, action
        check_invariants(h.market, h.fleet)
        await same_picture(w)
