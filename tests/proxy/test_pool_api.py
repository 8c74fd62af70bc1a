"""Buyers' pools through the real node and the signed API (the client library): create, list,
get, verify, delete, orders with a pool and ``order.set_pool``; the password never comes back
and is nowhere in the database in clear; a host outside ``--pool-allow`` is refused with 4220
before any connection is attempted, also when a pool redirects us there; ``pool.verify`` says
how far it got and why it stopped."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from marketplace.assembly import Node
from marketplace.client import ApiError, AsyncMarketClient, Credentials
from marketplace.core.pools import PoolAccess
from tests.marketplace_io.test_assembly import serving, settings

from .helpers import FAST, add_order, add_pool, proxy_node, wait_until
from .scripted_pool import Script, ScriptedPool

PASSWORD = "Tr0ub4dor&3-pool"
SHA = "sha256d"


@asynccontextmanager
async def buyer(node: Node) -> AsyncIterator[AsyncMarketClient]:
    made = await node.core.create_account("buyer")
    creds = Credentials(made.account_id, made.key_id, made.secret)
    async with AsyncMarketClient(f"http://127.0.0.1:{node.api_port}", credentials=creds) as c:
        await c.sync_clock()
        await c.deposit("1.00000000")
        yield c


async def counting_listener(nursery: trio.Nursery, host: str) -> tuple[int, list[str]]:
    """A port on ``host`` that counts (and closes) every connection made to it."""
    attempts: list[str] = []

    async def count(stream: trio.SocketStream) -> None:
        attempts.append(str(stream.socket.getpeername()))
        await stream.aclose()

    listeners = await nursery.start(functools.partial(trio.serve_tcp, count, 0, host=host))
    return listeners[0].socket.getsockname()[1], attempts


def pool_params(port: int, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": "my pool",
        "algorithm": SHA,
        "host": "127.0.0.1",
        "port": port,
        "username": "poolacct.rig",
        "password": PASSWORD,
    }
    params.update(overrides)
    return params


async def test_pools_and_orders_with_a_pool_through_the_api(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    first, second = ScriptedPool(), ScriptedPool()
    await first.start(nursery)
    await second.start(nursery)
    db = tmp_path / "node.db"
    async with serving(settings(db)) as node, buyer(node) as client:
        pool = await client.create_pool(**pool_params(first.port))
        assert (pool.id, pool.name, pool.host, pool.port) == (
            "p-000001",
            "my pool",
            "127.0.0.1",
            first.port,
        )
        other = await client.create_pool(**pool_params(second.port, name="backup"))
        answers = [pool, other, *await client.list_pools(), await client.get_pool(pool.id)]
        assert all(PASSWORD not in msgspec.json.encode(a).decode() for a in answers)
        verified = await client.verify_pool(pool.id)
        assert (verified.ok, verified.stage, verified.error) == (True, "done", None)
        assert verified.extranonce1 == "f0000001"
        assert verified.extranonce2_size == 4
        assert verified.version_rolling == "1fffe000"
        assert verified.latency_ms is not None
        assert first.authorized_with == [("poolacct.rig", PASSWORD)]
        order = await client.create_order(
            algorithm=SHA, type="standard", price="0.01", limit="0", amount="0.01", pool_id=pool.id
        )
        assert order.pool_id == pool.id
        assert order.pool is not None
        assert order.pool.status in ("connecting", "alive")
        with trio.fail_after(10):
            while (await client.get_order(order.id)).pool.status != "alive":  # type: ignore[union-attr]
                await trio.sleep(0.02)
        got = await client.get_order(order.id)
        assert got.pool is not None
        assert (got.pool.accepted, got.pool.rejected, got.pool.difficulty) == (0, {}, 1e-7)
        assert got.cancel_reason is None
        assert got.refunded == "0.00000000"
        with pytest.raises(ApiError) as refused:
            await client.delete_pool(pool.id)
        assert refused.value.code == 4090
        # Another pool: the order moves (its upstream session with it).
        moved = await client.set_pool(order.id, other.id)
        assert moved.pool_id == other.id
        await wait_until(lambda: second.connects > 0)
        # An unknown pool, and a pool of another algorithm.
        with pytest.raises(ApiError) as refused:
            await client.create_order(
                algorithm=SHA,
                type="standard",
                price="0.01",
                limit="0",
                amount="0.01",
                pool_id="p-9",
            )
        assert refused.value.code == 4040
        scrypt = await client.create_pool(**pool_params(first.port, algorithm="scrypt"))
        with pytest.raises(ApiError) as refused:
            await client.set_pool(order.id, scrypt.id)
        assert (refused.value.code, refused.value.data["field"]) == (4220, "pool_id")
        cancelled = await client.cancel_order(order.id)
        assert cancelled.cancel_reason == "cancelled by the buyer"
        assert (await client.delete_pool(pool.id)).id == pool.id
        with pytest.raises(ApiError) as refused:
            await client.get_pool(pool.id)
        assert refused.value.code == 4040
    # The password was stored (the node logged in with it) but never in clear.
    for path in tmp_path.iterdir():
        if path.name.startswith("node.db") and path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path.name


async def test_a_host_outside_pool_allow_is_refused_before_any_connection(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    port, attempts = await counting_listener(nursery, "127.0.0.1")
    db = tmp_path / "node.db"
    async with serving(settings(db, pool_allow=("127.0.0.2",))) as node, buyer(node) as client:
        for host in ("127.0.0.1", "localhost", "10.0.0.1", "pool.example.com"):
            with pytest.raises(ApiError) as refused:
                await client.create_pool(**pool_params(port, host=host))
            assert (refused.value.code, refused.value.data) == (4220, {"field": "host"}), host
            with pytest.raises(ApiError) as refused:
                await client.verify_pool(**pool_params(port, host=host))
            assert (refused.value.code, refused.value.data) == (4220, {"field": "host"}), host
        assert await client.list_pools() == []
    assert attempts == []


async def test_a_pool_cannot_redirect_us_outside_pool_allow(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    elsewhere, attempts = await counting_listener(nursery, "127.0.0.2")
    pool = ScriptedPool()
    await pool.start(nursery)
    async with proxy_node(tmp_path, pool_allow=("127.0.0.1",)) as node:
        order_id = await add_order(node, pool_id=await add_pool(node, pool.port))
        await wait_until(lambda: node.upstreams.alive(order_id))
        await pool.live.reconnect("127.0.0.2", elsewhere)
        relay = node.upstreams.relay(order_id)
        assert relay is not None
        await wait_until(lambda: "--pool-allow" in (relay.last_error or ""))
        assert relay.status.value == "dead"
        assert "127.0.0.2" in (relay.last_error or "")
        # It goes back to the pool it was given, which takes it again.
        await wait_until(lambda: relay.alive)
    assert attempts == []


@pytest.mark.parametrize(
    ("script", "stage", "error"),
    [
        (Script(extranonce2_size=3), "subscribe", "extranonce2_size 3 is too small (min 4)"),
        (Script(authorize=False), "authorize", "authorize refused: [24, 'Unauthorized worker']"),
        (Script(notify=False), "notify", "no notify within 1 s"),
        (Script(garbage=True), "notify", "not Stratum"),
    ],
)
async def test_verify_says_how_far_it_got(
    tmp_path: Path, nursery: trio.Nursery, script: Script, stage: str, error: str
) -> None:
    pool = ScriptedPool(script)
    await pool.start(nursery)
    config = msgspec.structs.replace(FAST, verify_timeout_s=1.0)
    async with proxy_node(tmp_path, upstream=config) as node:
        access = PoolAccess(
            pool_id="",
            algorithm=node.core.market.algorithms()[0],
            host="127.0.0.1",
            port=pool.port,
            username="u",
            password="p",
        )
        with trio.fail_after(5):
            result = await node.upstreams.verify(access)
        assert (result.ok, result.stage) == (False, stage)
        assert result.error is not None
        assert error in result.error, result.error


async def test_verify_of_a_closed_port_says_it_cannot_connect(tmp_path: Path) -> None:
    async with proxy_node(tmp_path) as node:
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        listener.close()  # nothing listens there now
        access = PoolAccess(
            pool_id="",
            algorithm=node.core.market.algorithms()[0],
            host="127.0.0.1",
            port=port,
            username="u",
            password="p",
        )
        result = await node.upstreams.verify(access)
        assert (result.ok, result.stage) == (False, "connect")
        assert result.error is not None
        assert "cannot connect to the pool" in result.error
