"""A submit the connection's state refuses never reaches the market (issue 9).

Before ``mining.subscribe`` (25) or ``mining.authorize`` (24) a submit names no worker of the
connection, so there is nobody to charge or pay: the miner gets its error, the server counts
it, and the bridge neither hears of it nor logs ``bridge.bad_account`` for an empty account.
"""

from __future__ import annotations

from pathlib import Path

import structlog
import trio
import trio.testing

from marketplace.core.events import ShareRecorded
from marketplace.core.market import Market

from ..stratum.helpers import Miner
from .node import open_node, seed_buyer


async def test_submits_before_subscribe_and_authorize_stop_at_the_session(tmp_path: Path) -> None:
    params = ["seller.rig", "1", "00000000", "00000000", "00000000"]
    with trio.fail_after(30), structlog.testing.capture_logs() as logs:
        async with open_node(tmp_path / "j.db") as node:
            await seed_buyer(node)
            stream = await trio.open_tcp_stream("127.0.0.1", node.port)
            miner = Miner(stream, timeout=10)
            reply = await miner.submit(params)
            assert reply["error"] == [25, "Not subscribed", None]
            await miner.subscribe()
            reply = await miner.submit(params)
            assert reply["error"] == [24, "Unauthorized worker", None]
            assert (await miner.authorize("seller.rig"))["result"] is True
            await miner.read_until("mining.notify")
            # Once a worker authorized, even a submit with a name that does not parse is that
            # connection's: charged to its first worker, never to an empty account.
            reply = await miner.submit(["no good", *params[1:]])
            assert reply["error"][0] == 24
            assert (await miner.submit(miner.share(username="seller.rig")))["result"] is True
            await stream.aclose()
            events = [Market.decode_event(e.body) async for e in node.core.journal.replay()]
            recorded = [e for e in events if isinstance(e, ShareRecorded)]
            assert node.server.stats.shares_rejected == {
                "not_subscribed": 1,
                "unauthorized": 2,
            }
    assert [e for e in logs if e["event"] == "bridge.bad_account"] == []
    assert [(s.account, s.accepted, s.reason) for s in recorded] == [
        ("seller", False, "unauthorized"),
        ("seller", True, None),
    ]
