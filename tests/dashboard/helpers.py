"""Builders shared by the dashboard tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from marketplace.assembly import Node
from stratum.core.shares import Algorithm
from tests.clocks import ManualClock
from tests.marketplace_io.miner import RawMiner
from tests.marketplace_io.test_assembly import ORDER, Api


@asynccontextmanager
async def buyer_and_miner(
    node: Node, http: httpx.AsyncClient, clock: ManualClock
) -> AsyncIterator[tuple[Api, dict[str, Any], RawMiner]]:
    """A buyer funded and with one standard order (through the API), and a miner
    (``seller.rig``) on sha256d serving it: (the buyer's API, the order, the miner)."""
    api = Api(node, http, await node.core.create_account("buyer"))
    await api.call("account.deposit", {"amount": "1"}, signed_at=clock.wall_ms())
    order = (await api.call("order.create", ORDER, signed_at=clock.wall_ms()))["result"]
    stream = await trio.open_tcp_stream("127.0.0.1", node.stratum_ports[Algorithm.SHA256D])
    async with stream:
        miner = RawMiner(stream, timeout=10)
        await miner.login("seller.rig")
        if node.core.scheduler.rebalance():
            await miner.pump()  # the order's job
        assert set(node.core.fleet.assignments().values()) == {order["id"]}
        yield api, order, miner
