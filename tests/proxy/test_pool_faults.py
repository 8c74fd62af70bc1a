"""control.md's ``pool`` fault target against a real standalone pool: ``drop`` closes the
upstream connections (the order goes dead, then comes back after its backoff), ``latency_ms``
holds forwarded shares back while the miner's own answer does not wait, and clearing ends both."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from marketplace.api.admin_wire import PoolFault
from marketplace.control.faults import Faults
from marketplace.control.workers import Workers
from stratum.core.shares import Algorithm

from .helpers import FAST, wait_until
from .test_standalone_upstream import pool_accepted, standalone_order

#: A second's backoff: long enough for the test to see the dropped session dead (polled every
#: 10 ms) even on a loaded machine, short enough to see it come back soon.
SECOND_BACKOFF = msgspec.structs.replace(FAST, backoff_initial_s=1.0, backoff_max_s=1.0)


async def test_a_pool_drop_fault_closes_the_upstream_and_it_comes_back(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery, upstream=SECOND_BACKOFF) as (
        node,
        pool_server,
        _pool,
        order_id,
    ):
        faults = Faults(Workers(fleet=node.core.fleet, clock=node.core.clock), node.upstreams)
        (first,) = pool_server.connections()
        # Another algorithm's drop leaves this order's session alone.
        faults.set(PoolFault(drop=True, algorithm=Algorithm.SCRYPT))
        assert node.upstreams.alive(order_id)
        faults.set(PoolFault(drop=True))
        assert faults.active() == [
            PoolFault(drop=True, algorithm=Algorithm.SCRYPT),
            PoolFault(drop=True),
        ]
        # The session notices at once (well within its 1 s backoff) and says why.
        await wait_until(lambda: not node.upstreams.alive(order_id))
        pool = node.order(order_id).pool
        assert pool is not None
        assert pool.status == "dead"
        assert "injected fault" in (pool.last_error or "")
        # The session reconnects with its usual backoff, on a new connection.
        await wait_until(lambda: node.upstreams.alive(order_id))
        assert first not in pool_server.connections()
        faults.clear()
        assert faults.active() == []
        node.check()


async def test_pool_latency_holds_forwarded_shares_but_not_the_miners_answer(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery) as (node, _server, pool, order_id):
        forwarding = node.upstreams.forwarding
        forwarding.keep_latencies = True
        faults = Faults(Workers(fleet=node.core.fleet, clock=node.core.clock), node.upstreams)
        faults.set(PoolFault(latency_ms=5_000, algorithm=Algorithm.SCRYPT))
        assert forwarding.delay is not None
        assert forwarding.delay(order_id) == 0
        faults.set(PoolFault(latency_ms=2_000))
        assert forwarding.delay(order_id) == 2.0
        miner = await node.miner("seller.rig1")
        with trio.fail_after(1.5):  # the answer does not wait for the held share
            assert await miner.submit("seller.rig1") is True
        assert pool.stats.accepted == 0
        await wait_until(lambda: pool_accepted(node, order_id) == 1)
        (latency,) = forwarding.latencies
        assert latency >= 2.0
        faults.clear()
        assert forwarding.delay is None
        assert await miner.submit("seller.rig1") is True
        await wait_until(lambda: pool_accepted(node, order_id) == 2)
        node.check()
