"""A live node for the browser tests: the real assembly on loopback in a thread of its own,
with a buyer's orders and two miners hashing at a tiny difficulty.

The browser (Playwright's sync API) owns the test's thread, so the node runs its own trio loop
in another, and the test reaches into it with ``trio.from_thread``. The node's clock follows
the wall clock until ``freeze``: then market time stands still (signing keeps the wall clock),
so with the miners paused every figure the API and the page show holds still, and "the same
moment" can be compared exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import trio

from marketplace.accounts import Bootstrap
from marketplace.assembly import Node
from marketplace.clock import Clock
from marketplace.core.model import OrderType
from marketplace.web.events import HubSettings
from stratum.core.shares import Algorithm
from tests.marketplace_io.miner import RawMiner, StratumError
from tests.marketplace_io.test_assembly import serving, settings

T = TypeVar("T")
BTC = 10**11
MINERS = ("seller.rig1", "seller.rig2")


class FreezableClock(Clock):
    """Wall time, until ``freeze``: then market time stands still (wall time goes on)."""

    def __init__(self) -> None:
        self.frozen_ms: int | None = None

    def now_ms(self) -> int:
        return self.wall_ms() if self.frozen_ms is None else self.frozen_ms

    def freeze(self) -> int:
        self.frozen_ms = self.wall_ms()
        return self.frozen_ms

    def thaw(self) -> None:
        self.frozen_ms = None


class LiveNode:
    """The node, its miners and their counters (see the module doc)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.clock = FreezableClock()
        self.node: Node | None = None
        self.buyer: Bootstrap | None = None
        self.accepted = 0
        self.rejected = 0
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: trio.Event | None = None
        self._running: trio.Event | None = None
        self._locks: list[trio.Lock] = []
        self._thread = threading.Thread(target=self._thread_main, name="live-node", daemon=True)

    # ------------------------------------------------------------------ from the test's thread

    def start(self, *, timeout_s: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the live node was not ready within {timeout_s} s")
        if self._failure is not None:
            raise RuntimeError("the live node failed to start") from self._failure

    def stop(self, *, timeout_s: float = 30.0) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the live node did not stop within {timeout_s} s")

    @property
    def url(self) -> str:
        assert self.node is not None
        return f"http://127.0.0.1:{self.node.api_port}"

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the node's loop; its result."""
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def pause_miners(self) -> None:
        """Stop submitting; returns once no share is in flight."""
        self.run(self._pause)

    def resume_miners(self) -> None:
        assert self._running is not None
        assert self._token is not None
        trio.from_thread.run_sync(self._running.set, trio_token=self._token)

    def rebalance(self) -> None:
        """Rebalance every market now (after ``freeze``, nothing moves again until thawed)."""

        async def rebalance() -> None:
            assert self.node is not None
            self.node.core.scheduler.rebalance()
            await trio.lowlevel.checkpoint()

        self.run(rebalance)

    def create_account(self, name: str, *, deposit_btc: int = 1) -> Bootstrap:
        """A funded account with its first key (all scopes)."""

        async def create() -> Bootstrap:
            assert self.node is not None
            core = self.node.core
            issued = await core.create_account(name)
            now = core.clock.now_ms()
            await core.engine.execute(
                lambda: core.market.deposit(account=name, amount_msat=deposit_btc * BTC, now_ms=now)
            )
            return issued

        return self.run(create)

    # ------------------------------------------------------------------ in the node's thread

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # reported to start(), which raises it
            self._failure = error
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._running = trio.Event()
        self._running.set()
        config = settings(self.db, history_interval=1.0, max_difficulty=1e-6)
        web = HubSettings(interval_s=1.0, heartbeat_s=5.0)
        async with serving(config, self.clock, web=web) as node:
            self.node = node
            await self._seed(node)
            async with trio.open_nursery() as nursery:
                for name in MINERS:
                    lock = trio.Lock()
                    self._locks.append(lock)
                    await nursery.start(self._mine, node, name, lock)
                node.core.scheduler.rebalance()
                # A first sample, so the price chart has points before the first tick.
                await node.core.scheduler.sample()
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    async def _seed(self, node: Node) -> None:
        core = node.core
        self.buyer = await core.create_account("buyer")
        now = core.clock.now_ms()
        market = core.market

        def orders() -> None:
            market.deposit(account="buyer", amount_msat=10 * BTC, now_ms=now)
            for price, limit in ((2 * BTC, 10**4), (BTC, 0), (BTC // 2, 0)):
                market.create_order(
                    account="buyer",
                    algorithm=Algorithm.SHA256D,
                    type=OrderType.STANDARD,
                    price_msat=price,
                    limit_hs=limit,
                    amount_msat=BTC,
                    duration_s=None,
                    now_ms=now,
                    fleet=core.fleet,
                )

        await core.engine.execute(orders)

    async def _mine(
        self,
        node: Node,
        name: str,
        lock: trio.Lock,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", node.stratum_ports[Algorithm.SHA256D])
        async with stream:
            miner = RawMiner(stream, timeout=10)
            await miner.login(name)
            task_status.started()
            sent = 0
            while True:
                assert self._running is not None
                await self._running.wait()
                async with lock:
                    job = miner.latest
                    params = [name, job.job_id, *miner.solve(job)]
                    # Every tenth share twice: rejects for the charts and the counters.
                    for _ in range(2 if sent % 10 == 9 else 1):
                        try:
                            await miner.call("mining.submit", params)
                            self.accepted += 1
                        except StratumError:
                            self.rejected += 1
                    sent += 1
                # Pacing, not synchronisation: about 20 shares a second per miner.
                await trio.sleep(0.05)

    async def _pause(self) -> None:
        self._running = trio.Event()
        for lock in self._locks:
            async with lock:
                pass
