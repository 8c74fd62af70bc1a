"""Builders shared by the marketplace I/O tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from marketplace.clock import Clock
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import WorkerKey
from marketplace.engine import Engine, JournalPort
from marketplace.scheduler import MarketScheduler, SchedulerConfig
from marketplace.storage import Synchronous, open_journal
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm
from tests.clocks import trio_clock

from ..marketplace_core.helpers import Core, make_market, standard

#: One standard sha256d order; the same builder as the core tests use.
standard_order = standard

SHA = Algorithm.SHA256D
MH = 10**6
BTC = 10**11


class Running(Core):
    """A restored engine over a journal, with its market's fleet and scheduler."""

    def __init__(self, *, engine: Engine, scheduler: MarketScheduler, journal: JournalPort) -> None:
        market = scheduler.market
        super().__init__(market.config, market=market, fleet=scheduler.fleet)
        self.engine = engine
        self.scheduler = scheduler
        self.journal = journal


async def start_engine(
    journal: JournalPort,
    *,
    market: Market | None = None,
    clock: Clock | None = None,
    config: SchedulerConfig | None = None,
) -> Running:
    """A restored engine over ``journal`` and the scheduler of its market (not running)."""
    market = market or make_market()
    engine = Engine(components=[market], journal=journal, clock=clock or trio_clock())
    scheduler = MarketScheduler(
        engine=engine, market=market, fleet=Fleet(config=market.config), config=config
    )
    await engine.restore()
    return Running(engine=engine, scheduler=scheduler, journal=journal)


@asynccontextmanager
async def running_engine(
    path: Path,
    *,
    market: Market | None = None,
    clock: Clock | None = None,
    config: SchedulerConfig | None = None,
    synchronous: Synchronous = Synchronous.NORMAL,
    run: bool = False,
) -> AsyncIterator[Running]:
    """A restored engine over a running SQLite journal at ``path`` (and the scheduler's
    periodic tasks if ``run``)."""
    async with open_journal(path, synchronous=synchronous) as journal:
        running = await start_engine(journal, market=market, clock=clock, config=config)
        if run:
            async with trio.open_nursery() as nursery:
                await nursery.start(running.scheduler.run)
                yield running
                nursery.cancel_scope.cancel()
        else:
            yield running


def make_share(
    key: WorkerKey, *, source: str, time_ms: int, difficulty: float = 1.0, accepted: bool = True
) -> Share:
    return Share(
        conn_id=key.conn_id,
        account=key.account,
        worker=key.worker,
        algorithm=key.algorithm,
        source=source,
        difficulty=difficulty,
        accepted=accepted,
        reason=None if accepted else "low_difficulty",
        time_ms=time_ms,
    )
