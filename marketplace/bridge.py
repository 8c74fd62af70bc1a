"""The bridge between the order book and a Stratum server: orders become job streams.

``MarketWorkSource`` implements ``stratum.core.jobs.WorkSource`` for one algorithm. Every order
that holds workers has its own ``JobStream`` (tag = order id, so its coinbase carries the order
id and every share is attributable to exactly one order); workers that no order wants share an
``idle`` stream. All streams of one algorithm build on one ``EmulatedChain``.

- ``connect(link)``: the connection joins the fleet (``Fleet.worker_joined``, estimate from its
  difficulty: ``difficulty * 2**32 / target_share_interval`` H/s), the scheduler rebalances and
  the first job comes from the stream of the order it now serves.
- Moves: the bridge listens to the scheduler's rebalances; every moved worker gets a fresh job
  from its new stream at once, with ``clean_jobs=True`` so it drops the old order's work.
- ``record_shares(shares)``: one ``await engine.execute(...)`` whose command runs
  ``market.record_share(share, order_id=...)`` for each of a connection's batch, the order taken
  from the job's ``source``, so the shares are journaled (records in a shared group commit)
  before the server replies ``true``; then each accepted share's work goes to the connection's
  speed estimate (``Fleet.share_accepted``), which is not journaled. While the store fails the
  engine refuses (``StorageUnavailable``) and the miner is answered
  ``[20, "storage unavailable, retry"]`` (``ShareNotRecorded``); it keeps its jobs.
- ``run``: a new job for every worker at least every ``job_interval_s``, and at once (with
  ``clean_jobs``) when the emulated chain finds a block. ``catch_up`` is that step run at once
  (after an operator's advance of market time: only the latest job and block matter, so once),
  ``new_block`` makes the chain find a block now (``admin.block.new``).

Everything here runs in the trio thread; ``connect``, ``disconnect`` and the move handler are
synchronous, so they are atomic with respect to the market and the fleet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import structlog
import trio

from marketplace.clock import Clock
from marketplace.core.errors import MarketError
from marketplace.core.model import Assignment, WorkerKey
from marketplace.durability import StorageUnavailable
from marketplace.scheduler import MarketScheduler
from stratum.config import StratumConfig
from stratum.core.jobs import Job, MinerLink, Share, ShareNotRecorded
from stratum.core.shares import HASHES_PER_DIFF1, Algorithm
from stratum.core.templates import EmulatedChain, JobStream

#: Tag of the stream idle workers mine on (order ids look like ``o-000001``, never this).
IDLE_TAG: Final = "idle"
#: What a miner is told for a share submitted while the store fails (with code 20).
STORAGE_UNAVAILABLE: Final = "storage unavailable, retry"

log = structlog.get_logger("marketplace.bridge")


def estimate_hs(difficulty: float, target_share_interval_s: float) -> int:
    """The speed (H/s) at which a worker would send one share of ``difficulty`` per
    ``target_share_interval_s``: the start estimate vardiff implies."""
    if target_share_interval_s <= 0:
        raise ValueError("target_share_interval_s must be positive")
    return max(1, int(difficulty * HASHES_PER_DIFF1 / target_share_interval_s))


def order_of(source: str) -> str | None:
    """The order a share's job came from (``None`` for the idle stream or an unknown job)."""
    return None if source in ("", IDLE_TAG) else source


class MarketWorkSource:
    """A ``WorkSource`` handing out the market's orders as job streams (see the module doc)."""

    def __init__(
        self,
        *,
        scheduler: MarketScheduler,
        config: StratumConfig,
        clock: Clock | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._engine = scheduler.engine
        self._market = scheduler.market
        self._fleet = scheduler.fleet
        self._market.rules(config.algorithm)  # InvalidArgument if the market does not run it
        self.config = config
        # The node's one clock (the engine's unless given): jobs and the chain run on market time.
        self._clock = (clock or self._engine.clock).now_ms
        now = self._clock()
        self.chain = EmulatedChain(
            algorithm=config.algorithm,
            block_interval_ms=round(config.block_interval_s * 1000),
            now_ms=now,
        )
        self._extranonce_size = config.extranonce1_size + config.extranonce2_size
        self._streams: dict[str | None, JobStream] = {}
        #: Which connections mine on which stream (key: order id, ``None`` = idle).
        self._members: dict[str | None, dict[WorkerKey, MinerLink]] = {}
        self._where: dict[WorkerKey, str | None] = {}
        self._keys: dict[int, WorkerKey] = {}
        self._connecting: WorkerKey | None = None
        #: Jobs pushed outside ``connect`` (moves, intervals, blocks), for logs and tests.
        self.jobs_pushed = 0
        #: When every miner last got a new job (``run``'s interval counts from here).
        self._last_jobs_ms = now
        scheduler.add_rebalance_listener(self._on_moves)

    # ------------------------------------------------------------------ WorkSource

    @property
    def algorithm(self) -> Algorithm:
        return self.config.algorithm

    def connect(self, link: MinerLink) -> Job:
        """Join the worker to the market, rebalance, and return its first job (clean)."""
        key = WorkerKey(link.conn_id, link.account, link.worker, self.algorithm)
        if link.conn_id in self._keys:
            self._leave(self._keys[link.conn_id])
        estimate = estimate_hs(link.difficulty, self.config.target_share_interval_s)
        self._fleet.worker_joined(worker=key, estimate_hs=estimate, now_ms=self._clock())
        self._keys[link.conn_id] = key
        self._members.setdefault(None, {})[key] = link
        self._where[key] = None
        # The rebalance may move this worker too; its first job is the return value, so it
        # must not also be pushed.
        self._connecting = key
        try:
            self._scheduler.rebalance(self.algorithm)
        finally:
            self._connecting = None
        order_id = self._fleet.assignment(key)
        log.info(
            "bridge.connected",
            conn=link.conn_id,
            worker=f"{key.account}.{key.worker}",
            estimate_hs=estimate,
            order=order_id,
        )
        return self._fresh_job(order_id)

    def disconnect(self, link: MinerLink) -> None:
        """The connection is gone: the worker leaves the market, which rebalances. Idempotent."""
        key = self._keys.get(link.conn_id)
        if key is None:
            return
        self._leave(key)
        self._scheduler.rebalance(self.algorithm)

    def _leave(self, key: WorkerKey) -> None:
        del self._keys[key.conn_id]
        members = self._members.get(self._where.pop(key))
        if members is not None:
            members.pop(key, None)
        self._fleet.worker_left(worker=key, now_ms=self._clock())

    async def record_shares(self, shares: Sequence[Share]) -> None:
        """Journal the shares (each charged to the order of its job, if any) in one command
        and return once they are durable. Raises ``ShareNotRecorded`` while the store fails,
        ``JournalError`` if the journal failed otherwise (fatal for the node)."""
        market = self._market

        def command() -> None:
            for share in shares:
                if not market.has_account(share.account):
                    try:
                        market.ensure_account(account=share.account, now_ms=share.time_ms)
                    except MarketError:
                        log.warning("bridge.bad_account", account=share.account[:64])
                market.record_share(share, order_id=order_of(share.source))

        try:
            await self._engine.execute(command)
        except StorageUnavailable as refused:
            raise ShareNotRecorded(STORAGE_UNAVAILABLE) from refused
        sources: set[str] = set()
        for share in shares:
            if not share.accepted:
                continue
            key = self._keys.get(share.conn_id)
            if key is not None:
                self._fleet.share_accepted(
                    worker=key, difficulty=share.difficulty, time_ms=share.time_ms
                )
            sources.add(share.source)
        orders = [order_of(source) for source in sources]
        if any(order_id is not None and not market.order_active(order_id) for order_id in orders):
            # The budget ran out (or the order ended): move its workers now, not at the tick,
            # so they stop hashing for an order that no longer pays.
            self._scheduler.request_rebalance()

    # ------------------------------------------------------------------ jobs

    def _stream(self, order_id: str | None) -> JobStream:
        stream = self._streams.get(order_id)
        if stream is None:
            stream = JobStream(
                IDLE_TAG if order_id is None else order_id,
                chain=self.chain,
                extranonce_size=self._extranonce_size,
            )
            self._streams[order_id] = stream
        return stream

    def _fresh_job(self, order_id: str | None) -> Job:
        job = self._stream(order_id).next_job(self._clock())
        if not job.clean_jobs:
            job = msgspec.structs.replace(job, clean_jobs=True)
        return job

    def _on_moves(self, algorithm: Algorithm, moves: list[Assignment]) -> None:
        """Rebalance listener: move members between streams, push clean jobs at once."""
        if algorithm is not self.algorithm:
            return
        jobs: dict[str | None, Job] = {}
        for worker, order_id in moves:
            if self._keys.get(worker.conn_id) != worker:
                continue  # not one of ours (joined the market some other way)
            link = self._members[self._where[worker]].pop(worker)
            self._members.setdefault(order_id, {})[worker] = link
            self._where[worker] = order_id
            if worker == self._connecting:
                continue
            job = jobs.get(order_id)
            if job is None:
                job = jobs[order_id] = self._fresh_job(order_id)
            link.push_job(job)
            self.jobs_pushed += 1
        # Streams are kept (their job sequence must not restart), empty member lists are not.
        for order_id in [o for o, m in self._members.items() if not m and o is not None]:
            del self._members[order_id]
        log.debug("bridge.moved", moves=len(moves), streams=len(self._members))

    def members(self, order_id: str | None) -> list[MinerLink]:
        """The connections mining on ``order_id``'s stream (``None``: idle)."""
        return list(self._members.get(order_id, {}).values())

    def push_new_jobs(self) -> int:
        """Make a new job on every stream with miners and push it to them; return how many
        jobs were pushed. Jobs carry ``clean_jobs`` when the chain found a block."""
        now = self._clock()
        pushed = 0
        for order_id, members in list(self._members.items()):
            if not members:
                continue
            job = self._stream(order_id).next_job(now)
            for link in list(members.values()):
                link.push_job(job)
                pushed += 1
        self.jobs_pushed += pushed
        return pushed

    def next_due_ms(self) -> int:
        """When the next new job is due: ``job_interval_s`` after the last, or the emulated
        chain's next block if that comes first."""
        interval_ms = round(self.config.job_interval_s * 1000)
        return min(self._last_jobs_ms + interval_ms, self.chain.next_block_ms)

    def catch_up(self) -> int:
        """Bring the emulated chain up to now and give every miner one new job (clean when a
        block was found since the last); return how many were pushed. However much time an
        operator's advance skipped, only the latest block and job matter, so it runs once."""
        now = self._clock()
        block = self.chain.advance(now)
        pushed = self.push_new_jobs()
        self._last_jobs_ms = now
        log.debug("bridge.jobs", block=block, height=self.chain.tip.height, pushed=pushed)
        return pushed

    def new_block(self) -> int:
        """The emulated chain finds a block now: every miner gets a clean job at once; return
        how many were pushed."""
        self.chain.find_block(self._clock())
        return self.catch_up()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Push a job to every miner at least every ``job_interval_s`` and on every emulated
        block, until cancelled."""
        task_status.started()
        while True:
            wait_ms = self.next_due_ms() - self._clock()
            if wait_ms > 0:
                # An advance that catches up meanwhile moves the due time: look again then.
                await trio.sleep(wait_ms / 1000)
                continue
            self.catch_up()
