"""Proxy mode against a scripted pool (raw Stratum, every share checked with the project's share
math): the pool's difficulty decides which shares are forwarded, its ``set_extranonce`` moves
the workers to the new layout (in place, or by reconnect for miners that cannot take it), and
version rolling goes through the proxy within the pool's mask."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from stratum.core.shares import Algorithm, target_for
from tests.marketplace_io.miner import RawMiner
from tests.marketplace_io.node import TINY

from .cpuminer import CpuminerStyle
from .helpers import ProxyNode, add_order, add_pool, proxy_node, wait_until
from .scripted_pool import Script, ScriptedPool

SHA = Algorithm.SHA256D


def answered(node: ProxyNode, order_id: str) -> int:
    link = node.order(order_id).pool
    assert link is not None
    return link.accepted + sum(link.rejected.values())


@asynccontextmanager
async def scripted_order(
    tmp_path: Path, nursery: trio.Nursery, script: Script
) -> AsyncIterator[tuple[ProxyNode, ScriptedPool, str]]:
    """A scripted pool, a node, and an order for that pool whose session is alive."""
    pool = ScriptedPool(script)
    await pool.start(nursery)
    async with proxy_node(tmp_path) as node:
        order_id = await add_order(node, pool_id=await add_pool(node, pool.port))
        await wait_until(lambda: node.upstreams.alive(order_id))
        yield node, pool, order_id


async def test_the_pools_difficulty_decides_what_is_forwarded(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with scripted_order(tmp_path, nursery, Script(difficulty=TINY)) as (node, pool, order_id):
        miner = await node.miner("seller.rig1")
        # At the pool's difficulty our shares meet its target: every one goes up.
        for _ in range(3):
            assert await miner.submit("seller.rig1") is True
        await wait_until(lambda: answered(node, order_id) == 3)
        assert pool.accepted == 3
        # The pool raises its difficulty 32-fold; it applies to the jobs after it.
        hard = TINY * 32
        await pool.live.set_difficulty(hard)
        await pool.live.notify(clean=False)
        job = await miner.pump()
        # Submit until both kinds happened (1 in 32 meets the pool's target; bounded).
        expected = kept = 0
        for _ in range(1000):
            if expected >= 2 and kept >= 2:
                break
            assert await miner.submit("seller.rig1", job) is True
            if miner.last_hash <= target_for(SHA, hard):
                expected += 1
            else:
                kept += 1
        assert expected >= 2
        assert kept >= 2
        await wait_until(lambda: answered(node, order_id) == 3 + expected)
        assert len(pool.submits) == 3 + expected
        assert pool.accepted == 3 + expected
        view = node.order(order_id)
        assert view.pool is not None
        assert view.pool.difficulty == hard
        # Every share we accepted is charged, forwarded or not (the buyer pays for our work).
        charged = node.core.market.book.orders[order_id]
        assert charged.period_work or charged.settled_msat
        node.check()


async def test_the_pools_set_extranonce_moves_every_worker_to_the_new_layout(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with scripted_order(tmp_path, nursery, Script(difficulty=TINY)) as (node, pool, order_id):
        subscribed = await node.miner("seller.rig1")
        plain = CpuminerStyle("seller.rig2", "127.0.0.1", node.port)
        await plain.connect()
        # The plain miner joined on its own layout and was told to come back for the pool's.
        params = await plain.follow_reconnect()
        assert params == ["127.0.0.1", node.port, 0]
        assert plain.subscribe_replies[-1][1].startswith(pool.live.extranonce1.hex())
        assert node.bridge.reconnects == 1
        assert node.order(order_id).workers == 2
        assert await subscribed.submit("seller.rig1") is True
        assert await plain.submit() is True
        await wait_until(lambda: answered(node, order_id) == 2)
        # The pool moves us to another extranonce1 and a bigger extranonce2.
        new = bytes.fromhex("abcdef01")
        await pool.live.set_extranonce(new, 6)
        await pool.live.notify(clean=True)
        message = await subscribed.read_notifications_until("mining.set_extranonce")
        slot = subscribed.extranonce1[8:]
        assert message["params"] == [new.hex() + slot, 4]
        job = await subscribed.pump()
        assert job.clean_jobs
        await plain.follow_reconnect()
        assert plain.subscribe_replies[-1][1:] == [new.hex() + plain.current.extranonce1[8:], 4]
        assert plain.current.extranonce1.startswith(new.hex())
        assert await subscribed.submit("seller.rig1") is True
        assert await plain.submit() is True
        await wait_until(lambda: answered(node, order_id) == 4)
        assert pool.accepted == 4
        assert [s.extranonce2[:4] for s in pool.submits[2:]] == [
            slot,
            plain.current.extranonce1[8:],
        ]
        assert plain.rejected == []
        assert node.order(order_id).workers == 2
        node.check()


async def test_version_rolling_goes_through_within_the_pools_mask(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with scripted_order(
        tmp_path, nursery, Script(difficulty=TINY, version_mask=0x00FFE000)
    ) as (node, pool, order_id):
        miner = RawMiner(await trio.open_tcp_stream("127.0.0.1", node.port))
        reply = await miner.call(
            "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
        )
        assert reply["version-rolling.mask"] == "1fffe000"  # ours, before any pool
        miner.version_mask = 0x1FFFE000
        result = await miner.call("mining.subscribe", ["bip310-miner/1"])
        miner.extranonce1, miner.extranonce2_size = result[1], int(result[2])
        assert await miner.call("mining.extranonce.subscribe", []) is True
        assert await miner.call("mining.authorize", ["seller.rig1", "x"]) is True
        await miner.pump()
        # On the pool's layout the miner may roll ours, the pool's and its own bits: 00ffe000.
        assert miner.version_mask == 0x00FFE000
        assert await miner.submit("seller.rig1", version_bits=0x00002000) is True
        await wait_until(lambda: answered(node, order_id) == 1)
        assert pool.submits[-1].version_bits == "00002000"
        assert pool.accepted == 1
        # The pool narrows its mask: the worker is told with the next job.
        await pool.live.set_version_mask(0x0000E000)
        await pool.live.notify(clean=True)
        message = await miner.read_notifications_until("mining.set_version_mask")
        assert message["params"] == ["0000e000"]
        await miner.pump()
        assert await miner.submit("seller.rig1", version_bits=0x00004000) is True
        await wait_until(lambda: answered(node, order_id) == 2)
        assert pool.submits[-1].version_bits == "00004000"
        assert pool.accepted == 2
        node.check()
