"""Shares while the store fails, over real loopback sockets: the engine on the in-memory
journal that fails on cue, the market's bridge and a Stratum server. A submit is answered
``[20, "storage unavailable, retry"]`` within a second, never ``true``; refusals do not count
toward the rejects-in-a-row limit; the miner stays connected and keeps getting jobs; once the
store takes writes again the very same share is accepted (it was not remembered as seen)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from marketplace.bridge import STORAGE_UNAVAILABLE, MarketWorkSource
from marketplace.core.events import ShareRecorded
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.durability import RetryPolicy, StorageState
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler
from stratum.server import StratumServer, serve_stratum
from tests.clocks import trio_clock

from ..stratum.helpers import Miner
from .fakes import MemoryJournal
from .helpers import make_market
from .node import stratum_config

#: Fast retries, so the test's real-time waits stay short.
QUICK = RetryPolicy(first_s=0.05, max_s=0.2)


@dataclass
class Rig:
    journal: MemoryJournal
    engine: Engine
    market: Market
    bridge: MarketWorkSource
    server: StratumServer

    async def miner(self) -> Miner:
        assert self.server.port is not None
        stream = await trio.open_tcp_stream("127.0.0.1", self.server.port)
        miner = Miner(stream, timeout=5)
        await miner.login("seller.rig")
        return miner

    async def shares(self) -> list[ShareRecorded]:
        events = [Market.decode_event(e.body) async for e in self.journal.replay()]
        return [e for e in events if isinstance(e, ShareRecorded)]

    async def until(self, state: StorageState) -> None:
        with trio.fail_after(5):
            while self.engine.health.state is not state:
                await self.engine.health.wait_changed()


@asynccontextmanager
async def rig() -> AsyncIterator[Rig]:
    journal = MemoryJournal()
    market = make_market()
    engine = Engine(components=[market], journal=journal, clock=trio_clock(), retry=QUICK)
    scheduler = MarketScheduler(engine=engine, market=market, fleet=Fleet(config=market.config))
    await engine.restore()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        await nursery.start(scheduler.run)
        bridge = MarketWorkSource(scheduler=scheduler, config=stratum_config())
        await nursery.start(bridge.run)
        server: StratumServer = await nursery.start(
            partial(
                serve_stratum,
                config=stratum_config(max_consecutive_rejects=3),
                work_source=bridge,
                clock=engine.clock.now_ms,
            )
        )
        yield Rig(journal, engine, market, bridge, server)
        nursery.cancel_scope.cancel()


async def test_a_failing_store_refuses_shares_and_keeps_the_miner() -> None:
    async with rig() as node:
        with trio.fail_after(30):
            miner = await node.miner()
            assert (await miner.submit(miner.share(username="seller.rig")))["result"] is True
            node.journal.break_store()
            kept = miner.share(username="seller.rig")
            for params in [kept, *(miner.share(username="seller.rig") for _ in range(9))]:
                with trio.fail_after(1):
                    reply = await miner.submit(params)
                assert reply["error"] == [20, STORAGE_UNAVAILABLE, None]
                assert reply["result"] is None
            # Ten refusals in a row, over a limit of three: not rejects, the miner stays.
            connection = node.server.connections()[0]
            assert connection.session.tally.consecutive_rejects == 0
            assert connection.session.tally.rejected == {}
            assert node.server.stats.shares_not_recorded == 10
            # It keeps getting jobs.
            assert node.bridge.push_new_jobs() == 1
            await miner.read_until("mining.notify")
            node.journal.mend_store()
            await node.until(StorageState.HEALTHY)
            # The refused share was never seen: sent again, it is accepted.
            assert (await miner.submit(kept))["result"] is True
            assert (await miner.submit(kept))["error"][0] == 22  # and now it is a duplicate
            recorded = await node.shares()
    assert [(s.accepted, s.reason) for s in recorded] == [
        (True, None),
        (True, None),
        (False, "duplicate"),
    ]
