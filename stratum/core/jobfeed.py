"""The work one connection is sent: its jobs, the difficulty they carry, and which of them a
share may still be submitted for.

Theory of operation
-------------------
``JobFeed`` turns the work source's ``Job`` values into the lines one connection receives.
Each job goes out under a fresh id (``registries.JobIds``) as a ``SentJob`` that remembers the
difficulty, target and extranonce1 it was sent with, so a share is always checked against
exactly what the miner was told. ``mining.set_difficulty`` goes out right before the first
notify that carries a new difficulty (miners capture the difficulty when a job arrives). A
``clean_jobs`` job makes every earlier job stale after the grace period; at most ``max_jobs``
are kept, oldest dropped first.

A difficulty change (vardiff, ``mining.suggest_difficulty``) re-sends the current template at
once, not clean, under a new id and with a header that differs from the previous job's: ntime
moves to the clock, at least one second past the previous job's. cpuminer switches work only
when the first 76 header bytes change, so a job that differed in its id alone would leave it
hashing the old job at the old difficulty until the next template (stratum.md, "Difficulty").
ntime never goes past the window a share's ntime may have (``ntime_future_s`` ahead). Shares
for the earlier ids stay valid at the difficulty those were sent with, and the earliest ntime
a share may carry stays the template's: the re-sent job is the same work (below).

Duplicates are tracked per template and extranonce1, not per id (``SentJob.template``): jobs
that are the same work share one ``seen`` set, parked in ``registries.SubmittedShares`` when
the connection closes for a resumed session to take over.

Layout. The feed holds the connection's current ``jobs.Layout``: the extranonce1 and
extranonce2 size its jobs are sent with, and the version bits the miner may roll (what it
negotiated with ``mining.configure``, intersected with what its work source allows). Each
``SentJob`` keeps all three, so a share is checked against the layout its job was sent under,
also after the connection moved to another (``change_layout``: ``mining.set_extranonce`` and
``mining.set_version_mask`` as needed, then the new source's job, clean).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import msgspec

from stratum.core.jobs import ALL_VERSION_BITS, Job, Layout
from stratum.core.messages import Method, NotifyParams, notification_line
from stratum.core.registries import JobIds, SubmittedShares
from stratum.core.shares import Algorithm, CoinbasePrefix, HeaderLayout, target_for
from stratum.core.vardiff import Vardiff, VardiffConfig

#: Merkle roots remembered per job (one per extranonce2 the miner used).
_MERKLE_CACHE_SIZE: Final = 64
_TEMPLATE_ENCODER: Final = msgspec.msgpack.Encoder()


@dataclass(slots=True, kw_only=True)
class SentJob:
    """A job as this connection received it, with everything needed to check its shares."""

    local_id: str
    job: Job
    difficulty: float
    target: int
    extranonce1: bytes
    #: The extranonce2 size and the version bits a share of this job must keep to.
    extranonce2_size: int
    version_mask: int
    sent_ms: int
    #: The earliest ntime a share may carry: the template's, also when re-sent moved on.
    ntime: int
    coinb1_en1: bytes
    coinbase_prefix: CoinbasePrefix
    coinb2: bytes
    branch: tuple[bytes, ...]
    version: int
    layout: HeaderLayout
    #: The header's fixed parts: one template sent to one extranonce1 (see ``SubmittedShares``).
    template: bytes
    stale_at_ms: int | None = None
    seen: set[bytes] = field(default_factory=set)
    merkle_cache: dict[bytes, bytes] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        *,
        local_id: str,
        job: Job,
        extranonce1: bytes,
        difficulty: float,
        target: int,
        now_ms: int,
        extranonce2_size: int = 4,
        version_mask: int = 0,
        min_ntime: int | None = None,
    ) -> SentJob:
        """``job`` sent as ``local_id`` to the connection holding ``extranonce1`` (and
        filling ``extranonce2_size`` bytes, rolling ``version_mask``); shares may carry an
        ntime from ``min_ntime`` on (default: the job's own).

        Raises ``ValueError`` for hex fields that are not hex (a work source bug).
        """
        coinb1_en1 = bytes.fromhex(job.coinb1) + extranonce1
        coinb2 = bytes.fromhex(job.coinb2)
        branch = tuple(bytes.fromhex(node) for node in job.merkle_branch)
        version = int(job.version, 16)
        prevhash = bytes.fromhex(job.prevhash)
        nbits = bytes.fromhex(job.nbits)
        # ntime is left out: a job re-sent with ntime moved on is the same work for duplicates.
        template = hashlib.sha256(
            _TEMPLATE_ENCODER.encode((coinb1_en1, coinb2, branch, version, prevhash, nbits))
        ).digest()
        return cls(
            local_id=local_id,
            job=job,
            difficulty=difficulty,
            target=target,
            extranonce1=extranonce1,
            extranonce2_size=extranonce2_size,
            version_mask=version_mask,
            sent_ms=now_ms,
            ntime=int(job.ntime, 16) if min_ntime is None else min_ntime,
            coinb1_en1=coinb1_en1,
            coinbase_prefix=CoinbasePrefix(coinb1_en1),
            coinb2=coinb2,
            branch=branch,
            version=version,
            layout=HeaderLayout(prevhash=prevhash, nbits=nbits),
            template=template,
        )

    def merkle_root(self, extranonce2: bytes) -> bytes:
        """The merkle root for ``extranonce2`` (cached: miners reuse one for many nonces)."""
        root = self.merkle_cache.get(extranonce2)
        if root is None:
            root = self.coinbase_prefix.merkle_root(extranonce2 + self.coinb2, self.branch)
            if len(self.merkle_cache) >= _MERKLE_CACHE_SIZE:
                self.merkle_cache.clear()
            self.merkle_cache[extranonce2] = root
        return root


class JobFeed:
    """The jobs and difficulty of one connection (see the module docstring)."""

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        difficulty: float,
        vardiff: VardiffConfig | None,
        stale_grace_ms: int,
        max_jobs: int,
        ntime_future_s: int,
        job_ids: JobIds,
        submitted: SubmittedShares,
        extranonce2_size: int = 4,
    ) -> None:
        #: The difficulty the next job carries.
        self.difficulty = difficulty
        #: The connection's extranonce1 and extranonce2 size (its layout: set on subscribe and
        #: ``change_layout``).
        self.extranonce1: bytes | None = None
        self.extranonce2_size = extranonce2_size
        #: The version bits the miner negotiated (``mining.configure``) and those its work
        #: source allows: it may roll their intersection (``version_mask``).
        self.negotiated_mask = 0
        self.source_mask = ALL_VERSION_BITS
        self.jobs: dict[str, SentJob] = {}
        self.current: Job | None = None
        self._algorithm = algorithm
        self._vardiff_config = vardiff
        self._vardiff: Vardiff | None = None
        self._stale_grace_ms = stale_grace_ms
        self._max_jobs = max_jobs
        self._ntime_future_s = ntime_future_s
        self._job_ids = job_ids
        self._submitted = submitted
        self._sent_difficulty: float | None = None
        self._current_min_ntime = 0
        self._own_extranonce2_size = extranonce2_size

    @property
    def version_mask(self) -> int:
        """The version bits the miner may roll now."""
        return self.negotiated_mask & self.source_mask

    def _shape(self, own: bytes, layout: Layout | None) -> tuple[bytes, int, int]:
        """(extranonce1, extranonce2 size, source's version bits) of ``layout`` (``None``: the
        connection's own, ``own`` as extranonce1 with the configured size)."""
        if layout is None:
            return own, self._own_extranonce2_size, ALL_VERSION_BITS
        return layout.extranonce1, layout.extranonce2_size, layout.version_mask

    def use_layout(self, own: bytes, layout: Layout | None) -> None:
        """Take ``layout`` without telling the miner (the subscribe reply does)."""
        self.extranonce1, self.extranonce2_size, self.source_mask = self._shape(own, layout)

    def changes_extranonce(self, own: bytes, layout: Layout | None) -> bool:
        """Whether moving to ``layout`` changes the extranonce the miner works with."""
        extranonce1, size, _ = self._shape(own, layout)
        return (extranonce1, size) != (self.extranonce1, self.extranonce2_size)

    def change_layout(self, own: bytes, layout: Layout | None, job: Job, now_ms: int) -> bytes:
        """Move to ``layout`` and send ``job`` under it, clean: the lines, in order
        (``mining.set_extranonce`` if the extranonce changes, ``mining.set_version_mask`` if
        the bits a miner that negotiated version rolling may roll change, the job)."""
        out = b""
        if self.changes_extranonce(own, layout):
            extranonce1, size, _ = self._shape(own, layout)
            out += notification_line(Method.SET_EXTRANONCE, [extranonce1.hex(), size])
        before = self.version_mask
        self.use_layout(own, layout)
        if self.negotiated_mask and self.version_mask != before:
            out += self.version_mask_line()
        return out + self.send(msgspec.structs.replace(job, clean_jobs=True), now_ms)

    def version_mask_line(self) -> bytes:
        """``mining.set_version_mask`` with the bits the miner may roll now."""
        return notification_line(Method.SET_VERSION_MASK, [f"{self.version_mask:08x}"])

    def send(self, job: Job, now_ms: int, *, min_ntime: int | None = None) -> bytes:
        """The lines that send ``job`` under a new id (``set_difficulty`` first if needed).

        ``min_ntime`` is the earliest ntime its shares may carry when ``job`` is an earlier
        template re-sent with ntime moved on. Raises ``RuntimeError`` before an extranonce1
        is set (a driver bug).
        """
        if self.extranonce1 is None:
            raise RuntimeError("send_job before subscribe")
        out = b""
        if self._sent_difficulty != self.difficulty:
            out = notification_line(Method.SET_DIFFICULTY, [self.difficulty])
            self._sent_difficulty = self.difficulty
        if job.clean_jobs:
            stale_at = now_ms + self._stale_grace_ms
            for sent in self.jobs.values():
                if sent.stale_at_ms is None:
                    sent.stale_at_ms = stale_at
        self._prune(now_ms)
        sent = SentJob.make(
            local_id=self._job_ids.next(),
            job=job,
            extranonce1=self.extranonce1,
            difficulty=self.difficulty,
            target=target_for(self._algorithm, self.difficulty),
            now_ms=now_ms,
            extranonce2_size=self.extranonce2_size,
            version_mask=self.version_mask,
            min_ntime=min_ntime,
        )
        seen = next((s.seen for s in self.jobs.values() if s.template == sent.template), None)
        sent.seen = self._submitted.claim(sent.template, now_ms=now_ms) if seen is None else seen
        self.jobs[sent.local_id] = sent
        self.current = job
        self._current_min_ntime = sent.ntime
        if self._vardiff is None and self._vardiff_config is not None:
            self._vardiff = Vardiff(
                config=self._vardiff_config, difficulty=self.difficulty, now_ms=now_ms
            )
        # The notify's params in their wire order (a Job is a template: it has no id).
        header = (job.prevhash, job.coinb1, job.coinb2, job.merkle_branch, job.version, job.nbits)
        notify = NotifyParams(sent.local_id, *header, job.ntime, job.clean_jobs)
        return out + notification_line(Method.NOTIFY, notify)

    def change_difficulty(self, difficulty: float, now_ms: int) -> bytes:
        """Make ``difficulty`` the one in force; before the first job that is all. After it,
        the lines to send: ``set_difficulty`` and the current template as a new job whose
        header differs from the previous job's (see the module docstring)."""
        self.difficulty = difficulty
        if self._vardiff is not None:
            self._vardiff.reset(difficulty=difficulty, now_ms=now_ms)
        current = self.current
        if current is None or self.extranonce1 is None:
            return b""
        now_s = now_ms // 1000
        ntime = min(max(int(current.ntime, 16) + 1, now_s), now_s + self._ntime_future_s)
        job = msgspec.structs.replace(current, clean_jobs=False, ntime=f"{ntime & 0xFFFFFFFF:08x}")
        return self.send(job, now_ms, min_ntime=self._current_min_ntime)

    def on_accepted(self, share_difficulty: float, now_ms: int) -> bytes:
        """Count an accepted share for vardiff; the lines of a difficulty change, if any."""
        if self._vardiff is None:
            return b""
        new = self._vardiff.on_share(share_difficulty=share_difficulty, now_ms=now_ms)
        return b"" if new is None else self.change_difficulty(new, now_ms)

    def on_tick(self, now_ms: int) -> bytes:
        """Let vardiff lower a silent miner's difficulty; the lines of the change, if any."""
        if self._vardiff is None or self.current is None:
            return b""
        new = self._vardiff.on_tick(now_ms)
        return b"" if new is None else self.change_difficulty(new, now_ms)

    def clock_jumped(self, delta_ms: int) -> None:
        """The clock jumped ``delta_ms`` forward: vardiff's timers move with it (see
        ``Vardiff.shift``); jobs keep their times (the chain's clock is the jumped one)."""
        if self._vardiff is not None:
            self._vardiff.shift(delta_ms)

    def next_tick_ms(self) -> int | None:
        """When ``on_tick`` should next run (``None``: no vardiff or no job yet)."""
        if self._vardiff is None or self.current is None:
            return None
        return self._vardiff.next_tick_ms

    def park(self, now_ms: int) -> None:
        """The connection closed: keep its submitted shares for a resumed session, drop jobs."""
        for sent in self.jobs.values():
            self._submitted.park(sent.template, sent.seen, now_ms=now_ms)
        self.jobs.clear()

    def _prune(self, now_ms: int) -> None:
        jobs = self.jobs
        for local_id in [
            k for k, v in jobs.items() if v.stale_at_ms is not None and v.stale_at_ms <= now_ms
        ]:
            del jobs[local_id]
        while len(jobs) >= self._max_jobs:
            del jobs[next(iter(jobs))]
