"""Miners that never send ``mining.extranonce.subscribe`` (cpuminer) move onto a pool order and
off it again through ``client.reconnect`` and session resume: each time they come back with
their session id, get the new layout in the subscribe reply, keep their place in the fleet,
and no share is rejected because of the move."""

from __future__ import annotations

from pathlib import Path

import trio

from .cpuminer import CpuminerStyle
from .helpers import PRICE, add_order, add_pool, proxy_node, wait_until
from .scripted_pool import ScriptedPool


async def test_cpuminer_moves_onto_and_off_a_pool_order_without_a_rejected_share(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    pool = ScriptedPool()
    await pool.start(nursery)
    async with proxy_node(tmp_path) as node:
        chain_order = await add_order(node, pool_id=None)
        miner = CpuminerStyle("seller.cpu", "127.0.0.1", node.port)
        await miner.connect()
        own = miner.subscribe_replies[0]
        session_id = own[0][1][1]
        assert own[1] == session_id  # on the chain: its own layout
        for _ in range(3):
            assert await miner.submit()
        # A better order for the buyer's pool: the miner is moved onto it.
        pool_order = await add_order(
            node, pool_id=await add_pool(node, pool.port), price_msat=2 * PRICE
        )
        await wait_until(lambda: node.upstreams.alive(pool_order))
        assert await miner.follow_reconnect() == ["127.0.0.1", node.port, 0]
        reply = miner.subscribe_replies[-1]
        assert reply[0][1][1] == session_id  # resumed its session...
        assert reply[1].startswith(pool.live.extranonce1.hex())  # ...on the pool's layout
        assert reply[2] == 2
        assert node.core.fleet.connected(node.bridge.algorithm) == 1
        assert node.order(pool_order).workers == 1
        for _ in range(3):
            assert await miner.submit()
        await wait_until(lambda: pool.accepted == 3)
        # The buyer cancels it: back to the chain order, its own layout again.
        cancel = node.core.market.cancel
        await node.core.engine.execute(
            lambda: cancel(account="buyer", order_id=pool_order, now_ms=node.core.clock.now_ms())
        )
        await miner.follow_reconnect()
        reply = miner.subscribe_replies[-1]
        assert reply[0][1][1] == session_id
        assert reply[1:] == [session_id, 4]
        assert node.order(chain_order).workers == 1
        for _ in range(3):
            assert await miner.submit()
        assert miner.rejected == []
        assert miner.accepted == 9
        assert node.server.stats.shares_rejected == {}
        assert node.bridge.reconnects == 2
        assert miner.connects == 3
        node.check()
