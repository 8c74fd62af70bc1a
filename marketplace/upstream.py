"""The proxy's upstream sessions: one Stratum connection per active order with a buyer's pool.

Theory of operation
-------------------
``UpstreamManager`` is the trio driver of proxy mode (proxy.md). For every active order that
names a pool it runs one task that keeps one connection to that pool, through the project's
own Stratum client (``stratum.client``), logged in the way ``pool_login`` does it (the host
resolved and every address checked against the operator's ``--pool-allow`` before connecting,
``hashmarket/<version>``, version rolling, the pool's username and unsealed password), and
then follows what the pool says
(``set_difficulty``, ``notify``, ``set_extranonce``, ``set_version_mask``, ``client.reconnect``,
``client.show_message``). What it learns goes into the order's ``Relay`` (``core/relay.py``,
pure), and from there to the order's workers through the bridge of the order's algorithm.

- Status: a session counts as up once authorized and given a job (the relay comes ``alive``
  and the scheduler rebalances at once, so workers come). A loss, a refusal, garbage, a layout
  no worker can use, no job within ``notify_timeout_s``, or ``REJECT_STREAK`` refused shares in
  a row make the relay ``dead`` with a ``last_error`` a buyer can act on; the scheduler
  rebalances at once (the order leaves the allocation queue, so its workers move), and the task
  connects again after a backoff (1 s doubling to 60 s; reset once a session was alive).
- Forwarding: the bridge hands over each accepted share whose hash meets the pool's target
  (``forward``, never blocking: the miner's reply does not wait for the pool). Each session has
  a bounded queue and a task that submits them concurrently (at most ``in_flight`` awaiting an
  answer); every answer, or its absence, is journaled as ``PoolAnswered`` (a charged share the
  pool refused is refunded at settlement). Shares that cannot be sent are answered "not
  forwarded" at once.
- The placeholder rule: every ``check_interval_s`` each relay's dead time in the current hour of
  its order's life is checked; over half an hour, the market cancels the order with the reason.
- Sessions follow the market: the manager listens to the engine's commits and starts, moves or
  stops sessions when orders are created, set to another pool, or end.

Seams for fault injection (issue 11's ``pool`` target): ``drop_all`` closes every upstream
connection (each reconnects with its backoff), and ``forwarding.delay`` (order id -> seconds)
holds each forwarded share back before it is sent.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import structlog
import trio

from marketplace.api.wire import PoolVerifyOut
from marketplace.clock import Clock
from marketplace.core.errors import MarketError
from marketplace.core.events import (
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPoolSet,
    ShareRecorded,
)
from marketplace.core.pool_hosts import AllowList
from marketplace.core.pools import PoolAccess, PoolRegistry
from marketplace.core.relay import Forward, Relay, RelayError, RelayView
from marketplace.durability import StorageUnavailable
from marketplace.engine import Committed
from marketplace.forwarding import Answer, Forwarder, Queued
from marketplace.pool_login import (
    FAILURES,
    UpstreamConfig,
    authorize,
    checked_address,
    configure,
    subscribe,
    verify_pool,
    why,
)
from marketplace.scheduler import MarketScheduler
from stratum.client import (
    ConnectionLost,
    StratumClient,
    open_stratum_client,
)
from stratum.core.client_events import (
    ConnectionClosed,
    NewDifficulty,
    NewExtranonce,
    NewJob,
    NewVersionMask,
    ReconnectRequested,
    ShowMessage,
)
from stratum.core.jobs import Job
from stratum.core.shares import Algorithm

log = structlog.get_logger("marketplace.upstream")


class RelayListener(Protocol):
    """What the manager tells a market's bridge (``MarketWorkSource``)."""

    @property
    def algorithm(self) -> Algorithm: ...

    def relay_job(self, order_id: str, job: Job) -> None:
        """A new job of the order's pool, for its workers."""
        ...

    def relay_layout(self, order_id: str, job: Job) -> None:
        """The pool changed the layout; move the order's workers to it with ``job``."""
        ...


class _Redirect(Exception):
    """The pool asked us (``client.reconnect``) to connect elsewhere."""

    def __init__(self, host: str, port: int, wait_s: float) -> None:
        super().__init__(f"the pool asked us to reconnect to {host}:{port}")
        self.host, self.port, self.wait_s = host, port, wait_s


@dataclass(eq=False)
class _Session:
    """One order's running upstream task."""

    order_id: str
    pool_id: str
    relay: Relay
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: The current connection's scope and queue (``None`` between connections).
    connection: trio.CancelScope | None = None
    queue: trio.MemorySendChannel[Queued] | None = None
    drop_reason: str | None = None
    redirect: tuple[str, int] | None = None


class UpstreamManager:
    """Every order's upstream session (see the module doc)."""

    def __init__(
        self,
        *,
        scheduler: MarketScheduler,
        pools: PoolRegistry,
        allow: AllowList,
        config: UpstreamConfig | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._engine = scheduler.engine
        self._market = scheduler.market
        self._pools = pools
        self.allow = allow
        self.config = config or UpstreamConfig()
        self._now = (clock or self._engine.clock).now_ms
        self._sessions: dict[str, _Session] = {}
        self._listeners: dict[Algorithm, RelayListener] = {}
        self._nursery: trio.Nursery | None = None
        #: Answers "not forwarded" waiting to be journaled together (``_not_forwarded``).
        self._unsent: list[Answer] = []
        self._seq_bases = itertools.count(1)
        #: Sends the shares and journals the answers (its ``delay`` is a fault seam).
        self.forwarding = Forwarder(
            engine=self._engine, market=self._market, config=self.config, now=self._now
        )
        scheduler.set_alive(self.alive)
        self._engine.add_commit_listener(self._on_commit)
        # After a storage fault the market is put back to the journal's state: orders that were
        # not stored are gone, so the sessions follow the market again.
        self._engine.add_rebuild_listener(self.sync)

    # ------------------------------------------------------------------ reads

    def relay(self, order_id: str) -> Relay | None:
        """The relay of ``order_id``'s running session, if any."""
        session = self._sessions.get(order_id)
        return None if session is None else session.relay

    def relay_view(self, order_id: str) -> RelayView | None:
        """``RelayFacts``: the order's upstream now."""
        relay = self.relay(order_id)
        return None if relay is None else relay.view()

    def alive(self, order_id: str) -> bool:
        """Whether ``order_id``'s pool session is up (the allocation's predicate)."""
        relay = self.relay(order_id)
        return relay is not None and relay.alive

    def add_listener(self, listener: RelayListener) -> None:
        """Tell ``listener`` about the jobs and layouts of its algorithm's orders."""
        self._listeners[listener.algorithm] = listener

    # ------------------------------------------------------------------ the market's orders

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every session and the placeholder checks until cancelled; started with
        ``nursery.start`` after the engine's restore."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.sync()
            nursery.start_soon(self._watch)
            task_status.started()
            await trio.sleep_forever()

    def sync(self) -> None:
        """Start, restart or stop sessions so that exactly the active orders with a pool have
        one, for the pool they name now."""
        if self._nursery is None:
            return
        wanted = {
            order.id: order.pool_id
            for active in self._market.book.active.values()
            for order in active.values()
            if order.pool_id is not None
        }
        for order_id, session in list(self._sessions.items()):
            if wanted.get(order_id) != session.pool_id:
                self._stop(session)
        for order_id, pool_id in wanted.items():
            if order_id not in self._sessions and pool_id is not None:
                self._start(order_id, pool_id)

    def _start(self, order_id: str, pool_id: str) -> None:
        assert self._nursery is not None
        order = self._market.book.orders[order_id]
        relay = Relay(
            order_id=order_id,
            algorithm=order.algorithm,
            created_ms=order.created_ms,
            now_ms=self._now(),
            first_seq=next(self._seq_bases) << 32,
        )
        session = _Session(order_id=order_id, pool_id=pool_id, relay=relay)
        self._sessions[order_id] = session
        log.info("upstream.started", order=order_id, pool=pool_id)
        self._nursery.start_soon(self._run_session, session, name=f"upstream-{order_id}")

    def _stop(self, session: _Session) -> None:
        del self._sessions[session.order_id]
        session.scope.cancel()
        log.info("upstream.stopped", order=session.order_id, pool=session.pool_id)
        self._rebalance(session.relay)

    def _on_commit(self, committed: list[Committed]) -> None:
        sessions = self._sessions
        for item in committed:
            event = item.event
            # Shares first: nearly every event is one (a commit holds a batch of them).
            if type(event) is ShareRecorded:
                if event.order_id not in sessions or self._market.order_active(event.order_id):
                    continue
            elif not isinstance(event, OrderCreated | OrderPoolSet | OrderCancelled | OrderExpired):
                continue
            self.sync()
            return

    async def _watch(self) -> None:
        """The placeholder rule, every ``check_interval_s``."""
        while True:
            await trio.sleep(self.config.check_interval_s)
            now = self._now()
            for session in list(self._sessions.values()):
                reason = session.relay.cancel_reason(now)
                if reason is None:
                    continue
                log.warning("upstream.placeholder_cancel", order=session.order_id, reason=reason)
                await self._cancel(session.order_id, reason)

    async def _cancel(self, order_id: str, reason: str) -> None:
        def command() -> None:
            self._market.cancel_for_pool(order_id=order_id, reason=reason, now_ms=self._now())

        # It ended meanwhile, or the store fails (the next check tries again).
        with contextlib.suppress(MarketError, StorageUnavailable):
            await self._engine.execute(command)

    # ------------------------------------------------------------------ fault seams

    def drop_all(
        self,
        reason: str = "the connection to the pool was dropped",
        *,
        algorithm: Algorithm | None = None,
    ) -> int:
        """Close every upstream connection now (those of ``algorithm``'s orders, if given;
        each reconnects after its backoff); how many were open."""
        dropped = 0
        for session in self._sessions.values():
            if algorithm is not None and session.relay.algorithm is not algorithm:
                continue
            if session.connection is not None:
                self._drop(session, reason)
                dropped += 1
        return dropped

    # ------------------------------------------------------------------ one session

    async def _run_session(self, session: _Session) -> None:
        # Started from whatever command made the order: its log context is not this task's.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(order=session.order_id, pool=session.pool_id)
        config = self.config
        delay = config.backoff_initial_s
        with session.scope:
            while True:
                redirect = session.redirect
                try:
                    was_alive = await self._connect_once(session)
                except _Redirect as moved:
                    session.redirect = (moved.host, moved.port)
                    await trio.sleep(max(0.0, moved.wait_s))
                    continue
                if redirect is not None and session.redirect == redirect:
                    session.redirect = None  # a redirect is followed once
                if was_alive:
                    delay = config.backoff_initial_s
                log.info("upstream.backoff", order=session.order_id, delay_s=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, config.backoff_max_s)

    async def _connect_once(self, session: _Session) -> bool:
        """One connection, from resolve to loss; whether it was alive at some point. Raises
        ``_Redirect`` when the pool asked to be reconnected elsewhere."""
        relay = session.relay
        relay.begin()
        error = "the connection to the pool ended"
        reached_alive = False
        send, receive = trio.open_memory_channel[Queued](self.config.queue_size)
        opened: StratumClient | None = None
        try:
            with trio.CancelScope() as connection:
                session.connection = connection
                access = self._pools.access(session.pool_id)
                host, port = session.redirect or (access.host, access.port)
                address = await checked_address(host, port, allow=self.allow)
                client_config = self.config.client()
                async with open_stratum_client(address, port, config=client_config) as client:
                    opened = client
                    await subscribe(client, relay)
                    await configure(client, relay, self.config)
                    await authorize(client, access)
                    session.queue = send
                    # The pool's fault ends the session as itself, not in a group of one.
                    failure: Exception | None = None
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            partial(
                                self.forwarding.run,
                                username=access.username,
                                relay=relay,
                                client=client,
                                receive=receive,
                                drop=partial(self._drop, session),
                            )
                        )
                        try:
                            reached_alive = await self._follow(session, client)
                        except Exception as exc:
                            failure = exc
                        nursery.cancel_scope.cancel()
                    if failure is not None:
                        raise failure
            if session.drop_reason is not None:
                error = session.drop_reason
        except _Redirect:
            error = "the pool asked us to reconnect elsewhere"
            raise
        except FAILURES as exc:
            error = why(exc, opened, self.config.request_timeout_s)
        finally:
            # Cancelled from outside (the order ended, the node stops): not a loss.
            closing = trio.current_effective_deadline() == -math.inf
            reached_alive = reached_alive or relay.status.value == "alive"
            session.connection = session.queue = None
            send.close()
            if closing:
                error = "the order's upstream session was closed"
            was_alive = relay.fail(error, now_ms=self._now())
            if closing:
                log.info("upstream.closed", order=session.order_id)
            else:
                log.warning(
                    "upstream.down", order=session.order_id, error=error, was_alive=was_alive
                )
            if was_alive:
                self._rebalance(relay)
            await self.forwarding.answer_unsent(
                receive, "not forwarded: the connection to the pool ended"
            )
        return reached_alive

    async def _follow(self, session: _Session, client: StratumClient) -> bool:
        """Follow the pool's notifications until the connection ends (raises); True once the
        relay came alive. Raises ``RelayError`` for a pool that sends no job in time or
        breaks the layout, ``_Redirect``, ``ConnectionLost``."""
        relay = session.relay
        listener = self._listeners.get(relay.algorithm)
        deadline = trio.current_time() + self.config.notify_timeout_s
        while True:
            with trio.move_on_at(math.inf if relay.alive else deadline):
                try:
                    event = await client.events.receive()
                except trio.EndOfChannel:
                    raise ConnectionLost(client.close_reason or "closed") from None
            if not relay.alive and trio.current_time() >= deadline:
                raise RelayError(f"no notify within {self.config.notify_timeout_s:g} s")
            if isinstance(event, NewJob):
                job, came_alive = relay.notified(event, now_ms=self._now())
                if came_alive:
                    log.info("upstream.alive", order=session.order_id, session=relay.session)
                    self._rebalance(relay)
                elif listener is not None and relay.take_relayout():
                    listener.relay_layout(session.order_id, job)
                elif listener is not None:
                    listener.relay_job(session.order_id, job)
            elif isinstance(event, NewDifficulty):
                relay.set_difficulty(event.difficulty)
            elif isinstance(event, NewExtranonce):
                relay.set_extranonce(
                    extranonce1=event.extranonce1, extranonce2_size=event.extranonce2_size
                )
            elif isinstance(event, NewVersionMask):
                relay.set_version_mask(int(event.mask, 16))
            elif isinstance(event, ReconnectRequested):
                current = session.redirect or (None, None)
                host = event.host or current[0] or self._pools.access(session.pool_id).host
                port = event.port or current[1] or self._pools.access(session.pool_id).port
                raise _Redirect(host, port, event.wait_s)
            elif isinstance(event, ShowMessage):
                log.info("upstream.message", order=session.order_id, text=event.text[:200])
            elif isinstance(event, ConnectionClosed):
                raise ConnectionLost("end of stream")

    def _rebalance(self, relay: Relay) -> None:
        self._scheduler.rebalance(relay.algorithm)

    # ------------------------------------------------------------------ forwarding

    def forward(self, forward: Forward, *, price_msat: int | None) -> None:
        """Queue ``forward`` for its order's pool (never blocks). A share that cannot be
        queued is answered "not forwarded" at once."""
        session = self._sessions.get(forward.order_id)
        queued = Queued(forward, price_msat or 0, trio.current_time())
        reason = "not forwarded: the connection to the pool is down"
        queue = None if session is None else session.queue
        if queue is not None and session is not None and session.relay.session == forward.session:
            try:
                queue.send_nowait(queued)
                return
            except trio.WouldBlock:
                reason = "not forwarded: too many shares waiting for the pool"
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
        self._not_forwarded((queued, False, reason))

    def _not_forwarded(self, answer: Answer) -> None:
        """Journal ``answer`` with the others of this moment: the bridge forwards a whole
        batch of shares in one go, and when the pool cannot take them (saturated or down) a
        command per share would take the engine from the shares themselves."""
        if self._nursery is None:
            return
        self._unsent.append(answer)
        if len(self._unsent) == 1:
            self._nursery.start_soon(self._record_unsent)

    async def _record_unsent(self) -> None:
        await trio.lowlevel.checkpoint()  # the rest of the batch being forwarded joins
        answers, self._unsent = self._unsent, []
        await self.forwarding.record(answers)

    def _drop(self, session: _Session, reason: str) -> None:
        """End ``session``'s connection now, saying why (it reconnects after its backoff)."""
        if session.connection is not None:
            session.drop_reason = reason
            session.connection.cancel()

    # ------------------------------------------------------------------ pool.verify

    async def verify(self, access: PoolAccess) -> PoolVerifyOut:
        """``pool.verify`` (``pool_login.verify_pool``) under this node's allow list."""
        return await verify_pool(access, allow=self.allow, config=self.config)
