"""The built-in ``WorkSource`` of a standalone pool: one job stream for every connection.

A trio task (``run``) makes a new template at least every ``job_interval_s`` and immediately
when the emulated chain finds a block (those jobs carry ``clean_jobs``), and pushes it to every
connected miner. Shares are only counted: there is nothing to make durable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import structlog
import trio

from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, MinerLink, Share
from stratum.core.shares import Algorithm, work_for
from stratum.core.templates import EmulatedChain, JobStream

log = structlog.get_logger("stratum.pool")


@dataclass
class PoolStats:
    """Share counts since start; ``work`` is accepted hashes per ``account.worker``."""

    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    work: dict[str, int] = field(default_factory=dict)
    jobs: int = 0
    blocks: int = 0


class PoolWorkSource:
    """One ``JobStream("pool")`` for every miner; implements ``WorkSource``."""

    def __init__(
        self, *, config: StratumConfig, clock: Callable[[], int], tag: str = "pool"
    ) -> None:
        self.config = config
        self._clock = clock
        now = clock()
        self.chain = EmulatedChain(
            algorithm=config.algorithm,
            block_interval_ms=round(config.block_interval_s * 1000),
            now_ms=now,
        )
        self.stream = JobStream(
            tag, chain=self.chain, extranonce_size=config.extranonce1_size + config.extranonce2_size
        )
        self.stats = PoolStats()
        self._links: dict[int, MinerLink] = {}
        self._job = self.stream.next_job(now)
        self._job_pushed = trio.Event()

    @property
    def algorithm(self) -> Algorithm:
        """The algorithm of the pool's chain."""
        return self.config.algorithm

    @property
    def links(self) -> list[MinerLink]:
        """The connected miners."""
        return list(self._links.values())

    @property
    def current_job(self) -> Job:
        """The job every miner is working on."""
        return self._job

    def layout_for(self, session_id: bytes) -> Layout | None:
        """Every miner works with its own layout here."""
        return None

    def connect(self, link: MinerLink) -> Job:
        """Remember ``link``; its first job is the current one, with ``clean_jobs``."""
        self._links[link.conn_id] = link
        return msgspec.structs.replace(self._job, clean_jobs=True)

    def disconnect(self, link: MinerLink) -> None:
        """Forget ``link``. Idempotent."""
        self._links.pop(link.conn_id, None)

    async def record_shares(self, shares: Sequence[Share]) -> None:
        """Count the shares (no durability needed in a standalone pool)."""
        stats = self.stats
        for share in shares:
            if share.accepted:
                stats.accepted += 1
                key = f"{share.account}.{share.worker}"
                work = int(work_for(share.algorithm, share.difficulty))
                stats.work[key] = stats.work.get(key, 0) + work
            else:
                reason = share.reason or "other"
                stats.rejected[reason] = stats.rejected.get(reason, 0) + 1

    def new_job(self) -> Job:
        """Make the next template and push it to every miner now."""
        self._job = self.stream.next_job(self._clock())
        self.stats.jobs += 1
        if self._job.clean_jobs:
            self.stats.blocks += 1
        for link in list(self._links.values()):
            link.push_job(self._job)
        return self._job

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Push a job every ``job_interval_s`` and on every emulated block, until cancelled."""
        task_status.started()
        interval_ms = round(self.config.job_interval_s * 1000)
        last_ms = self._clock()
        while True:
            now = self._clock()
            due = min(last_ms + interval_ms, self.chain.next_block_ms)
            if now < due:
                await trio.sleep((due - now) / 1000)
                continue
            job = self.new_job()
            last_ms = self._clock()
            log.debug(
                "pool.job",
                seq=job.seq,
                height=job.height,
                clean=job.clean_jobs,
                miners=len(self._links),
            )
