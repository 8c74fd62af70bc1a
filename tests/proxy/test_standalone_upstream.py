"""Proxy mode against a real standalone pool (``stratum.pool``) on loopback: shares are
forwarded with the pool's job id and ``slot || extranonce2``, the pool accepts them and its own
count equals the order's ``pool.accepted``; money stays conserved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest
import trio

from marketplace.core.events import ShareRecorded
from marketplace.core.market import Market
from marketplace.pool_login import UpstreamConfig
from stratum.core.jobs import Share, ShareNotRecorded
from stratum.server import StratumServer, trio_wall_clock
from tests.marketplace_io.miner import StratumError
from tests.marketplace_io.node import PRICE, TINY
from tests.stratum.helpers import TEST_CONFIG, RecordingPool

from .helpers import FAST, ProxyNode, add_order, add_pool, proxy_node, wait_until

POOL_CONFIG = msgspec.structs.replace(
    TEST_CONFIG, start_difficulty=TINY, min_difficulty=TINY, block_interval_s=10**6
)


async def start_standalone(nursery: trio.Nursery) -> tuple[StratumServer, RecordingPool]:
    clock = trio_wall_clock()
    pool = RecordingPool(config=POOL_CONFIG, clock=clock)
    server = StratumServer(config=POOL_CONFIG, work_source=pool, clock=clock)
    await nursery.start(pool.run)
    await nursery.start(server.run)
    return server, pool


@asynccontextmanager
async def standalone_order(
    tmp_path: Path, nursery: trio.Nursery, *, upstream: UpstreamConfig = FAST
) -> AsyncIterator[tuple[ProxyNode, StratumServer, RecordingPool, str]]:
    """A standalone pool, a node, and an order for that pool whose session is alive."""
    pool_server, pool = await start_standalone(nursery)
    assert pool_server.port is not None
    async with proxy_node(tmp_path, upstream=upstream) as node:
        order_id = await add_order(node, pool_id=await add_pool(node, pool_server.port))
        await wait_until(lambda: node.upstreams.alive(order_id))
        yield node, pool_server, pool, order_id


def pool_accepted(node: ProxyNode, order_id: str) -> int:
    link = node.order(order_id).pool
    assert link is not None
    return link.accepted


async def test_shares_reach_a_standalone_pool_and_its_count_is_the_orders(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery) as (node, pool_server, pool, order_id):
        (upstream,) = pool_server.connections()
        assert upstream.session.user_agent is not None
        assert upstream.session.user_agent.startswith("hashmarket/")
        miner = await node.miner("seller.rig1")
        # Moved onto the pool's layout: the pool's extranonce1 and a 2-byte slot.
        pool_extranonce1 = upstream.session.extranonce1
        assert pool_extranonce1 is not None
        assert miner.extranonce1.startswith(pool_extranonce1.hex())
        assert len(bytes.fromhex(miner.extranonce1)) == len(pool_extranonce1) + 2
        assert miner.extranonce2_size == POOL_CONFIG.extranonce2_size - 2
        slot = miner.extranonce1[len(pool_extranonce1.hex()) :]
        assert any(m["method"] == "mining.set_extranonce" for m in miner.others)
        for _ in range(6):
            assert await miner.submit("seller.rig1") is True
        await wait_until(
            lambda: (
                node.order(order_id).pool is not None and node.order(order_id).pool.accepted == 6
            )
        )  # type: ignore[union-attr]
        view = node.order(order_id)
        assert view.pool is not None
        assert view.pool.status == "alive"
        assert view.pool.rejected == {}
        # The pool's own count is the order's.
        assert pool.stats.accepted == view.pool.accepted == 6
        assert all(s.extranonce2.startswith(slot) for s in pool.shares)
        assert all(s.accepted for s in pool.shares)
        assert view.spent_msat > 0
        node.check()


async def test_the_pools_clean_jobs_make_earlier_jobs_stale(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery) as (node, _, pool, order_id):
        miner = await node.miner("seller.rig1")
        old = miner.latest
        # A job that is not clean: earlier jobs stay valid.
        pool.new_job()
        job = await miner.pump()
        assert not job.clean_jobs
        assert await miner.submit("seller.rig1", old) is True
        # (Forwarding is asynchronous: let it reach the pool before the pool moves on.)
        await wait_until(lambda: pool_accepted(node, order_id) == 1)
        # The pool's chain finds a block: a clean job, passed on, and the earlier ones stale.
        pool.chain.advance(pool.chain.next_block_ms)
        pool.new_job()
        job = await miner.pump()
        assert job.clean_jobs
        with pytest.raises(StratumError) as refused:
            await miner.submit("seller.rig1", old)
        assert refused.value.code == 21
        assert await miner.submit("seller.rig1", job) is True
        await wait_until(lambda: pool_accepted(node, order_id) == 2)
        assert pool.stats.accepted == 2
        node.check()


async def test_a_new_difficulty_on_a_pool_order_changes_the_header(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # stratum.md "Difficulty": the job that follows a new difficulty moves ntime on (whole
    # seconds), so cpuminer takes it up; the pool still accepts the share with that ntime.
    async with standalone_order(tmp_path, nursery) as (node, _pool_server, pool, order_id):
        miner = await node.miner("seller.rig1")
        before = miner.latest
        assert await miner.call("mining.suggest_difficulty", [TINY * 2]) is True
        after = await miner.pump()
        assert after.difficulty == TINY * 2
        assert not after.clean_jobs
        assert after.params[1:7] == before.params[1:7]  # the same template...
        assert int(after.params[7], 16) >= int(before.params[7], 16) + 1  # ...ntime moved on
        assert await miner.submit("seller.rig1", after) is True
        await wait_until(lambda: pool_accepted(node, order_id) == 1)
        assert pool.shares[-1].ntime == after.params[7]
        assert pool.stats.accepted == 1


async def test_a_batch_of_pool_and_other_shares_is_charged_per_share_and_forwards_the_pools(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    # A connection's batch may hold shares of several orders (a worker moved while its submits
    # were in flight): each is charged by its own order's rule, in one command, and only the
    # pool order's share goes up to the pool, once the batch is durable.
    async with standalone_order(tmp_path, nursery) as (node, _pool_server, pool, order_id):
        miner = await node.miner("seller.rig1")
        bridge = node.bridge
        held: list[Share] = []

        async def hold(shares: Sequence[Share]) -> None:
            held.extend(shares)
            raise ShareNotRecorded("held by the test")

        # A real share of the pool order, as the server checked it (answered "not recorded").
        bridge.record_shares = hold  # type: ignore[method-assign]
        with pytest.raises(StratumError):
            await miner.submit("seller.rig1")
        del bridge.record_shares
        (pool_share,) = held
        assert pool_share.accepted
        assert pool_share.source == order_id
        chain_order = await add_order(node, pool_id=None)
        chain_share = msgspec.structs.replace(pool_share, source=chain_order, difficulty=1.0)
        stale = msgspec.structs.replace(
            pool_share, source="", accepted=False, reason="stale", hash_hex=""
        )
        before = len(await journaled_shares(node))
        await bridge.record_shares([stale, pool_share, chain_share])
        recorded = (await journaled_shares(node))[before:]
        assert [(e.order_id, e.accepted, e.billable) for e in recorded] == [
            (None, False, True),
            (order_id, True, True),
            (chain_order, True, True),
        ]
        # The chain order is charged its share's value; the pool gets the pool order's share.
        value = Fraction(PRICE) * 2**32 / (10**6 * 86_400)
        assert node.order(chain_order).spent_msat == int(value)
        await wait_until(lambda: pool_accepted(node, order_id) == 1)
        assert [(s.nonce, s.accepted) for s in pool.shares] == [(pool_share.nonce, True)]
        node.check()


async def journaled_shares(node: ProxyNode) -> list[ShareRecorded]:
    entries = [e async for e in node.core.journal.replay() if e.component == Market.component]
    events = [Market.decode_event(e.body) for e in entries]
    return [e for e in events if isinstance(e, ShareRecorded)]
