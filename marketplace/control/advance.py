"""``admin.time.advance``: move market time forward and run everything that falls due.

Theory of operation
-------------------
Market time is the wall clock plus a journaled offset (``marketplace.clock``,
``core.market_time``). To advance it by ``S`` seconds from ``now`` to ``target``, the
``TimeMachine`` runs one command through the engine that steps through the due times in
between, in order, and at each one (``_run_at``) pins the clock there (``Clock.pin``: every
event of the step carries exactly that time, and the jump listeners shift the peer timers,
Stratum sessions and the fleet's speed estimates, by the jump) and runs the market's work due
then (``MarketScheduler.run_due``: order ends, a due settlement); after the last step it
records the new offset (``MarketTime.advance``). The command is synchronous, so nothing else
happens between the steps, and its events are one commit: a crash leaves the advance whole or
not at all, and a day or a year costs one commit, not one per step.

The due times are the ends of active orders (each one stepped to exactly) and, first, a
settlement of spend that was waiting when the advance began; later settlements are due
whenever the interval has passed and ride along with the next step, so the number of steps is
bounded by the number of orders however long the advance. The last step is the target itself.
Then the work whose latest instance is all that matters runs once: each bridge brings its
emulated chain up to the target and pushes one new job (``MarketWorkSource.catch_up``, clean if
a block was found), and the allocation is rebalanced. Price-down windows and statistics buckets
are comparisons with the clock and need no step. The advance answers once all of it is
journaled; the clock then runs on from the target (``Clock.release``).

One advance runs at a time, shielded from cancellation: one cancelled between its command and
the release would leave the clock pinned.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
import trio

from marketplace.api.admin_wire import MAX_ADVANCE_S
from marketplace.bridge import MarketWorkSource
from marketplace.clock import Clock
from marketplace.core.errors import InvalidArgument
from marketplace.core.market_time import MarketTime
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler

log = structlog.get_logger("marketplace.control")


class TimeMachine:
    """Advances a node's market time (see the module doc)."""

    def __init__(
        self,
        *,
        clock: Clock,
        engine: Engine,
        market_time: MarketTime,
        scheduler: MarketScheduler,
        bridges: Sequence[MarketWorkSource] = (),
    ) -> None:
        if engine.components.get(market_time.component) is not market_time:
            raise ValueError("the engine does not journal this market time")
        self._clock = clock
        self._engine = engine
        self._market_time = market_time
        self._scheduler = scheduler
        self._bridges = list(bridges)
        self._lock = trio.Lock()

    def add_bridge(self, bridge: MarketWorkSource) -> None:
        """Catch ``bridge`` up at the end of every advance."""
        self._bridges.append(bridge)

    async def advance(self, seconds: float) -> int:
        """Move market time ``seconds`` forward, running everything due in between in time
        order, durably; return the market time reached (ms). Raises ``InvalidArgument`` unless
        0 < seconds <= 400 days, ``JournalError`` if the journal failed (fatal for the node)."""
        if not 0 < seconds <= MAX_ADVANCE_S:
            raise InvalidArgument(
                f"seconds must be more than 0 and at most {MAX_ADVANCE_S} (400 days)",
                {"field": "seconds"},
            )
        with trio.CancelScope(shield=True):
            async with self._lock:
                reached = await self._advance(round(seconds * 1000))
        return reached

    async def _advance(self, delta_ms: int) -> int:
        clock, scheduler, market_time = self._clock, self._scheduler, self._market_time
        started = trio.current_time()
        target = clock.now_ms() + delta_ms
        steps: list[int] = []

        def command() -> int:
            # Synchronous from the first step to the last: nothing else happens in between,
            # and all of it is journaled in one commit, or none of it.
            due = scheduler.settlement_due_ms()
            if due is not None and due <= target:
                steps.append(self._run_at(due))
            while (end := scheduler.next_end_ms()) is not None and end <= target:
                steps.append(self._run_at(end))
            reached = self._run_at(target)
            steps.append(reached)
            # At least the current offset; more, so that wall + offset is the time reached.
            offset = max(market_time.offset_ms, reached - clock.wall_ms())
            market_time.advance(offset_ms=offset, time_ms=reached)
            return reached

        try:
            reached = await self._engine.execute(command)
            pushed = sum(bridge.catch_up() for bridge in self._bridges)
            await self._engine.execute(scheduler.rebalance)
        finally:
            clock.release()
        log.info(
            "time.advanced",
            seconds=delta_ms / 1000,
            market_time_ms=reached,
            offset_ms=clock.offset_ms,
            steps=len(steps),
            jobs_pushed=pushed,
            wall_s=round(trio.current_time() - started, 4),
        )
        return clock.now_ms()

    def _run_at(self, due_ms: int) -> int:
        """Pin market time at ``due_ms`` (or now, if it is later) and run the market's work due
        then (inside the advance's command); the time pinned."""
        time_ms = max(due_ms, self._clock.now_ms())
        self._clock.pin(time_ms)
        self._scheduler.run_due(time_ms)
        return time_ms
