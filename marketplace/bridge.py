"""The bridge between the order book and a Stratum server: orders become job streams.

``MarketWorkSource`` implements ``stratum.core.jobs.WorkSource`` for one algorithm. Every order
that holds workers has its own job stream, so every share is attributable to exactly one
order: on the emulated chain a ``JobStream`` (tag = order id, so its coinbase carries the order
id; workers that no order wants share an ``idle`` stream; all build on one ``EmulatedChain``),
and for an order with a buyer's pool the jobs its pool sends, mirrored by the proxy
(``marketplace.upstream``, through the order's ``Relay``).

- ``connect(link)``: the connection joins the fleet (``Fleet.worker_joined``, estimate from its
  difficulty: ``difficulty * hashes_per_diff1 / target_share_interval`` H/s), the scheduler
  rebalances and the first job comes from the stream of the order it now serves.
- Moves: the bridge listens to the scheduler's rebalances; every moved worker gets a fresh job
  from its new stream at once, with ``clean_jobs=True`` so it drops the old order's work.
- Layouts: a worker on a pool order works with the extranonce layout of its slot on that
  order's pool connection (``Relay.assign``); on the chain, with its own. A move between two
  layouts is ``link.change_layout`` (``mining.set_extranonce``) for a miner that asked for it;
  any other is told to reconnect (``client.reconnect``), keeps its place in the fleet while it
  does (``core.transits``, for ``transit_s``), is given its new layout when it resumes its session
  (``layout_for``) and takes over its place (``Fleet.worker_resumed``).
- ``record_shares(shares)``: one ``await engine.execute(...)`` whose command runs
  ``market.record_share(share, order_id=...)`` for each of a connection's batch, the order taken
  from the job's ``source``, so the shares are journaled (records in a shared group commit)
  before the server replies ``true``; then each accepted share's work goes to the connection's
  speed estimate (``Fleet.share_accepted``), which is not journaled. While the store fails the
  engine refuses (``StorageUnavailable``) and the miner is answered
  ``[20, "storage unavailable, retry"]`` (``ShareNotRecorded``); it keeps its jobs. A share
  of a pool order is charged only if its pool can still take it (``Relay.route``, per share: a
  batch may hold shares of a pool order and of others), and one that meets the pool's target
  is handed to the proxy to forward once the batch is durable, which never delays the reply.
- ``run``: a new job for every worker at least every ``job_interval_s``, and at once (with
  ``clean_jobs``) when the emulated chain finds a block. ``catch_up`` is that step run at once
  (after an operator's advance of market time: only the latest job and block matter, so once),
  ``new_block`` makes the chain find a block now (``admin.block.new``).

Everything here runs in the trio thread; ``connect``, ``disconnect`` and the move handler are
synchronous, so they are atomic with respect to the market and the fleet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import msgspec
import structlog
import trio

from marketplace.clock import Clock
from marketplace.core.errors import MarketError
from marketplace.core.model import Assignment, WorkerKey
from marketplace.core.relay import NOT_BILLABLE, Forward, Relay, RelayError, Route
from marketplace.core.transits import Transit, Transits
from marketplace.core.work import hashes_per_diff1
from marketplace.durability import StorageUnavailable
from marketplace.scheduler import MarketScheduler
from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, MinerLink, Share, ShareNotRecorded
from stratum.core.shares import Algorithm
from stratum.core.templates import EmulatedChain, JobStream

#: Tag of the stream idle workers mine on (order ids look like ``o-000001``, never this).
IDLE_TAG: Final = "idle"
#: What a miner is told for a share submitted while the store fails (with code 20).
STORAGE_UNAVAILABLE: Final = "storage unavailable, retry"

log = structlog.get_logger("marketplace.bridge")


def estimate_hs(
    difficulty: float, target_share_interval_s: float, algorithm: Algorithm = Algorithm.SHA256D
) -> int:
    """The speed (H/s) at which a worker of ``algorithm`` would send one share of
    ``difficulty`` per ``target_share_interval_s``: the start estimate vardiff implies."""
    if target_share_interval_s <= 0:
        raise ValueError("target_share_interval_s must be positive")
    hashes = hashes_per_diff1(algorithm)
    return max(1, int(difficulty * hashes / target_share_interval_s))


def order_of(source: str) -> str | None:
    """The order a share's job came from (``None`` for the idle stream or an unknown job)."""
    return None if source in ("", IDLE_TAG) else source


def same_extranonce(a: Layout | None, b: Layout | None) -> bool:
    """Whether two layouts give a miner the same extranonce (``None``: its own)."""
    if a is None or b is None:
        return a is b
    return (a.extranonce1, a.extranonce2_size) == (b.extranonce1, b.extranonce2_size)


class Upstreams(Protocol):
    """What the bridge needs of the proxy (``marketplace.upstream.UpstreamManager``)."""

    def relay(self, order_id: str) -> Relay | None: ...

    def forward(self, forward: Forward, *, price_msat: int | None) -> None: ...


class MarketWorkSource:
    """A ``WorkSource`` handing out the market's orders as job streams (see the module doc)."""

    def __init__(
        self,
        *,
        scheduler: MarketScheduler,
        config: StratumConfig,
        clock: Clock | None = None,
        upstreams: Upstreams | None = None,
        transit_s: float = 15.0,
    ) -> None:
        self._scheduler = scheduler
        self._engine = scheduler.engine
        self._market = scheduler.market
        self._fleet = scheduler.fleet
        self._market.rules(config.algorithm)  # InvalidArgument if the market does not run it
        self.config = config
        self._upstreams = upstreams
        self._transit_ms = round(transit_s * 1000)
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
        #: The layout each connection works with now (absent: its own).
        self._layouts: dict[WorkerKey, Layout] = {}
        self._transits = Transits()
        self._connecting: WorkerKey | None = None
        #: Jobs pushed outside ``connect`` (moves, intervals, blocks), for logs and tests.
        self.jobs_pushed = 0
        #: When every miner last got a new job (``run``'s interval counts from here).
        self._last_jobs_ms = now
        #: Moves that needed ``client.reconnect`` (the miner could not take a new extranonce).
        self.reconnects = 0
        scheduler.add_rebalance_listener(self._on_moves)

    # ------------------------------------------------------------------ WorkSource

    @property
    def algorithm(self) -> Algorithm:
        return self.config.algorithm

    def layout_for(self, session_id: bytes) -> Layout | None:
        """The layout reserved for a miner resuming ``session_id`` after a reconnect we asked
        for; its own otherwise."""
        return self._transits.layout_for(session_id)

    def connect(self, link: MinerLink) -> Job | None:
        """Join the worker to the market (or give it back its place after a reconnect we asked
        for), rebalance, and send its first job (see the module doc)."""
        key = WorkerKey(link.conn_id, link.account, link.worker, self.algorithm)
        if link.conn_id in self._keys:
            self._leave(self._keys[link.conn_id])
        session_id = link.session_id
        layout = self._transits.given(session_id)
        transit = self._transits.take(session_id)
        if transit is not None:
            if (transit.key.account, transit.key.worker) == (key.account, key.worker):
                return self._resume(key, link, transit, layout)
            self._expire(transit)
        estimate = estimate_hs(link.difficulty, self.config.target_share_interval_s, self.algorithm)
        self._fleet.worker_joined(worker=key, estimate_hs=estimate, now_ms=self._clock())
        self._register(key, link, None, layout)
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
        return self._arrive(key, link, order_id, first=True)

    def _resume(
        self, key: WorkerKey, link: MinerLink, transit: Transit, layout: Layout | None
    ) -> Job | None:
        """A worker we told to reconnect is back: it takes over its place in the fleet."""
        self._fleet.worker_resumed(old=transit.key, new=key)
        relay = self._relay(transit.order_id)
        if relay is not None:
            relay.rekey(transit.key, key)
        order_id = self._fleet.assignment(key)
        self._register(key, link, order_id, layout)
        log.info("bridge.resumed", conn=link.conn_id, worker=key.worker, order=order_id)
        return self._arrive(key, link, order_id, first=True)

    def _register(
        self, key: WorkerKey, link: MinerLink, order_id: str | None, layout: Layout | None
    ) -> None:
        self._keys[key.conn_id] = key
        self._members.setdefault(order_id, {})[key] = link
        self._where[key] = order_id
        if layout is not None:
            self._layouts[key] = layout

    def disconnect(self, link: MinerLink) -> None:
        """The connection is gone: the worker leaves the market, which rebalances; one we told
        to reconnect keeps its place until it resumes. Idempotent."""
        key = self._keys.get(link.conn_id)
        if key is None:
            return
        self._transits.given(link.session_id)
        if self._transits.holds(key, link.session_id):
            self._forget(key)
            return
        self._leave(key)
        self._scheduler.rebalance(self.algorithm)

    def _forget(self, key: WorkerKey) -> None:
        del self._keys[key.conn_id]
        self._layouts.pop(key, None)
        members = self._members.get(self._where.pop(key))
        if members is not None:
            members.pop(key, None)

    def _leave(self, key: WorkerKey) -> None:
        relay = self._relay(self._where.get(key))
        if relay is not None:
            relay.release(key)
        self._forget(key)
        self._fleet.worker_left(worker=key, now_ms=self._clock())

    def _expire(self, transit: Transit) -> None:
        """A worker told to reconnect did not come back (in time, or as itself)."""
        relay = self._relay(transit.order_id)
        if relay is not None:
            relay.release(transit.key)
        self._fleet.worker_left(worker=transit.key, now_ms=self._clock())

    def expire_transits(self) -> int:
        """Give up the places of workers that did not resume in time; how many."""
        late = self._transits.expired(self._clock())
        for transit in late:
            self._expire(transit)
        if late:
            self._scheduler.rebalance(self.algorithm)
        return len(late)

    async def record_shares(
        self, shares: Sequence[Share], *, also: Callable[[], None] | None = None
    ) -> None:
        """Journal the shares (each charged to the order of its job, if any) in one command,
        with ``also()`` run inside it (a gateway's share ids taken: ``marketplace.gateways``),
        and return once they are durable; then forward those that meet their order's pool's
        target to it. Raises ``ShareNotRecorded`` while the store fails (then none was),
        ``JournalError`` if the journal failed otherwise (fatal for the node)."""
        market = self._market
        # Where each accepted share of a pool order goes (charged? forwarded?), by its index
        # in the batch; a share of any other order is charged as usual.
        routes: dict[int, Route] = {}
        for index, share in enumerate(shares):
            order_id = order_of(share.source)
            if order_id is not None and share.accepted and market.pool_of(order_id) is not None:
                relay = self._relay(order_id)
                routes[index] = NOT_BILLABLE if relay is None else relay.route(share)

        def command() -> list[int | None]:
            prices: list[int | None] = []
            for index, share in enumerate(shares):
                if not market.has_account(share.account):
                    try:
                        market.ensure_account(account=share.account, now_ms=share.time_ms)
                    except MarketError:
                        log.warning("bridge.bad_account", account=share.account[:64])
                route = routes.get(index)
                billable = route is None or route.billable
                order_id = order_of(share.source)
                prices.append(market.record_share(share, order_id=order_id, billable=billable))
            if also is not None:
                also()
            return prices

        try:
            prices = await self._engine.execute(command)
        except StorageUnavailable as refused:
            raise ShareNotRecorded(STORAGE_UNAVAILABLE) from refused
        if self._upstreams is not None:
            for index, route in routes.items():
                if route.forward is not None:
                    self._upstreams.forward(route.forward, price_msat=prices[index])
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

    # ------------------------------------------------------------------ jobs and layouts

    def _relay(self, order_id: str | None) -> Relay | None:
        if order_id is None or self._upstreams is None:
            return None
        return self._upstreams.relay(order_id)

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

    def _work(self, key: WorkerKey, order_id: str | None) -> tuple[Job, Layout | None]:
        """The job and layout a worker gets on ``order_id``: its pool's current job and its
        slot's layout for a pool order (the idle stream while the pool has no job), a fresh
        job of the order's stream on the chain."""
        if order_id is not None and self._market.pool_of(order_id) is not None:
            relay = self._relay(order_id)
            if relay is not None and relay.current is not None:
                try:
                    layout = relay.assign(key)
                except RelayError as error:
                    log.warning("bridge.no_slot", order=order_id, error=str(error))
                else:
                    return msgspec.structs.replace(relay.current, clean_jobs=True), layout
            return self._fresh_job(None), None
        return self._fresh_job(order_id), None

    def _arrive(
        self,
        key: WorkerKey,
        link: MinerLink,
        order_id: str | None,
        *,
        first: bool = False,
        work: tuple[Job, Layout | None] | None = None,
    ) -> Job | None:
        """Give ``link`` the work of ``order_id``: the job to return when it is its ``first``,
        else ``None`` (sent here, or the miner was told to reconnect)."""
        job, layout = work or self._work(key, order_id)
        current = self._layouts.get(key)
        if same_extranonce(current, layout):
            if first and (current is None or current == layout):
                return job
            if current is None or current == layout:
                link.push_job(job)
            else:
                link.change_layout(layout, job)  # only the version bits change
        elif not link.change_layout(layout, job):
            self._reconnect(key, link, order_id, layout)
            return None
        if layout is None:
            self._layouts.pop(key, None)
        else:
            self._layouts[key] = layout
        return None

    def _reconnect(
        self, key: WorkerKey, link: MinerLink, order_id: str | None, layout: Layout | None
    ) -> None:
        """Tell a miner that cannot take a new extranonce in place to reconnect, keeping its
        place until it resumes with its session id (``layout_for`` then gives it
        ``layout``)."""
        until = self._clock() + self._transit_ms
        self._transits.begin(
            link.session_id, key=key, order_id=order_id, layout=layout, until_ms=until
        )
        self.reconnects += 1
        log.info("bridge.reconnecting", conn=key.conn_id, worker=key.worker, order=order_id)
        link.reconnect()

    def _retarget(self, key: WorkerKey, order_id: str | None) -> None:
        """A worker in transit was moved by a rebalance: it resumes on ``order_id``."""
        transit = self._transits.of(key)
        assert transit is not None
        old = self._relay(transit.order_id)
        if old is not None and transit.order_id != order_id:
            old.release(key)
        transit.order_id = order_id
        transit.layout = self._work(key, order_id)[1]

    def _on_moves(self, algorithm: Algorithm, moves: list[Assignment]) -> None:
        """Rebalance listener: move members between streams, give them their new work."""
        if algorithm is not self.algorithm:
            return
        jobs: dict[str | None, Job] = {}
        for worker, order_id in moves:
            if self._transits.of(worker) is not None:
                self._retarget(worker, order_id)
                continue
            if self._keys.get(worker.conn_id) != worker:
                continue  # not one of ours (joined the market some other way)
            old = self._where[worker]
            link = self._members[old].pop(worker)
            self._members.setdefault(order_id, {})[worker] = link
            self._where[worker] = order_id
            relay = self._relay(old)
            if relay is not None:
                relay.release(worker)
            if worker == self._connecting:
                continue
            if self._market.pool_of(order_id or "") is None:
                job = jobs.get(order_id)
                if job is None:
                    job = jobs[order_id] = self._fresh_job(order_id)
                self._arrive(worker, link, order_id, work=(job, None))
            else:
                self._arrive(worker, link, order_id)
            self.jobs_pushed += 1
        # Streams are kept (their job sequence must not restart), empty member lists are not.
        for order_id in [o for o, m in self._members.items() if not m and o is not None]:
            del self._members[order_id]
        log.debug("bridge.moved", moves=len(moves), streams=len(self._members))

    def relay_job(self, order_id: str, job: Job) -> None:
        """A new job from ``order_id``'s pool: to every worker on the order."""
        for link in self.members(order_id):
            link.push_job(job)
            self.jobs_pushed += 1

    def relay_layout(self, order_id: str, job: Job) -> None:
        """``order_id``'s pool changed the layout: move its workers to it, with ``job``."""
        relay = self._relay(order_id)
        if relay is None:
            return
        for key, link in list(self._members.get(order_id, {}).items()):
            layout = relay.assign(key)
            self._arrive(key, link, order_id, work=(job, layout))

    def members(self, order_id: str | None) -> list[MinerLink]:
        """The connections mining on ``order_id``'s stream (``None``: idle)."""
        return list(self._members.get(order_id, {}).values())

    def push_new_jobs(self) -> int:
        """Make a new job on every stream with miners and push it to them; return how many
        jobs were pushed. Jobs carry ``clean_jobs`` when the chain found a block. A pool
        order's workers get its pool's current job again (under a new id: miners give up on
        a job id older than 120 s) when the pool sent none for an interval."""
        now = self._clock()
        interval_ms = round(self.config.job_interval_s * 1000)
        pushed = 0
        for order_id, members in list(self._members.items()):
            if not members:
                continue
            if order_id is not None and self._market.pool_of(order_id) is not None:
                relay = self._relay(order_id)
                if relay is None or relay.current is None or now - relay.job_ms < interval_ms:
                    continue
                job = msgspec.structs.replace(relay.current, clean_jobs=False)
            else:
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
        block, and give up on workers that did not come back from a reconnect, until
        cancelled."""
        task_status.started()
        while True:
            now = self._clock()
            due = self.next_due_ms()
            wake = min(due, self._transits.next_deadline_ms() or due)
            if now < wake:
                # An advance that catches up meanwhile moves the due time: look again then.
                await trio.sleep((wake - now) / 1000)
                continue
            self.expire_transits()
            if now < due:
                continue
            self.catch_up()
