"""The market as one trio program: ``hashmarket serve``.

Theory of operation
-------------------
One process, one trio run, one nursery of services, started in dependency order with
``nursery.start`` so nothing races: the SQLite journal (group commit), the engine (replays the
journal into the ``Market`` and the ``KeyRing``), the market scheduler (settles, expires,
rebalances the ``Fleet`` and snapshots on timers), one Stratum listener per algorithm with its
``MarketWorkSource`` bridge (each order its own job stream), the JSON-RPC API (hypercorn, trio
worker) and the operator inbox. Once every listener is up the bound ports go to
``--ports-file``.

SIGINT or SIGTERM: the Stratum servers stop accepting and close their connections, the API
stops, the engine takes a snapshot (so the next start replays nothing), the journal commits
what is queued and closes, the process exits 0. Because every acknowledged share and every
answered command is journaled before its answer, a restart on the same ``--db`` (even after
kill -9, from the last periodic snapshot and the events after it) carries on where the last
run stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import msgspec
import structlog
import trio

from marketplace.api.app import ApiSettings, build_app
from marketplace.api.server import serve_api
from marketplace.bridge import MarketWorkSource
from marketplace.config import NodeConfig, load_config
from marketplace.core.fleet import Fleet
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.model import MarketConfig, default_rules
from marketplace.core.views import MarketViews
from marketplace.engine import Engine
from marketplace.masterkey import open_keyring
from marketplace.operator import NodeBusy, node_lock, serve_inbox
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from marketplace.storage import Journal, JournalError, Synchronous, open_journal
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from stratum.server import StratumServer, serve_stratum

log = structlog.get_logger("marketplace.node")


def market_config(config: NodeConfig) -> MarketConfig:
    """The market's rules for this node's settings."""
    markets = {}
    for algorithm in Algorithm:
        rules = default_rules(algorithm)
        markets[algorithm] = msgspec.structs.replace(
            rules, price_down_interval_s=max(int(config.price_down_interval), 0)
        )
    return MarketConfig(
        markets=markets,
        settle_interval_ms=int(config.settle_interval * 1000),
        faucet=config.faucet,
    )


def build_components(config: NodeConfig, *, create_master_key: bool) -> tuple[Market, KeyRing]:
    """A fresh ``Market`` and ``KeyRing`` for ``config`` (state comes from replaying the journal).

    ``create_master_key`` is for a new database only: a new master key invalidates every key.
    """
    return Market(config=market_config(config)), open_keyring(config.db, create=create_master_key)


@asynccontextmanager
async def open_storage(config: NodeConfig) -> AsyncIterator[Journal]:
    """The node's journal, open for the duration of the block."""
    Path(config.db).parent.mkdir(parents=True, exist_ok=True)
    async with open_journal(config.db, synchronous=Synchronous(config.synchronous.upper())) as j:
        yield j


def stratum_config(config: NodeConfig, algorithm: Algorithm) -> StratumConfig:
    """One Stratum listener's settings from the node's: the algorithm's own difficulty
    settings, else the ones for both algorithms, else (``None``) the algorithm's defaults."""
    port = config.sha256d_port if algorithm is Algorithm.SHA256D else config.scrypt_port

    def difficulty(bound: str) -> float | None:
        own: float | None = getattr(config, f"{algorithm.value}_{bound}_difficulty")
        both: float | None = getattr(config, f"{bound}_difficulty")
        return own if own is not None else both

    return StratumConfig(
        algorithm=algorithm,
        host=config.host,
        port=port,
        start_difficulty=difficulty("start"),
        min_difficulty=difficulty("min"),
        max_difficulty=difficulty("max"),
        target_share_interval_s=config.target_share_interval,
        job_interval_s=config.job_interval,
        block_interval_s=config.block_interval,
    )


@dataclass
class Node:
    """A running node: what tests and the demo need to reach."""

    config: NodeConfig
    engine: Engine
    scheduler: MarketScheduler
    market: Market
    fleet: Fleet
    keyring: KeyRing
    api_port: int = 0
    stratum_ports: dict[Algorithm, int] = field(default_factory=dict)
    servers: list[StratumServer] = field(default_factory=list)

    @property
    def views(self) -> MarketViews:
        """What the API reads: the market and the fleet together."""
        return MarketViews(self.market, self.fleet)

    def ports(self) -> dict[str, object]:
        """``{"api": N, "stratum": {"sha256d": N, "scrypt": N}}`` as ``--ports-file`` has it."""
        return {
            "api": self.api_port,
            "stratum": {algorithm.value: port for algorithm, port in self.stratum_ports.items()},
        }


def _write_ports(path: str, ports: dict[str, object]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(ports))
    os.replace(tmp, target)  # atomic: a reader never sees half a file


async def run_node(
    config: NodeConfig,
    *,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every service of a node until cancelled; ``task_status.started(node)`` once all
    listeners are bound. Raises ``NodeBusy`` if another node serves the same database."""
    fresh = not await trio.Path(config.db).exists()
    market, keyring = build_components(config, create_master_key=fresh)
    fleet = Fleet(config=market.config)
    async with open_storage(config) as journal:
        engine = Engine(components=[market, keyring], journal=journal)
        scheduler = MarketScheduler(
            engine=engine,
            market=market,
            fleet=fleet,
            config=SchedulerConfig(
                settle_interval_s=config.settle_interval,
                rebalance_interval_s=config.rebalance_interval,
            ),
        )
        replayed = await engine.restore()
        log.info("node.restored", db=config.db, events=replayed)
        node = Node(
            config=config,
            engine=engine,
            scheduler=scheduler,
            market=market,
            fleet=fleet,
            keyring=keyring,
        )
        try:
            await _serve(node, task_status=task_status)
        finally:
            # Every service has stopped: a snapshot now makes the next start quick. The
            # journal commits it with whatever is still queued before it closes.
            if engine.events_since_snapshot:
                try:
                    engine.snapshot()
                except JournalError as error:
                    log.error("node.snapshot_failed", error=str(error))


async def _serve(node: Node, *, task_status: trio.TaskStatus[Node]) -> None:
    """The node's services, until cancelled (``run_node`` minus storage and restore)."""
    config, engine = node.config, node.engine
    async with trio.open_nursery() as nursery:
        await nursery.start(node.scheduler.run)
        for algorithm in Algorithm:
            bridge = MarketWorkSource(
                scheduler=node.scheduler, config=stratum_config(config, algorithm)
            )
            await nursery.start(bridge.run)
            server: StratumServer = await nursery.start(
                partial(serve_stratum, config=bridge.config, work_source=bridge)
            )
            assert server.port is not None
            node.servers.append(server)
            node.stratum_ports[algorithm] = server.port
        app = build_app(
            market=node.market,
            fleet=node.fleet,
            keyring=node.keyring,
            executor=engine,
            settings=ApiSettings(
                auth_window_s=config.auth_window,
                stratum_host=config.host,
                stratum_ports=dict(node.stratum_ports),
            ),
        )
        node.api_port = await nursery.start(
            partial(serve_api, app=app, host=config.host, port=config.api_port)
        )
        await nursery.start(
            partial(
                serve_inbox, db=config.db, engine=engine, market=node.market, keyring=node.keyring
            )
        )
        if config.ports_file:
            _write_ports(config.ports_file, node.ports())
        log.info("node.listening", host=config.host, **node.ports())
        task_status.started(node)
        try:
            await trio.sleep_forever()
        finally:
            for server in node.servers:
                server.shutdown()


async def serve_until_signalled(config: NodeConfig) -> None:
    """Run a node until SIGINT or SIGTERM, then shut it down gracefully."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_node, config)
            async for signum in signals:
                log.info("node.stopping", signal=signal.Signals(signum).name)
                # Cancelling runs every service's cleanup: listeners close, connections are
                # told, the journal commits what is queued before it closes.
                nursery.cancel_scope.cancel()
                break
    log.info("node.stopped")


def main_serve(args: argparse.Namespace) -> int:
    """``hashmarket serve``: exit 0 after a signal, 1 on a bad setting or a busy database."""
    try:
        config = load_config(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log_format, level=config.log_level)  # type: ignore[arg-type]
    try:
        with node_lock(config.db):
            trio.run(serve_until_signalled, config)
    except NodeBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
