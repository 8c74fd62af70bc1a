"""Shares the proxy cannot forward are answered "not forwarded" together: a batch of them is
one engine command, not one per share (a saturated or dead pool must not take the engine from
the miners' own shares)."""

from __future__ import annotations

from pathlib import Path

import trio

from marketplace.core.events import PoolAnswered
from marketplace.core.relay import Forward
from marketplace.engine import Committed

from .helpers import wait_until
from .test_standalone_upstream import standalone_order

DOWN = "not forwarded: the connection to the pool is down"


async def test_shares_that_cannot_be_forwarded_are_journaled_in_one_command(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery) as (node, _server, _pool, order_id):
        commands: list[int] = []

        def count(committed: list[Committed]) -> None:
            answers = sum(isinstance(c.event, PoolAnswered) for c in committed)
            if answers:
                commands.append(answers)

        node.core.engine.add_commit_listener(count)
        relay = node.upstreams.relay(order_id)
        assert relay is not None
        stale_session = relay.session + 1  # a session the pool is not in: nothing to send on
        for n in range(20):
            node.upstreams.forward(
                Forward(
                    order_id=order_id,
                    session=stale_session,
                    job_id="1",
                    extranonce2=f"{n:08x}",
                    ntime="00000000",
                    nonce="00000000",
                    version_bits=None,
                    difficulty=0.001,
                    accepted_ms=node.core.clock.now_ms(),
                ),
                price_msat=1_000,
            )
        await wait_until(lambda: sum(commands) == 20)
        assert commands == [20]
        pool = node.order(order_id).pool
        assert pool is not None
        assert pool.rejected == {DOWN: 20}
        node.check()
