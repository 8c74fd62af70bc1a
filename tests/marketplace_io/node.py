"""A small marketplace node for tests: the assembly's core (journal, components, engine,
scheduler) and one market's bridge + Stratum server on loopback, with test-sized settings.

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
from pathlib import Path

import trio

from marketplace.assembly import Core, open_core, start_market_stratum
from marketplace.bridge import MarketWorkSource
from marketplace.config import NodeConfig
from marketplace.core.model import OrderType
from marketplace.scheduler import SchedulerConfig
from marketplace.storage import Synchronous
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from stratum.server import StratumServer

SHA = Algorithm.SHA256D
#: Tiny difficulty: a share every few hundred hashes, so tests brute-force nonces quickly.
TINY = 1e-7
#: 1 BTC per MH/s per day: about 500 msat per share at TINY, so charges are visible.
PRICE = 10**11


@dataclass
class Node:
    """The assembly's core with one market on Stratum (sha256d, tiny difficulty, no vardiff)."""

    core: Core
    bridge: MarketWorkSource
    server: StratumServer

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
    db: str | Path,
    *,
    config: StratumConfig | None = None,
    scheduler_config: SchedulerConfig | None = None,
    synchronous: Synchronous = Synchronous.NORMAL,
) -> AsyncIterator[Node]:
    """The assembly's core over the journal at ``db`` (a SQLite path or a PostgreSQL URL;
    faucet on) with one Stratum market on 127.0.0.1 (port 0), built by the assembly's own
    ``start_market_stratum``."""
    settings = NodeConfig(db=str(db), faucet=True, synchronous=synchronous.value)
    async with (
        open_core(settings, scheduler=scheduler_config) as core,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(core.engine.run)
        await nursery.start(core.scheduler.run)
        bridge, server = await start_market_stratum(
            core, config or stratum_config(), background=nursery, front=nursery
        )
        yield Node(core, bridge, server)
        nursery.cancel_scope.cancel()


async def seed_buyer(node: Node, *, account: str = "buyer", limit_hs: int = 0) -> str:
    """Fund ``account`` and place one standard order at ``PRICE``; return the order id."""
    market = node.core.market
    now = node.core.engine.now_ms()

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
            fleet=node.core.fleet,
        )

    return await node.core.engine.execute(seed)


async def serve(db: str, port_file: Path, synchronous: Synchronous) -> None:
    async with open_node(db, synchronous=synchronous) as node:
        if not node.core.market.has_account("buyer"):
            await seed_buyer(node)
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(node.port))
        os.replace(tmp, port_file)
        # Also on stdout, so a parent can wait for it on the pipe instead of polling the file.
        print(f"PORT {node.port}", flush=True)
        await trio.sleep_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True, help="a SQLite path or a PostgreSQL URL")
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--synchronous", default="FULL")
    args = parser.parse_args()
    configure_logging("json", level="warning")
    trio.run(serve, args.db, args.port_file, Synchronous(args.synchronous))


if __name__ == "__main__":
    main()
