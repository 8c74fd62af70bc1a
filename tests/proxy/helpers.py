"""A node in proxy mode for tests: the assembly's core, the upstream manager and one sha256d
market on Stratum, on loopback with test-sized settings; a funded buyer, pools and orders; a
miner; bounded waits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

from marketplace.assembly import open_core, start_market_stratum
from marketplace.clock import Clock
from marketplace.config import NodeConfig
from marketplace.core.invariants import check_invariants
from marketplace.core.model import OrderType, OrderView
from marketplace.core.pool_hosts import DEFAULT_POOL_ALLOW, AllowList
from marketplace.core.views import MarketViews
from marketplace.pool_login import UpstreamConfig
from marketplace.scheduler import SchedulerConfig
from marketplace.upstream import UpstreamManager
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from tests.marketplace_io.miner import RawMiner
from tests.marketplace_io.node import PRICE, TINY, Node, stratum_config

SHA = Algorithm.SHA256D
BUYER = "buyer"
#: Short timeouts: a hostile pool's failure is noticed in a fraction of a second.
FAST = UpstreamConfig(
    notify_timeout_s=1.0,
    request_timeout_s=2.0,
    configure_timeout_s=0.5,
    answer_timeout_s=2.0,
    backoff_initial_s=0.2,
    backoff_max_s=0.4,
    check_interval_s=0.2,
)

__all__ = ["PRICE", "TINY"]


@dataclass
class ProxyNode(Node):
    """``Node`` with the upstream sessions of proxy mode."""

    upstreams: UpstreamManager

    @property
    def views(self) -> MarketViews:
        return MarketViews(self.core.market, self.core.fleet, self.upstreams)

    def order(self, order_id: str, account: str = BUYER) -> OrderView:
        return self.views.get_order(account=account, order_id=order_id)

    def check(self) -> None:
        check_invariants(self.core.market, self.core.fleet)

    async def miner(self, username: str, *, extranonce_subscribe: bool = True) -> RawMiner:
        """A miner logged in (``extranonce.subscribe`` first, unless told not to)."""
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        miner = RawMiner(stream)
        if extranonce_subscribe:
            result = await miner.call("mining.subscribe", ["test-miner/1.0"])
            miner.extranonce1, miner.extranonce2_size = result[1], int(result[2])
            assert await miner.call("mining.extranonce.subscribe", []) is True
            assert await miner.call("mining.authorize", [username, "x"]) is True
            await miner.pump()
        else:
            await miner.login(username)
        return miner


@asynccontextmanager
async def proxy_node(
    tmp_path: Path,
    *,
    upstream: UpstreamConfig = FAST,
    clock: Clock | None = None,
    pool_allow: tuple[str, ...] = DEFAULT_POOL_ALLOW,
    stratum: StratumConfig | None = None,
) -> AsyncIterator[ProxyNode]:
    """The core over a fresh journal in ``tmp_path``, its scheduler, the proxy and one Stratum
    market on 127.0.0.1; a buyer with 1 BTC."""
    settings = NodeConfig(
        db=str(tmp_path / "node.db"), faucet=True, synchronous="NORMAL", pool_allow=pool_allow
    )
    scheduler = SchedulerConfig(rebalance_interval_s=0.5, settle_interval_s=0.5)
    async with (
        open_core(settings, clock=clock, scheduler=scheduler) as core,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(core.scheduler.run)
        upstreams = UpstreamManager(
            scheduler=core.scheduler,
            pools=core.pools,
            allow=AllowList(pool_allow),
            config=upstream,
            clock=core.clock,
        )
        bridge, server = await start_market_stratum(
            core,
            stratum or stratum_config(),
            background=nursery,
            front=nursery,
            upstreams=upstreams,
        )
        await nursery.start(upstreams.run)
        market, now = core.market, core.clock.now_ms()

        def fund() -> None:
            market.create_account(account=BUYER, now_ms=now)
            market.deposit(account=BUYER, amount_msat=10**11, now_ms=now)

        await core.engine.execute(fund)
        yield ProxyNode(core, bridge, server, upstreams)
        nursery.cancel_scope.cancel()


async def add_pool(
    node: ProxyNode,
    port: int,
    *,
    host: str = "127.0.0.1",
    username: str = "poolacct.rig",
    password: str = "s3cret-pool-pass",
) -> str:
    """Save a pool for the buyer; its id."""
    core = node.core

    def create() -> str:
        return core.pools.create_pool(
            account=BUYER,
            name="my pool",
            algorithm=SHA,
            host=host,
            port=port,
            username=username,
            password=password,
            allow=node.upstreams.allow,
            now_ms=core.clock.now_ms(),
        ).id

    return await core.engine.execute(create)


async def add_order(
    node: ProxyNode,
    *,
    pool_id: str | None,
    price_msat: int = PRICE,
    limit_hs: int = 0,
    amount_msat: int = 10**10,
) -> str:
    """A standard order of the buyer (for ``pool_id``, or the chain); its id."""
    core = node.core

    def create() -> str:
        return core.market.create_order(
            account=BUYER,
            algorithm=SHA,
            type=OrderType.STANDARD,
            price_msat=price_msat,
            limit_hs=limit_hs,
            amount_msat=amount_msat,
            duration_s=None,
            now_ms=core.clock.now_ms(),
            fleet=core.fleet,
            pool_id=pool_id,
        )

    return await core.engine.execute(create)


async def wait_until(what: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``what`` until true; ``trio.TooSlowError`` after ``timeout``."""
    with trio.fail_after(timeout):
        while not what():
            await trio.sleep(0.01)
