"""A small marketplace node for tests: journal + engine + scheduler + bridge + Stratum server on
loopback.

Used in-process by the bridge tests (``open_node``) and as a separate process by the crash
test: ``python -m tests.marketplace_io.node --db FILE --port-file FILE`` restores the journal,
seeds a buyer with an order (first start only), listens on 127.0.0.1 port 0, writes the port
to the file (atomically) and as ``PORT <n>`` on stdout, and serves until killed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from marketplace.bridge import MarketWorkSource
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import MarketConfig, OrderType
from marketplace.core.views import MarketViews
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from marketplace.storage import Journal, Synchronous, open_journal
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from stratum.server import StratumServer, serve_stratum

SHA = Algorithm.SHA256D
#: Tiny difficulty: a share every few hundred hashes, so tests brute-force nonces quickly.
TINY = 1e-7
#: 1 BTC per MH/s per day: about 500 msat per share at TINY, so charges are visible.
PRICE = 10**11


@dataclass
class Node:
    journal: Journal
    engine: Engine
    scheduler: MarketScheduler
    market: Market
    fleet: Fleet
    bridge: MarketWorkSource
    server: StratumServer

    @property
    def views(self) -> MarketViews:
        return MarketViews(self.market, self.fleet)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


def stratum_config(**overrides: object) -> StratumConfig:
    settings: dict[str, object] = {
        "algorithm": SHA,
        "host": "127.0.0.1",
        "port": 0,
        "start_difficulty": TINY,
        "min_difficulty": TINY,
        "vardiff": False,
        "job_interval_s": 60.0,
        "block_interval_s": 3600.0,
    }
    settings.update(overrides)
    return StratumConfig(**settings)  # type: ignore[arg-type]


@asynccontextmanager
async def open_node(
    db: Path,
    *,
    config: StratumConfig | None = None,
    scheduler_config: SchedulerConfig | None = None,
    synchronous: Synchronous = Synchronous.NORMAL,
) -> AsyncIterator[Node]:
    """Run a whole node on 127.0.0.1 (port 0) over the journal at ``db``."""
    market = Market(config=MarketConfig(faucet=True))
    fleet = Fleet(config=market.config)
    async with open_journal(db, synchronous=synchronous) as journal:
        engine = Engine(components=[market], journal=journal)
        scheduler = MarketScheduler(
            engine=engine, market=market, fleet=fleet, config=scheduler_config
        )
        await engine.restore()
        bridge = MarketWorkSource(scheduler=scheduler, config=config or stratum_config())
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await nursery.start(bridge.run)
            server: StratumServer = await nursery.start(
                partial(serve_stratum, config=bridge.config, work_source=bridge)
            )
            yield Node(journal, engine, scheduler, market, fleet, bridge, server)
            nursery.cancel_scope.cancel()


async def seed_buyer(node: Node, *, account: str = "buyer", limit_hs: int = 0) -> str:
    """Fund ``account`` and place one standard order at ``PRICE``; return the order id."""
    market = node.market
    now = node.engine.now_ms()

    def seed() -> str:
        market.create_account(account=account, now_ms=now)
        market.deposit(account=account, amount_msat=10**11, now_ms=now)
        return market.create_order(
            account=account,
            algorithm=SHA,
            type=OrderType.STANDARD,
            price_msat=PRICE,
            limit_hs=limit_hs,
            amount_msat=10**10,
            duration_s=None,
            now_ms=now,
            fleet=node.fleet,
        )

    return await node.engine.execute(seed)


async def serve(db: Path, port_file: Path, synchronous: Synchronous) -> None:
    async with open_node(db, synchronous=synchronous) as node:
        if not node.market.has_account("buyer"):
            await seed_buyer(node)
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(node.port))
        os.replace(tmp, port_file)
        # Also on stdout, so a parent can wait for it on the pipe instead of polling the file.
        print(f"PORT {node.port}", flush=True)
        await trio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--synchronous", default="FULL")
    args = parser.parse_args()
    configure_logging("json", level="warning")
    trio.run(serve, args.db, args.port_file, Synchronous(args.synchronous))


if __name__ == "__main__":
    main()
