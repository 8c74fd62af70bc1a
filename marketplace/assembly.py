"""The one place a node is put together: storage, components, engine, services, one clock.

Theory of operation
-------------------
A node is built in three layers, each made here and nowhere else:

1. **Storage** (``marketplace.storage.Storage``): the family of ``<db>`` files. Whoever opens
   the database holds its lock (``<db>.lock``) for as long as it has the state in memory, so
   one process at a time owns it: ``run_node`` for a serving node, ``run_offline`` for one
   operator command.
2. **The core** (``open_core``): the ``KeyRing`` and the ``AccountSecurity`` under ``<db>.key``
   (a new database gets a new master key), the ``PoolRegistry`` (buyers' pools, passwords
   sealed under that key), the ``Market`` under the node's rules, its ephemeral ``Fleet``, the
   journal in ``<db>``, the ``Engine`` that runs and journals commands on the market, the key
   ring, account security and the pools, restored from the journal, and the
   ``MarketScheduler`` beside it. An operator command with no node running needs nothing more.
3. **The services** (``run_node``): the engine's storage-fault service (``Engine.run``), the
   scheduler's timers, the proxy's upstream sessions (``UpstreamManager``: orders that mine for
   a buyer's pool), per algorithm a ``MarketWorkSource`` bridge and its ``StratumServer``, the
   JSON-RPC API and the operator inbox, started in dependency order with ``nursery.start`` so
   nothing races. Once every listener is bound the ports go to ``--ports-file``.

While the store fails (``marketplace.durability``), the node stays up: ``Core.health`` says so
(a readiness probe reads it), the engine puts memory back to the journal's state and retries
the store, and every service answers with a refusal instead of crashing.

One ``Clock`` (``marketplace.clock``) is made here, or injected by a test, and the same object
goes to the engine (and through it the scheduler), every bridge, every Stratum server and the
API: one time in one process.

The order of shutdown is this module's too. ``Node.stop()`` (SIGINT or SIGTERM, in
``hashmarket serve``):

1. stop accepting and tell the miners: each Stratum server runs its own graceful shutdown
   (``stratum.shutting_down``; every connection flushes what is queued and is closed with
   reason ``shutdown`` within ``shutdown_grace_s``; ``stratum.stopped``), the API stops
   accepting and finishes the requests in flight, the inbox takes no new command;
2. once all of them have returned nothing new can reach the engine, and every command that
   was in flight has been answered: the scheduler, the upstream sessions and the bridges
   stop;
3. a snapshot is queued behind the last events, so the next start replays nothing;
4. the journal commits everything queued and closes; ``node.stopped``.

Cancelling ``run_node`` instead (a test, a second signal) skips step 1 and 2's grace but still
takes the snapshot and commits before the journal closes.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog
import trio

from marketplace.accounts import (
    Bootstrap,
    Components,
    KeyEnded,
    answer_inbox,
    bootstrap_account,
    issue_operator_key,
    recover_account_key,
    revoke_operator_key,
)
from marketplace.api.admin import AdminApi, Control
from marketplace.api.app import ApiSettings, build_app
from marketplace.api.server import serve_api
from marketplace.bridge import MarketWorkSource
from marketplace.clock import Clock, JumpListener
from marketplace.config import NodeConfig
from marketplace.control.advance import TimeMachine
from marketplace.control.faults import Faults
from marketplace.control.workers import Workers
from marketplace.core.errors import MarketError
from marketplace.core.eventsourced import EventSourced
from marketplace.core.fleet import Fleet
from marketplace.core.gateway_marks import GatewayMarks
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.market_time import MarketTime
from marketplace.core.model import MarketConfig, default_rules
from marketplace.core.pool_hosts import AllowList
from marketplace.core.pools import PoolRegistry
from marketplace.core.security import AccountSecurity
from marketplace.core.views import MarketViews, RelayFacts
from marketplace.durability import StorageHealth, StorageUnavailable
from marketplace.engine import Engine
from marketplace.gateways import MARKET_PREFIX
from marketplace.local_gateways import Gateways, start_gateways
from marketplace.masterkey import load_master_key, random_key_id, random_nonce
from marketplace.metrics import MetricSources, NodeMetrics
from marketplace.readiness import Readiness
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from marketplace.standby import follow_until_active
from marketplace.storage import Answer, Journal, JournalError, Storage, StorageFault, Synchronous
from marketplace.storage.journal import running
from marketplace.upstream import UpstreamManager
from marketplace.web.events import EventHub, HubSettings
from marketplace.web.site import NodeSite, market_frames
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from stratum.server import StratumServer, serve_stratum

T = TypeVar("T")

log = structlog.get_logger("marketplace.node")


# ---------------------------------------------------------------------------------- settings


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


def scheduler_config(config: NodeConfig) -> SchedulerConfig:
    """The periods of the market's background work for this node's settings."""
    return SchedulerConfig(
        settle_interval_s=config.settle_interval,
        rebalance_interval_s=config.rebalance_interval,
        history_sample_s=config.history_interval,
    )


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


def api_settings(
    config: NodeConfig, *, stratum_ports: dict[Algorithm, int], base: ApiSettings | None = None
) -> ApiSettings:
    """The API's settings: the node's (auth window, where miners connect, where pools may be)
    over ``base``, which holds what a node has no flag for (rate limits, body size; a
    benchmark raises them)."""
    return msgspec.structs.replace(
        base or ApiSettings(),
        auth_window_s=config.auth_window,
        stratum_host=config.host,
        stratum_ports=dict(stratum_ports),
        pool_allow=tuple(config.pool_allow),
    )


# ---------------------------------------------------------------------------------- the core


@dataclass(eq=False)
class Core:
    """A node's durable half, open and restored: what a command needs (see the module doc)."""

    config: NodeConfig
    clock: Clock
    storage: Storage
    journal: Journal
    market: Market
    fleet: Fleet
    keyring: KeyRing
    security: AccountSecurity
    #: The journaled offset of market time, which ``clock`` follows.
    market_time: MarketTime
    pools: PoolRegistry
    gateway_marks: GatewayMarks
    engine: Engine
    scheduler: MarketScheduler
    #: How many journal events the restore replayed (0 after a clean shutdown's snapshot).
    replayed: int
    #: Told how far market time jumped, with the fleet (the node's Stratum servers).
    jump_listeners: list[JumpListener] = field(default_factory=list)
    #: The pool orders' upstreams (proxy mode), once ``start_upstreams`` made them.
    relays: RelayFacts | None = None

    @property
    def views(self) -> MarketViews:
        """What the API reads: the market and the fleet together (and the pool orders'
        upstreams)."""
        return MarketViews(self.market, self.fleet, self.relays)

    @property
    def components(self) -> Components:
        """What operator commands change, with the engine that journals them."""
        return Components(self.engine, self.market, self.keyring, self.security)

    @property
    def health(self) -> StorageHealth:
        """Whether the store takes writes now: ``ready`` is what ``/readyz`` answers."""
        return self.engine.health

    async def create_account(self, account: str) -> Bootstrap:
        """Open ``account`` with its first key, durably, now (``bootstrap_account``; raises
        as it does: "account exists" for one that has keys)."""
        return await bootstrap_account(self.components, account=account, now_ms=self.clock.now_ms())

    async def recover_key(self, account: str) -> Bootstrap:
        """A new all-scope key for the existing ``account``, logged as ``key.recovered``
        (``recover_account_key``; raises as it does)."""
        return await recover_account_key(
            self.components, account=account, now_ms=self.clock.now_ms()
        )

    async def issue_operator_key(self) -> Bootstrap:
        """A new operator key, durably, now (``accounts.issue_operator_key``)."""
        return await issue_operator_key(self.components, now_ms=self.clock.now_ms())

    async def revoke_operator_key(self, key_id: str) -> None:
        """End the operator key ``key_id`` now, durably. Raises ``NotFound`` unless it is an
        active operator key."""
        await revoke_operator_key(self.components, key_id=key_id, now_ms=self.clock.now_ms())


@dataclass(frozen=True, eq=False)
class Durable:
    """The components a node journals, built empty (their state comes from the journal)."""

    market: Market
    keyring: KeyRing
    security: AccountSecurity
    #: The journaled offset of market time.
    market_time: MarketTime
    #: Buyers' pools (proxy mode), their passwords sealed under the master key.
    pools: PoolRegistry
    #: The share ids taken from Stratum gateways (``marketplace.gateways``).
    gateway_marks: GatewayMarks

    def all(self) -> list[EventSourced[Any]]:
        """Every one of them, in the engine's order."""
        return [
            self.market,
            self.keyring,
            self.security,
            self.market_time,
            self.pools,
            self.gateway_marks,
        ]


def durable_components(config: NodeConfig, *, master_key: bytes) -> Durable:
    """Empty components under this node's rules, with secrets derived from ``master_key``
    and random ids (``marketplace.masterkey``). Raises ``ValueError`` for a short key."""
    return Durable(
        market=Market(config=market_config(config)),
        keyring=KeyRing(master_key=master_key, new_key_id=random_key_id),
        security=AccountSecurity(
            master_key=master_key,
            new_id=random_key_id,
            address_lock_ms=int(config.address_lock * 1000),
        ),
        market_time=MarketTime(),
        pools=PoolRegistry(master_key=master_key, new_nonce=random_nonce),
        gateway_marks=GatewayMarks(),
    )


@asynccontextmanager
async def open_core(
    config: NodeConfig,
    *,
    clock: Clock | None = None,
    scheduler: SchedulerConfig | None = None,
) -> AsyncIterator[Core]:
    """The database at ``config.db`` open and restored into fresh components, for the block;
    on exit the journal commits what is queued and closes. The journal's writer holds the
    database's lock for the block. With ``config.standby`` the components follow the journal
    first, with no lock, until the active market is gone (``marketplace.standby``).

    Raises ``NodeBusy`` if another process holds the lock (never with ``standby``),
    ``ValueError`` for a bad ``synchronous`` setting, ``JournalError`` for a journal of another
    schema or naming an unknown component, ``PermissionError``/``ValueError`` for a bad or
    missing master key, ``FileNotFoundError`` for a missing key file of an existing database.
    """
    clock = clock or Clock()
    storage = Storage(config.db, master_key_file=config.master_key_file)
    synchronous = Synchronous(config.synchronous.upper())
    new_file = storage.path is not None and not await trio.Path(storage.path).exists()
    journal = await storage.journal(synchronous=synchronous)
    built: tuple[Durable, Engine] | None = None
    replayed = 0

    def build(*, create_key: bool) -> tuple[Durable, Engine]:
        # Only a new database may get a new master key: a new one invalidates every key issued.
        master_key = load_master_key(storage.key_path, create=create_key)
        parts = durable_components(config, master_key=master_key)
        return parts, Engine(components=parts.all(), journal=journal, clock=clock)

    if config.standby:
        built = build(create_key=False)
        replayed = await follow_until_active(built[1], journal)
    async with running(journal):
        if built is None:
            built = build(
                create_key=new_file if storage.path is not None else journal.last_seq == 0
            )
            replayed = await built[1].restore()
        parts, engine = built
        fleet = Fleet(config=parts.market.config)
        timers = MarketScheduler(
            engine=engine,
            market=parts.market,
            fleet=fleet,
            config=scheduler or scheduler_config(config),
        )
        # Market time resumes where the journal left it (wall clock plus the last offset).
        clock.follow(parts.market_time)
        listeners: list[JumpListener] = [fleet.clock_jumped]

        def jumped(delta_ms: int) -> None:
            for listener in listeners:
                listener(delta_ms)

        clock.add_jump_listener(jumped)
        log.info(
            "node.restored",
            db=storage.name,
            events=replayed,
            market_offset_ms=parts.market_time.offset_ms,
        )
        try:
            yield Core(
                config=config,
                clock=clock,
                storage=storage,
                journal=journal,
                market=parts.market,
                fleet=fleet,
                keyring=parts.keyring,
                security=parts.security,
                market_time=parts.market_time,
                pools=parts.pools,
                gateway_marks=parts.gateway_marks,
                engine=engine,
                scheduler=timers,
                replayed=replayed,
                jump_listeners=listeners,
            )
        finally:
            clock.remove_jump_listener(jumped)


def run_offline(
    config: NodeConfig, command: Callable[[Core], Awaitable[T]], *, clock: Clock | None = None
) -> T:
    """Run one ``command(core)`` on a database no node is serving: take its lock, open and
    restore it, run the command (durably, through ``core.engine``), close it; the command's
    result. Synchronous (it runs its own trio loop).

    Raises ``NodeBusy`` if a node serves the database (before the command runs), else
    whatever ``open_core`` or the command raise.
    """
    return trio.run(_offline, config, command, clock)


async def _offline(
    config: NodeConfig, command: Callable[[Core], Awaitable[T]], clock: Clock | None
) -> T:
    async with open_core(config, clock=clock) as core:
        return await command(core)


# ---------------------------------------------------------------------------------- the node


@dataclass(eq=False)
class Node:
    """A running node: its core and what its services bound."""

    core: Core
    api_port: int = 0
    stratum_ports: dict[Algorithm, int] = field(default_factory=dict)
    servers: list[StratumServer] = field(default_factory=list)
    bridges: list[MarketWorkSource] = field(default_factory=list)
    #: What the operator methods act on (``serve --control`` only).
    control: Control | None = None
    #: What ``/readyz`` answers: the journal replayed, the Stratum listeners and the API up.
    #: Another part that can make the node unfit to serve adds a check of its own.
    readiness: Readiness = field(default_factory=lambda: Readiness(["journal", "stratum", "api"]))
    #: The web side of the API port (page, ``/events``, ``/metrics``), once it is up.
    site: NodeSite | None = None
    upstreams: UpstreamManager | None = None
    #: The gateway port, its gateways and the local ones (``serve --gateways``, ``--gateway-port``).
    gateways: Gateways | None = None
    _stopping: trio.Event = field(default_factory=trio.Event)

    @property
    def config(self) -> NodeConfig:
        return self.core.config

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stopping.is_set()

    def stop(self, *, reason: str = "requested") -> None:
        """Begin the graceful shutdown (see the module doc); ``run_node`` returns once it is
        done. Idempotent."""
        if not self._stopping.is_set():
            log.info("node.stopping", reason=reason)
            self._stopping.set()

    @property
    def dashboard_url(self) -> str:
        """Where the dashboard is served (the API port)."""
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.api_port}/"

    def ports(self) -> dict[str, object]:
        """``{"api": N, "stratum": {"sha256d": N, "scrypt": N}}`` as ``--ports-file`` has it."""
        ports: dict[str, object] = {
            "api": self.api_port,
            "stratum": {algorithm.value: port for algorithm, port in self.stratum_ports.items()},
        }
        if self.gateways is not None:
            ports["gateway"] = self.gateways.port
            ports["gateway_pids"] = self.gateways.pids()
        return ports


async def run_node(
    config: NodeConfig,
    *,
    clock: Clock | None = None,
    api: ApiSettings | None = None,
    web: HubSettings | None = None,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run every service of a node; ``task_status.started(node)`` once all listeners are bound.
    Returns after ``node.stop()`` and the shutdown in order (see the module doc), or stops at
    once when cancelled (still with a snapshot). ``api`` holds API settings a node has no flag
    for (see ``api_settings``), ``web`` the live feed's (``/events``).

    Raises ``NodeBusy`` if another process holds the database's lock, ``OSError`` if a
    listener cannot bind, and as ``open_core``.
    """
    try:
        async with open_core(config, clock=clock) as core:
            node = Node(core=core)
            node.readiness.passed("journal")  # open_core restored it
            node.readiness.watch("storage", lambda: _storage_problem(core.health))
            try:
                await _serve(node, api=api, web=web, task_status=task_status)
            finally:
                _snapshot(core.engine)
    finally:
        log.info("node.stopped", db=Storage(config.db).name)


def _snapshot(engine: Engine) -> None:
    """Every service has stopped: a snapshot now makes the next start quick. The journal
    commits it with whatever is still queued before it closes."""
    if engine.events_since_snapshot:
        try:
            engine.snapshot()
        except JournalError as error:
            log.error("node.snapshot_failed", error=str(error))


def start_upstreams(core: Core) -> UpstreamManager:
    """The proxy over the core: one upstream session per active order with a pool, to hosts
    the node's ``--pool-allow`` allows (run it with ``nursery.start(upstreams.run)``); the
    core's views read its relays from then on."""
    upstreams = UpstreamManager(
        scheduler=core.scheduler,
        pools=core.pools,
        allow=AllowList(core.config.pool_allow),
        clock=core.clock,
    )
    core.relays = upstreams
    return upstreams


async def start_bridge(
    core: Core,
    config: StratumConfig,
    *,
    background: trio.Nursery,
    upstreams: UpstreamManager | None = None,
) -> MarketWorkSource:
    """One algorithm's bridge between the order book and Stratum (its job pushes run in
    ``background``; the orders with a pool through ``upstreams``), on the core's clock."""
    bridge = MarketWorkSource(
        scheduler=core.scheduler, config=config, clock=core.clock, upstreams=upstreams
    )
    if upstreams is not None:
        upstreams.add_listener(bridge)
    await background.start(bridge.run)
    return bridge


async def start_market_stratum(
    core: Core,
    config: StratumConfig,
    *,
    background: trio.Nursery,
    front: trio.Nursery,
    conn_ids: Iterator[int] | None = None,
    upstreams: UpstreamManager | None = None,
) -> tuple[MarketWorkSource, StratumServer]:
    """One algorithm's market on Stratum: its bridge (``start_bridge``) and its server (in
    ``front``, where it runs until its own ``shutdown``), on the core's clock; ``conn_ids``
    numbers the connections (one counter for a node's listeners). Raises ``OSError`` if the
    listener cannot bind."""
    bridge = await start_bridge(core, config, background=background, upstreams=upstreams)
    server: StratumServer = await front.start(
        partial(
            serve_stratum,
            config=bridge.config,
            work_source=bridge,
            clock=core.clock.now_ms,
            conn_ids=conn_ids,
        )
    )
    return bridge, server


def make_control(node: Node) -> Control:
    """What the operator methods act on (``serve --control``): market time over the core's
    engine, scheduler and the node's bridges, its Stratum servers' workers, faults."""
    core = node.core
    assert node.upstreams is not None, "the proxy starts before the operator's control"
    workers = Workers(fleet=core.fleet, clock=core.clock)
    for server in node.servers:
        workers.add_server(server)
    if node.gateways is not None:
        workers.add_gateways(node.gateways.hub)
    return Control(
        clock=core.clock,
        engine=core.engine,
        market=core.market,
        time=TimeMachine(
            clock=core.clock,
            engine=core.engine,
            market_time=core.market_time,
            scheduler=core.scheduler,
            bridges=node.bridges,
        ),
        workers=workers,
        faults=Faults(workers, node.upstreams),
        bridges={bridge.algorithm: bridge for bridge in node.bridges},
        stratum_host=core.config.host,
        stratum_ports=dict(node.stratum_ports),
    )


def _storage_problem(health: StorageHealth) -> str | None:
    """``/readyz``'s storage check: why the store takes no writes now, if it does not."""
    if health.ready:
        return None
    return f"{health.state.value}: {health.cause or 'unknown cause'}"


def _connections(node: Node) -> dict[Algorithm, int]:
    """Open Stratum connections per algorithm: the node's own and its gateways'."""
    counts = {s.config.algorithm: s.live_connections for s in node.servers}
    if node.gateways is not None:
        for algorithm in Algorithm:
            remote = node.gateways.hub.live_connections(algorithm)
            counts[algorithm] = counts.get(algorithm, 0) + remote
    return counts


def _metrics(node: Node) -> NodeMetrics:
    """The node's metrics, hooked into the journal (the servers and the API hook in later)."""
    core = node.core
    metrics = NodeMetrics(
        MetricSources(
            market=core.market,
            views=core.views,
            now_ms=core.clock.now_ms,
            connections=lambda: _connections(node),
        )
    )
    core.journal.commit_observer = metrics.observe_commit
    return metrics


async def _serve(
    node: Node,
    *,
    api: ApiSettings | None,
    web: HubSettings | None,
    task_status: trio.TaskStatus[Node],
) -> None:
    """The node's services until ``stop`` (then in order) or cancellation."""
    core, config = node.core, node.core.config
    conn_ids = itertools.count(1)
    upstreams = node.upstreams = start_upstreams(core)
    metrics = _metrics(node)
    # ``background`` serves the engine's users that take no work in themselves; ``front``
    # holds everything that does, so that leaving it means nothing new can arrive.
    async with trio.open_nursery() as background:
        await background.start(core.engine.run)
        await background.start(core.scheduler.run)
        async with trio.open_nursery() as front:
            if config.gateways:
                for algorithm in Algorithm:
                    node.bridges.append(
                        await start_bridge(
                            core,
                            stratum_config(config, algorithm),
                            background=background,
                            upstreams=upstreams,
                        )
                    )
            else:
                for algorithm in Algorithm:
                    bridge, server = await start_market_stratum(
                        core,
                        stratum_config(config, algorithm),
                        background=background,
                        front=front,
                        conn_ids=conn_ids,
                        upstreams=upstreams,
                    )
                    assert server.port is not None
                    server.share_ack_observer = metrics.share_ack_observer(algorithm)
                    node.bridges.append(bridge)
                    node.servers.append(server)
                    node.stratum_ports[algorithm] = server.port
                    # A jump of market time is no silence of a connected miner (clock.py).
                    core.jump_listeners.append(server.clock_jumped)
            if config.gateways or config.gateway_port is not None:
                node.gateways = await front.start(
                    partial(
                        start_gateways,
                        config,
                        bridges=node.bridges,
                        marks=core.gateway_marks,
                        stopping=node._stopping,
                        # (During an advance market time is pinned ahead of the offset.)
                        offset_ms=lambda: core.clock.now_ms() - core.clock.wall_ms(),
                    )
                )
                # Market time's jumps reach the gateways' clocks too (clock.py).
                core.jump_listeners.append(node.gateways.hub.clock_jumped)
                if node.gateways.local is not None:
                    node.stratum_ports.update(node.gateways.local.ports)
                for algorithm in Algorithm:
                    observer = metrics.share_ack_observer(algorithm)
                    node.gateways.hub.ack_observers[algorithm] = observer
                for server in node.servers:
                    # The gateways own the other prefixes of the extranonce1 space.
                    server.extranonces.prefix = bytes([MARKET_PREFIX])
            admin = None
            if config.control:
                node.control = make_control(node)
                await background.start(node.control.faults.run)
                admin = AdminApi(node.control)
            settings = api_settings(config, stratum_ports=node.stratum_ports, base=api)
            app = build_app(
                market=core.market,
                fleet=core.fleet,
                keyring=core.keyring,
                security=core.security,
                executor=core.engine,
                settings=settings,
                clock=core.clock,
                admin=admin,
                health=core.health,
                nicehash=config.nicehash_api,
                pools=core.pools,
                proxy=upstreams,
                relays=upstreams,
            )
            app.service.call_observer = metrics.observe_call
            node.readiness.passed("stratum")
            hub = EventHub(frames=market_frames(core.views, core.clock.now_ms), settings=web)
            await background.start(hub.run)
            node.site = NodeSite(api=app, hub=hub, readiness=node.readiness, metrics=metrics)
            node.api_port = await front.start(
                partial(
                    serve_api,
                    app=node.site,
                    host=config.host,
                    port=config.api_port,
                    shutdown=node._stopping.wait,
                    send_timeout_s=settings.send_timeout_s,
                )
            )
            node.readiness.passed("api")
            await front.start(partial(_serve_inbox, core, stopping=node._stopping))
            # The bridges are listening: pool orders' sessions may start handing them work.
            await background.start(upstreams.run)
            if config.ports_file:
                _write_ports(config.ports_file, node.ports())
            log.info(
                "node.listening", host=config.host, dashboard=node.dashboard_url, **node.ports()
            )
            task_status.started(node)
            await node._stopping.wait()
            hub.close()  # the live feed's streams end, so the API's graceful stop has none
            for server in node.servers:
                server.shutdown()
            # The gateways (start_gateways) stop their listeners and miners on their own.
        background.cancel_scope.cancel()


async def _serve_inbox(
    core: Core,
    *,
    stopping: trio.Event,
    poll_s: float = 0.1,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the operator commands left in the inbox, one by one, until ``stopping``. While the
    store fails, a command stays in the inbox and is run at a later poll."""
    inbox = core.storage.inbox
    await trio.to_thread.run_sync(inbox.create)  # the table exists before we say "started"
    task_status.started()
    while not stopping.is_set():
        try:
            for command_id, body in await trio.to_thread.run_sync(inbox.pending):
                answer = await _answer(core, body)
                await trio.to_thread.run_sync(inbox.finish, command_id, answer)
        except (StorageUnavailable, StorageFault) as exc:
            log.warning("operator.inbox_waits", error=str(exc))
        with trio.move_on_after(poll_s):
            await stopping.wait()


async def _answer(core: Core, body: bytes) -> Answer:
    try:
        answer = await answer_inbox(body, components=core.components, now_ms=core.clock.now_ms())
    except (MarketError, msgspec.DecodeError) as exc:
        log.warning("operator.refused", error=str(exc))
        return Answer(result=None, error=str(exc))
    if isinstance(answer, KeyEnded):
        log.info("operator.key_revoked", key=answer.key_id)
    else:
        log.info("operator.key_issued", account=answer.account_id, key=answer.key_id)
    return Answer(result=msgspec.json.encode(answer).decode(), error=None)


def _write_ports(path: str, ports: dict[str, object]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(ports))
    os.replace(tmp, target)  # atomic: a reader never sees half a file
