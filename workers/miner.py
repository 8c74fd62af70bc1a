"""The worker's trio main: K Stratum connections (the fleet) sharing one pool of processes.

Each fleet slot is one task that connects, subscribes (resuming its previous session id),
asks for ``mining.set_extranonce``, authorizes its worker name and then turns events into work
for the hashing processes: a ``mining.notify`` becomes a ``Work`` at the difficulty in force
when the job arrived (cpuminer's rule), a ``mining.set_extranonce`` stops the slot until the
next job (which is sure to use the new extranonce1), a ``client.reconnect`` moves the slot to
the given address. Shares the processes find on still-valid work are submitted concurrently,
each awaiting its verdict, which is counted per reason. When a connection ends the slot's work
is withdrawn at once (its shares could only be stale) and the slot reconnects after an
exponential, jittered, capped backoff. A status event (``worker.status``) per slot every
``status_interval`` seconds shows speed, shares and difficulty, like cpuminer's lines.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog
import trio

from stratum.client import (
    ClientConfig,
    ConnectionLost,
    RequestRejected,
    StratumClient,
    StratumClientError,
    open_stratum_client,
)
from stratum.core.client_events import (
    ConnectionClosed,
    NewDifficulty,
    NewExtranonce,
    NewJob,
    ReconnectRequested,
    ShowMessage,
    Subscribed,
    UnknownNotification,
)
from stratum.core.client_protocol import RemoteProtocolError
from stratum.core.shares import Algorithm
from stratum.core.templates import order_from_coinbase
from workers.hasher import Found
from workers.hashing import Work
from workers.processes import HashingPool

#: How long a stopping worker waits for the answers to shares it already sent.
_DRAIN_S: Final = 2.0

log = structlog.get_logger("workers.miner")


@dataclass(frozen=True, kw_only=True)
class MinerConfig:
    """Everything one ``hashmarket worker`` run needs (built from the CLI by ``workers.cli``)."""

    host: str
    port: int
    user: str
    password: str = "x"
    algorithm: Algorithm = Algorithm.SHA256D
    processes: int = 1
    fleet: int = 1
    duration: float | None = None
    status_interval: float = 5.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    chunk_seconds: float = 0.02
    client: ClientConfig = field(default_factory=ClientConfig)

    def usernames(self) -> list[str]:
        """The fleet's worker names: the ``--user`` itself, or ``ACCOUNT.WORKER-1..K``."""
        if self.fleet <= 1:
            return [self.user]
        account, _, worker = self.user.partition(".")
        base = (worker or "worker")[:28]
        return [f"{account}.{base}-{i}" for i in range(1, self.fleet + 1)]


class Backoff:
    """Exponential backoff with jitter: ``min(cap, initial * 2**n)`` scaled into [50%, 100%].

    ``uniform`` is injectable so tests are exact.
    """

    def __init__(
        self,
        *,
        initial: float,
        cap: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._uniform = uniform

    def next_delay(self) -> float:
        """The delay before the next attempt; each call doubles the base up to the cap."""
        base = min(self.cap, self.initial * 2.0**self.attempt)
        self.attempt += 1
        return base * self._uniform(0.5, 1.0)

    def reset(self) -> None:
        """A connection succeeded: start again from ``initial``."""
        self.attempt = 0


@dataclass
class SlotStats:
    """What one fleet member did; mutated by its task only."""

    username: str
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    submitted: int = 0
    lost: int = 0
    connects: int = 0
    connected: bool = False
    difficulty: float | None = None
    job_id: str | None = None
    jobs: int = 0
    order: str | None = None
    message: str | None = None


class WorkerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One fleet member's totals."""

    username: str
    hashes: int
    accepted: int
    rejected: dict[str, int]
    connects: int
    difficulty: float | None
    order: str | None


class MinerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Printed when the worker stops: totals and per-worker lines."""

    hashes: int
    accepted: int
    rejected: dict[str, int]
    stale_dropped: int
    uptime_s: float
    hashrate: float
    processes: int
    workers: list[WorkerSummary]


class Miner:
    """One worker run. ``await nursery.start(miner.run)`` returns once hashing is ready."""

    def __init__(self, config: MinerConfig) -> None:
        self.config = config
        self.pool = HashingPool(processes=config.processes, chunk_seconds=config.chunk_seconds)
        self.stats = [SlotStats(username=name) for name in config.usernames()]
        self._stop = trio.Event()
        self._stopping = False  # no new submits: the run is ending
        self._in_flight = 0  # submits sent and not yet answered
        self._drained = trio.Event()
        self._next_work_id = 0
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self.summary: MinerSummary | None = None

    def stop(self) -> None:
        """Ask the run to end (idempotent); ``run`` then returns the summary."""
        self._stop.set()

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> MinerSummary:
        """Mine until ``stop()``, ``config.duration`` or cancellation; returns the summary.

        Raises ``HashingProcessDied`` if a hashing process dies.
        """
        config = self.config
        log.info(
            "worker.starting",
            url=f"stratum+tcp://{config.host}:{config.port}",
            workers=len(self.stats),
            processes=config.processes,
            algorithm=config.algorithm.value,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.pool.run)
                self._started_at = time.monotonic()
                task_status.started()
                async with trio.open_nursery() as slots:
                    for slot in range(len(self.stats)):
                        slots.start_soon(self._run_slot, slot)
                    slots.start_soon(self._status_loop)
                    if config.duration is not None:
                        slots.start_soon(self._stop_after, config.duration)
                    await self._stop.wait()
                    await self._drain()
                    slots.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
        finally:
            self._stopped_at = time.monotonic()
            self.summary = self.make_summary()
            log.info("worker.summary", **_loggable(self.summary))
        return self.summary

    async def _stop_after(self, seconds: float) -> None:
        await trio.sleep(seconds)
        self.stop()

    async def _drain(self) -> None:
        """Stop hashing and submitting, then wait (briefly) for the answers to the shares
        already sent, so the summary counts what the pool counted."""
        self._stopping = True
        for slot in range(len(self.stats)):
            self.pool.set_work(slot, None)
        if self._in_flight:
            self._drained = trio.Event()
            with trio.move_on_after(_DRAIN_S):
                await self._drained.wait()

    # ------------------------------------------------------------------ one fleet member

    async def _run_slot(self, slot: int) -> None:
        config = self.config
        stats = self.stats[slot]
        structlog.contextvars.bind_contextvars(worker=stats.username)
        host, port = config.host, config.port
        session_id: str | None = None
        backoff = Backoff(initial=config.backoff_initial, cap=config.backoff_max)
        while True:
            reconnect: ReconnectRequested | None = None
            try:
                async with open_stratum_client(host, port, config=config.client) as client:
                    stats.connects += 1
                    stats.connected = True
                    subscribed = await self._handshake(client, stats, session_id)
                    session_id = subscribed.session_id or session_id
                    backoff.reset()
                    reconnect = await self._serve(client, slot, subscribed)
            except (OSError, StratumClientError, RemoteProtocolError, trio.TooSlowError) as exc:
                log.warning("worker.disconnected", error=f"{type(exc).__name__}: {exc}")
            finally:
                stats.connected = False
                self.pool.set_work(slot, None)
            if reconnect is not None:
                host = reconnect.host or host
                port = reconnect.port or port
                log.info(
                    "worker.reconnect_requested", host=host, port=port, wait_s=reconnect.wait_s
                )
                await trio.sleep(max(0.0, reconnect.wait_s))
                continue
            delay = backoff.next_delay()
            log.info("worker.backoff", delay_s=round(delay, 3), attempt=backoff.attempt)
            await trio.sleep(delay)

    async def _handshake(
        self, client: StratumClient, stats: SlotStats, session_id: str | None
    ) -> Subscribed:
        try:
            subscribed = await client.subscribe(session_id=session_id)
        except RequestRejected as exc:
            if session_id is None:
                raise
            # The server does not know our old session: a fresh one, as cpuminer does.
            log.info("worker.resume_refused", error=str(exc))
            subscribed = await client.subscribe()
        resumed = session_id is not None and subscribed.session_id == session_id
        await client.extranonce_subscribe()
        authorized = await client.authorize(stats.username, self.config.password)
        if not authorized.ok:
            failure = authorized.failure
            raise ConnectionLost(
                f"authorization refused: {failure.message if failure else 'false'}"
            )
        log.info(
            "worker.connected",
            extranonce1=subscribed.extranonce1,
            extranonce2_size=subscribed.extranonce2_size,
            session=subscribed.session_id,
            resumed=resumed,
        )
        return subscribed

    async def _serve(
        self, client: StratumClient, slot: int, subscribed: Subscribed
    ) -> ReconnectRequested | None:
        stats = self.stats[slot]
        found = self.pool.found_channel(slot)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._submit_loop, client, slot, found)
            async for event in client.events:
                if isinstance(event, NewJob):
                    self._set_job(client, slot, event, clean=event.clean_jobs)
                elif isinstance(event, NewExtranonce):
                    # Servers differ on whether the current job survives a new extranonce1;
                    # only the next job is certain to use it: stop and wait for that job.
                    log.info("worker.extranonce", extranonce1=event.extranonce1)
                    self.pool.set_work(slot, None)
                elif isinstance(event, NewDifficulty):
                    log.info("worker.difficulty", difficulty=event.difficulty)
                elif isinstance(event, ShowMessage):
                    stats.message = event.text
                    stats.order = _order_from_text(event.text) or stats.order
                    log.info("worker.server_message", text=event.text)
                elif isinstance(event, ReconnectRequested):
                    nursery.cancel_scope.cancel()
                    return event
                elif isinstance(event, UnknownNotification):
                    log.debug("worker.unknown_notification", method=event.method)
                elif isinstance(event, ConnectionClosed):
                    break
            nursery.cancel_scope.cancel()
        raise ConnectionLost(client.close_reason or "connection closed")

    def _set_job(self, client: StratumClient, slot: int, job: NewJob, *, clean: bool) -> None:
        stats = self.stats[slot]
        extranonce1 = client.extranonce1
        extranonce2_size = client.extranonce2_size
        if extranonce1 is None or extranonce2_size is None:
            log.warning("worker.job_before_subscribe", job=job.job_id)
            return
        self._next_work_id += 1
        try:
            work = Work.from_notify(
                work_id=self._next_work_id,
                slot=slot,
                algorithm=self.config.algorithm,
                job_id=job.job_id,
                prevhash=job.prevhash,
                coinb1=job.coinb1,
                coinb2=job.coinb2,
                merkle_branch=job.merkle_branch,
                version=job.version,
                nbits=job.nbits,
                ntime=job.ntime,
                extranonce1=extranonce1,
                extranonce2_size=extranonce2_size,
                difficulty=job.difficulty,
            )
        except ValueError as exc:
            log.warning("worker.bad_job", job=job.job_id, error=str(exc))
            return
        self.pool.set_work(slot, work, clean=clean)
        stats.job_id = job.job_id
        stats.jobs += 1
        stats.difficulty = job.difficulty
        stats.order = order_from_coinbase(job.coinb1) or stats.order
        log.debug("worker.job", job=job.job_id, clean=clean, difficulty=job.difficulty)

    async def _submit_loop(
        self, client: StratumClient, slot: int, found: trio.MemoryReceiveChannel[Found]
    ) -> None:
        async with trio.open_nursery() as nursery:
            async for share in found:
                if self._stopping:
                    continue  # found after the end: not sent, so nobody counts it
                # Work may have gone stale while the share waited in the channel.
                if self.pool.is_submittable(share):
                    nursery.start_soon(self._submit, client, slot, share)
                else:
                    self.pool.stale_dropped += 1

    async def _submit(self, client: StratumClient, slot: int, share: Found) -> None:
        stats = self.stats[slot]
        stats.submitted += 1
        self._in_flight += 1
        try:
            await self._submit_one(stats, client, share)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._drained.set()

    async def _submit_one(self, stats: SlotStats, client: StratumClient, share: Found) -> None:
        sent = trio.current_time()
        try:
            result = await client.submit(
                username=stats.username,
                job_id=share.job_id,
                extranonce2=share.extranonce2,
                ntime=share.ntime,
                nonce=share.nonce,
            )
        except (StratumClientError, trio.TooSlowError) as exc:
            stats.lost += 1
            log.warning("share.lost", job=share.job_id, error=str(exc) or type(exc).__name__)
            return
        # How long the pool took to answer: what a slow pool looks like from here.
        rtt_ms = round((trio.current_time() - sent) * 1000, 1)
        if result.accepted:
            stats.accepted += 1
            log.debug("share.accepted", job=share.job_id, nonce=share.nonce, rtt_ms=rtt_ms)
        else:
            reason = result.reason.value if result.reason else "other"
            stats.rejected[reason] += 1
            log.info(
                "share.rejected",
                job=share.job_id,
                reason=reason,
                message=result.failure.message if result.failure else None,
                rtt_ms=rtt_ms,
            )

    # ------------------------------------------------------------------ reporting

    async def _status_loop(self) -> None:
        interval = self.config.status_interval
        last = {slot: 0 for slot in range(len(self.stats))}
        last_time = time.monotonic()
        while True:
            await trio.sleep(interval)
            now = time.monotonic()
            elapsed = max(now - last_time, 1e-9)
            last_time = now
            for slot, stats in enumerate(self.stats):
                hashes = self.pool.hashes_by_slot.get(slot, 0)
                rate = (hashes - last[slot]) / elapsed
                last[slot] = hashes
                log.info(
                    "worker.status",
                    worker=stats.username,
                    hashrate=_human_rate(rate),
                    hashes_per_s=round(rate),
                    accepted=stats.accepted,
                    rejected=sum(stats.rejected.values()),
                    rejected_by=dict(stats.rejected),
                    difficulty=stats.difficulty,
                    order=stats.order,
                    connected=stats.connected,
                )

    def make_summary(self) -> MinerSummary:
        """The totals so far (also valid while running)."""
        started = self._started_at or time.monotonic()
        uptime = max((self._stopped_at or time.monotonic()) - started, 0.0)
        rejected: Counter[str] = Counter()
        workers = []
        for slot, stats in enumerate(self.stats):
            rejected.update(stats.rejected)
            workers.append(
                WorkerSummary(
                    username=stats.username,
                    hashes=self.pool.hashes_by_slot.get(slot, 0),
                    accepted=stats.accepted,
                    rejected=dict(stats.rejected),
                    connects=stats.connects,
                    difficulty=stats.difficulty,
                    order=stats.order,
                )
            )
        hashes = self.pool.total_hashes
        return MinerSummary(
            hashes=hashes,
            accepted=sum(s.accepted for s in self.stats),
            rejected=dict(rejected),
            stale_dropped=self.pool.stale_dropped,
            uptime_s=round(uptime, 3),
            hashrate=round(hashes / uptime, 1) if uptime > 0 else 0.0,
            processes=self.config.processes,
            workers=workers,
        )


def _human_rate(rate: float) -> str:
    for unit, scale in (("GH/s", 1e9), ("MH/s", 1e6), ("kH/s", 1e3)):
        if rate >= scale:
            return f"{rate / scale:.2f} {unit}"
    return f"{rate:.0f} H/s"


def _order_from_text(text: str) -> str | None:
    # Servers that say what is being served write "order <id>" (e.g. "serving order 42").
    words = text.replace(":", " ").replace("=", " ").split()
    for i, word in enumerate(words[:-1]):
        if word.lower() == "order":
            return words[i + 1].strip(".,;")
    return None


def _loggable(summary: MinerSummary) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(summary)
    return data
