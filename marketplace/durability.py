"""Storage health: the state a node is in while its store cannot take writes, and the schedule
on which it tries again.

Theory of operation
-------------------
A store that fails a write (the disk is full, an I/O error, a lock held past its timeout, a
lost database connection) is a state of the node, not a crash. The journal reports it as a
``StorageFault`` for the failed batch and everything queued behind it (``JournalPort``); the
engine (``marketplace.engine``) turns it into this state and back, one ``StorageHealth`` per
engine, which everyone who answers the outside world reads:

``HEALTHY``
    Commands run and are journaled; a caller hears "done" once its events are durable.
``RESTORING``
    A batch failed, so memory holds events the journal does not. The engine is putting every
    component back to exactly what the journal holds (the newest snapshot and the events after
    it, as at start). Nothing is served from memory: commands and reads are refused.
``DEGRADED``
    Memory equals the journal: reads are served from it, commands refused (the API's 5030, a
    Stratum submit's ``[20, "storage unavailable, retry"]``). The engine probes the store on the
    ``RetryPolicy`` schedule (1 s, doubling, at most 30 s) and is ``HEALTHY`` again as soon as
    a write gets through, with no restart.

A refusal is a ``StorageUnavailable`` carrying the cause and ``retry_after_ms``, the time until
the engine next tries the store. Each episode logs ``journal.degraded`` (cause) when it begins
and ``journal.recovered`` (cause, duration, attempts) when it ends. A store that fails again
soon after it recovered (a disk with only a little room freed) continues the episode's
schedule instead of starting again at 1 s, so a flapping store is tried ever more rarely.

Nothing here knows SQLite: every journal behind ``JournalPort`` (the PostgreSQL one too, whose
lost connection is the same fault as a full disk) gets this behaviour. Times are trio's clock.
"""

from __future__ import annotations

import math
from enum import StrEnum

import msgspec
import structlog
import trio

log = structlog.get_logger("marketplace.storage")


class StorageState(StrEnum):
    """Whether the node can make changes durable now (see the module doc)."""

    HEALTHY = "healthy"
    RESTORING = "restoring"
    DEGRADED = "degraded"


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a failing store is tried again: ``first_s``, doubling, at most ``max_s``."""

    first_s: float = 1.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError("a retry policy needs 0 < first_s <= max_s")

    def delay_s(self, attempt: int) -> float:
        """The wait before try number ``attempt`` (0 first)."""
        return min(math.ldexp(self.first_s, min(attempt, 64)), self.max_s)


class StorageUnavailable(Exception):
    """A command refused because the store cannot take writes now (or, while the engine
    restores memory, a read): retry after ``retry_after_ms``."""

    def __init__(self, *, cause: str, retry_after_ms: int) -> None:
        super().__init__(f"storage unavailable ({cause}), retry after {retry_after_ms} ms")
        self.cause = cause
        self.retry_after_ms = retry_after_ms


class StorageHealth:
    """One engine's storage state (see the module doc). The engine changes it; the API, the
    bridges, the scheduler and a readiness probe read it."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._state = StorageState.HEALTHY
        self._cause: str | None = None
        self._since: float | None = None
        self._attempts = 0
        self._next_try: float | None = None
        self._recovered_at: float | None = None
        self._continued = False
        self._failed = trio.Event()
        self._changes = trio.lowlevel.ParkingLot()
        #: Episodes since start (a store failing again right after recovering continues one).
        self.episodes = 0

    # ------------------------------------------------------------------ reads

    @property
    def state(self) -> StorageState:
        return self._state

    @property
    def ready(self) -> bool:
        """Whether commands run (and what a readiness probe answers)."""
        return self._state is StorageState.HEALTHY

    @property
    def readable(self) -> bool:
        """Whether memory holds exactly the journal's state, so reads may be served."""
        return self._state is not StorageState.RESTORING

    @property
    def cause(self) -> str | None:
        """What the store answered when this episode began (``None`` while healthy)."""
        return self._cause

    def down_for_s(self) -> float:
        """How long this episode has lasted (0 while healthy)."""
        return 0.0 if self._since is None else trio.current_time() - self._since

    def retry_after_ms(self) -> int:
        """Milliseconds until the store is tried again (a hint for refused callers)."""
        if self._next_try is None:
            return math.ceil(self.policy.first_s * 1000)
        return max(1, math.ceil((self._next_try - trio.current_time()) * 1000))

    def unavailable(self) -> StorageUnavailable:
        """The refusal to give a caller now."""
        return StorageUnavailable(
            cause=self._cause or "storage unavailable", retry_after_ms=self.retry_after_ms()
        )

    # ------------------------------------------------------------------ changes (the engine's)

    def failed(self, cause: str) -> None:
        """A write failed: ``RESTORING`` (from any state: memory is not the journal's). From
        ``HEALTHY`` this begins an episode, which the engine's service announces."""
        now = trio.current_time()
        if self._state is StorageState.HEALTHY:
            self._continued = (
                self._recovered_at is not None and now - self._recovered_at < self.policy.max_s
            )
            if not self._continued:
                self._attempts = 0
            self._cause = cause
            self._since = now
            self._next_try = None
            self.episodes += 1
            self._failed.set()
        self._set(StorageState.RESTORING)

    def announce(self) -> None:
        """Log ``journal.degraded`` for the episode that began (from the engine's service, so
        the line carries no caller's context: the whole node is degraded)."""
        log.error(
            "journal.degraded",
            cause=self._cause,
            episode=self.episodes,
            continued=self._continued or None,
        )

    def restored(self) -> None:
        """Memory equals the journal again: ``DEGRADED`` (reads are served)."""
        self._set(StorageState.DEGRADED)

    def next_delay_s(self) -> float:
        """Schedule the next try; how long to wait for it."""
        delay = self.policy.delay_s(self._attempts)
        self._attempts += 1
        self._next_try = trio.current_time() + delay
        return delay

    def retry_failed(self, cause: str) -> None:
        """A try failed (the store still fails): logged, the schedule goes on."""
        log.warning(
            "journal.retry_failed",
            cause=cause,
            attempt=self._attempts,
            next_in_s=self.policy.delay_s(self._attempts),
        )

    def recovered(self) -> None:
        """A write got through and memory equals the journal: ``HEALTHY``. Logs
        ``journal.recovered`` with the episode's cause and duration."""
        log.warning(
            "journal.recovered",
            cause=self._cause,
            duration_s=round(self.down_for_s(), 3),
            attempts=self._attempts,
        )
        self._set(StorageState.HEALTHY)
        self._cause = None
        self._since = None
        self._next_try = None
        self._recovered_at = trio.current_time()
        self._failed = trio.Event()

    def _set(self, state: StorageState) -> None:
        if state is not self._state:
            self._state = state
            self._changes.unpark_all()

    async def wait_changed(self) -> None:
        """Wait until the state changes next."""
        await self._changes.park()

    async def wait_failed(self) -> None:
        """Wait until the store has failed (at once if it is failing now)."""
        if not self.ready:
            return
        await self._failed.wait()
