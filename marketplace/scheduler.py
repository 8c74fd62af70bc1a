"""The market scheduler: the market's clock-based work beside the engine's unit of work.

Theory of operation
-------------------
The ``Engine`` runs commands and journals them, knowing no component in particular; the
``MarketScheduler`` knows the market. It drives the market's clock-based work: settling every
settle interval, expiring orders whose duration is over (each a ``Market`` command, so through
``Engine.execute``), rebalancing the allocation on a periodic tick, sampling the allocation
into the market's history (``sample``: the allocation is ephemeral, so what the history needs
of it, workers and prices, is journaled as ``MarketSampled``), and taking a snapshot every
``snapshot_interval_s`` once ``snapshot_min_events`` events have been journaled since the last
(the node takes one more on a clean shutdown).

It also owns the rebalance. Rebalancing is the ``Fleet``'s and ephemeral (it emits no events):
``rebalance`` asks the market for its queue, lets the fleet move workers and hands the moves to
the listeners (the Stratum bridges), which push the moved workers their new jobs. The queue
holds an order with a buyer's pool only while its upstream is alive (``set_alive``: the
proxy's predicate), so a dead pool's workers move at once to the next order. Besides the
tick, it rebalances right after any command that changed an order book (it listens to the
engine's commits) and soon after ``request_rebalance``. Time is the engine's injected clock,
and every timer runs on trio's clock, so the scheduler's tests run on ``MockClock`` with an
in-memory journal, with no thread in sight.

An operator's advance of market time (``marketplace.control.advance``) cannot wait for trio's
timers: it asks what is due (``next_end_ms``, ``settlement_due_ms``) and runs the same work at
each due time itself (``run_due``), inside its own commands.

While the store is failing (``marketplace.durability``) a settle or an expire is refused with
``StorageUnavailable``; the step is skipped and comes again at its next period, so nothing is
lost (unsettled work carries over, an expired order expires at the next try). The rebalance
is ephemeral and goes on. When the engine rebuilt the market from the journal, orders the
failed batches had made or changed are back as the journal has them: the scheduler rebalances
at once, in the same step, so the fleet holds no worker for an order the market does not have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog
import trio

from marketplace.core.events import (
    AccountCreated,
    Deposited,
    MarketSampled,
    PoolAnswered,
    Settled,
    ShareRecorded,
    Withdrawn,
)
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import Assignment
from marketplace.core.views import MarketViews
from marketplace.durability import StorageUnavailable
from marketplace.engine import Committed, Engine
from stratum.core.shares import Algorithm

#: Called with a market's algorithm and the moves of one of its rebalances.
RebalanceListener = Callable[[Algorithm, list[Assignment]], None]

#: Market events that cannot change the allocation (everything else may).
_ALLOCATION_NEUTRAL: Final = (
    ShareRecorded,
    PoolAnswered,
    AccountCreated,
    Deposited,
    Withdrawn,
    Settled,
    MarketSampled,
)

log = structlog.get_logger("marketplace.scheduler")


class SchedulerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Periods of the market's background work, in seconds of trio time."""

    #: Settlement period; ``None`` = the market's ``settle_interval_ms``.
    settle_interval_s: float | None = None
    rebalance_interval_s: float = 5.0
    expire_interval_s: float = 1.0
    #: How often the allocation is sampled into the market's history (0: never).
    history_sample_s: float = 10.0
    #: How often ``run`` considers a snapshot (0: never) ...
    snapshot_interval_s: float = 60.0
    #: ... and how many events since the last one make it worth taking.
    snapshot_min_events: int = 50_000


class MarketScheduler:
    """Settles, expires, rebalances and snapshots one market's engine (see the module doc)."""

    def __init__(
        self,
        *,
        engine: Engine,
        market: Market,
        fleet: Fleet,
        config: SchedulerConfig | None = None,
    ) -> None:
        if engine.components.get(market.component) is not market:
            raise ValueError("the engine does not run this market")
        self._engine = engine
        self._market = market
        self._fleet = fleet
        self._config = config or SchedulerConfig()
        self._listeners: list[RebalanceListener] = []
        self._alive: Callable[[str], bool] | None = None
        self._rebalance_wanted = trio.Event()
        engine.add_commit_listener(self._on_commit)
        engine.add_rebuild_listener(self._on_rebuild)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def market(self) -> Market:
        return self._market

    @property
    def fleet(self) -> Fleet:
        return self._fleet

    # ------------------------------------------------------------------ allocation

    def add_rebalance_listener(self, listener: RebalanceListener) -> None:
        """Call ``listener(algorithm, moves)`` after every rebalance that moved workers."""
        self._listeners.append(listener)

    def remove_rebalance_listener(self, listener: RebalanceListener) -> None:
        """Stop calling ``listener``. Raises ``ValueError`` if it was not added."""
        self._listeners.remove(listener)

    def set_alive(self, alive: Callable[[str], bool] | None) -> None:
        """Which orders with a pool may get workers: those ``alive(order_id)`` says are
        (``None``: none, as without a proxy)."""
        self._alive = alive

    def request_rebalance(self) -> None:
        """Ask ``run`` to rebalance every market soon (without waiting for the tick)."""
        self._rebalance_wanted.set()

    def rebalance(self, algorithm: Algorithm | None = None) -> list[Assignment]:
        """Rebalance one market (or all) now, tell the listeners, return the moves.

        Synchronous: the allocation is ephemeral (no events), so nothing is journaled.
        Raises ``InvalidArgument`` for no such market.
        """
        market, fleet = self._market, self._fleet
        algorithms = market.algorithms() if algorithm is None else [algorithm]
        now = self._engine.now_ms()
        moved: list[Assignment] = []
        for alg in algorithms:
            queue = market.allocation_queue(alg, alive=self._alive)
            moves = fleet.rebalance(alg, queue=queue, now_ms=now)
            if moves:
                moved.extend(moves)
                log.debug("scheduler.rebalanced", algorithm=alg.value, moves=len(moves))
                for listener in list(self._listeners):
                    listener(alg, moves)
        return moved

    def _on_rebuild(self) -> None:
        self.rebalance()

    def _on_commit(self, events: list[Committed]) -> None:
        name = self._market.component
        if any(
            c.component == name and not isinstance(c.event, _ALLOCATION_NEUTRAL) for c in events
        ):
            self.rebalance()

    # ------------------------------------------------------------------ clock-based work

    async def settle(self) -> None:
        """Settle the market now (through ``execute``)."""
        market = self._market
        await self._engine.execute(lambda: market.settle(now_ms=self._engine.now_ms()))

    async def expire(self) -> list[str]:
        """End the orders whose duration is over (through ``execute``); return their ids."""
        market = self._market
        return await self._engine.execute(lambda: market.expire(now_ms=self._engine.now_ms()))

    # ------------------------------------------------------------------ what is due (advance)

    def next_end_ms(self) -> int | None:
        """The earliest end (``ends_ms``) of an active order, if any has one: where an
        operator's advance of market time must stop to end it (``run_due``)."""
        ends = [
            order.ends_ms
            for active in self._market.book.active.values()
            for order in active.values()
            if order.ends_ms is not None
        ]
        return min(ends, default=None)

    def settlement_due_ms(self) -> int | None:
        """When a settlement has work: one settle interval after the last settlement (at
        once if there was none) while spend waits to be settled; ``None`` while none waits."""
        if not self._market.book.unsettled:
            return None
        return self._market.next_settle_ms() or 0

    def run_due(self, now_ms: int) -> None:
        """The market's clock-based work due at ``now_ms``, as one command (run it inside
        ``Engine.execute``): end the orders whose duration is over, then settle if a settlement
        is due. An operator's advance runs it at each due time it steps through; the periodic
        timers of ``run`` do the same work in real time."""
        market = self._market
        market.expire(now_ms=now_ms)
        due = self.settlement_due_ms()
        if due is not None and due <= now_ms:
            market.settle(now_ms=now_ms)

    async def sample(self) -> int:
        """Journal a ``MarketSampled`` of every market whose allocation changed since its
        minute's last sample (workers, best and fill price); how many were news. The values
        are read inside the command, so they are the state the event is journaled in."""
        market, views = self._market, MarketViews(self._market, self._fleet)

        def command() -> int:
            now = self._engine.now_ms()
            news = 0
            for algorithm in market.algorithms():
                best, fill = views.prices(algorithm)
                news += market.record_sample(
                    algorithm,
                    workers=self._fleet.connected(algorithm),
                    best_price_msat=best,
                    fill_price_msat=fill,
                    now_ms=now,
                )
            return news

        return await self._engine.execute(command)

    def snapshot_if_due(self) -> bool:
        """Take a snapshot if ``snapshot_min_events`` events were journaled since the last;
        whether one was taken."""
        if self._engine.events_since_snapshot < self._config.snapshot_min_events:
            return False
        return self._engine.snapshot()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle, expire, rebalance and snapshot periodically until cancelled; started with
        ``nursery.start`` after ``engine.restore``. A step the failing store refuses is skipped
        until its next period. Raises ``RuntimeError`` before ``restore`` and whatever else a
        step raises (a ``JournalError`` other than the store failing is fatal: memory no
        longer matches disk)."""
        if not self._engine.restored:
            raise RuntimeError("await engine.restore() before running the scheduler")
        settle_s = self._config.settle_interval_s
        if settle_s is None:
            settle_s = self._market.config.settle_interval_ms / 1000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_every, settle_s, self.settle)
            nursery.start_soon(_every, self._config.expire_interval_s, self.expire)
            nursery.start_soon(self._rebalance_loop)
            if self._config.history_sample_s > 0:
                nursery.start_soon(_every, self._config.history_sample_s, self.sample)
            if self._config.snapshot_interval_s > 0:
                nursery.start_soon(_every, self._config.snapshot_interval_s, self._snapshot)
            task_status.started()

    async def _snapshot(self) -> None:
        self.snapshot_if_due()
        await trio.lowlevel.checkpoint()

    async def _rebalance_loop(self) -> None:
        interval = self._config.rebalance_interval_s
        while True:
            with trio.move_on_after(interval):
                await self._rebalance_wanted.wait()
            self._rebalance_wanted = trio.Event()
            try:
                await self._engine.execute(self.rebalance)
            except StorageUnavailable:
                self.rebalance()  # ephemeral: it needs no store


async def _every(interval_s: float, step: Callable[[], Awaitable[Any]]) -> None:
    """Run ``step`` every ``interval_s`` of trio time from now, until cancelled; a step the
    failing store refuses waits for its next period."""
    deadline = trio.current_time()
    while True:
        deadline += interval_s
        await trio.sleep_until(deadline)
        try:
            await step()
        except StorageUnavailable as refused:
            log.debug("scheduler.step_skipped", step=step.__name__, cause=refused.cause)
