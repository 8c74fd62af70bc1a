"""Builders shared by the marketplace I/O tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from marketplace.core.market import Market
from marketplace.core.model import MarketConfig, WorkerKey
from marketplace.engine import Engine, EngineConfig
from marketplace.storage import Journal, Synchronous, open_journal
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

from ..marketplace_core.helpers import standard

#: One standard sha256d order; the same builder as the core tests use.
standard_order = standard

SHA = Algorithm.SHA256D
MH = 10**6
BTC = 10**11


def trio_clock_ms(base_ms: int = 1_700_000_000_000) -> Any:
    """A clock for the engine that follows trio's (possibly mock) clock."""
    return lambda: base_ms + int(trio.current_time() * 1000)


def make_market(**config: Any) -> Market:
    return Market(config=MarketConfig(faucet=True, **config))


@asynccontextmanager
async def running_engine(
    path: Path,
    *,
    market: Market | None = None,
    clock: Any = None,
    config: EngineConfig | None = None,
    synchronous: Synchronous = Synchronous.NORMAL,
    run: bool = False,
) -> AsyncIterator[tuple[Engine, Journal]]:
    """A restored engine over a running journal at ``path`` (and its periodic tasks if
    ``run``)."""
    market = market or make_market()
    async with open_journal(path, synchronous=synchronous) as journal:
        engine = Engine(
            components=[market],
            journal=journal,
            clock=clock or trio_clock_ms(),
            config=config,
        )
        await engine.restore()
        if run:
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                yield engine, journal
                nursery.cancel_scope.cancel()
        else:
            yield engine, journal


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
