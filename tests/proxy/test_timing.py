"""Time in proxy mode: a dead pool is retried after 1 s doubling to 60 s (trio's MockClock), and
an order whose pool is not usable for more than half of an hour of its life is cancelled with
the reason and its unspent budget released (the placeholder rule, on market time)."""

from __future__ import annotations

import itertools
from pathlib import Path

import trio
import trio.testing

from marketplace.pool_login import UpstreamConfig
from tests.clocks import ManualClock

from .helpers import BUYER, FAST, add_order, add_pool, proxy_node, wait_until
from .scripted_pool import Script, ScriptedPool


async def test_a_dead_pool_is_retried_after_1s_doubling_to_60s(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    pool = ScriptedPool(Script(authorize=False))
    await pool.start(nursery)
    attempts: list[float] = []
    async with proxy_node(tmp_path, upstream=UpstreamConfig()) as node:
        await add_order(node, pool_id=await add_pool(node, pool.port))
        with trio.fail_after(600):
            while len(attempts) < 9:
                await pool.connected.wait()
                attempts.append(trio.current_time())
    gaps = [round(b - a) for a, b in itertools.pairwise(attempts)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_the_placeholder_rule_cancels_an_order_whose_pool_is_dead_too_long(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    pool = ScriptedPool(Script(authorize=False))
    await pool.start(nursery)
    clock = ManualClock()
    async with proxy_node(tmp_path, clock=clock, upstream=FAST) as node:
        order_id = await add_order(node, pool_id=await add_pool(node, pool.port))
        relay = node.upstreams.relay(order_id)
        assert relay is not None
        await wait_until(lambda: relay.status.value == "dead")
        # Exactly half of the first hour is not more than half.
        clock.advance(30 * 60_000)
        assert relay.cancel_reason(clock.now_ms()) is None
        assert node.core.market.order_active(order_id)
        clock.advance(60_001)
        await wait_until(lambda: not node.core.market.order_active(order_id))
        view = node.order(order_id)
        assert view.status == "cancelled"
        assert view.cancel_reason is not None
        assert "not usable for 31 minutes of the order's first hour" in view.cancel_reason
        assert "authorize refused: [24, 'Unauthorized worker']" in view.cancel_reason
        # Its unspent budget is released, and its session ends with it.
        assert node.core.market.balance(BUYER).escrowed_msat == 0
        await wait_until(lambda: node.upstreams.relay(order_id) is None)
        node.check()
