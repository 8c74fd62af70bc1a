"""Jobs, shares and the seam between the Stratum server and whoever hands out work.

Theory of operation
-------------------
The server does not invent work. For every connection whose first worker has authorized it
asks a ``WorkSource`` (``connect``), which answers with the first ``Job`` and keeps the
returned ``MinerLink`` to push later jobs (a new template every ``job_interval``, an emulated
new block, or a move to another order, the last two with ``clean_jobs=True``).

A ``Job`` is a template that one source made: its ``source`` names the stream (an order id in
the marketplace, ``"pool"`` for the built-in generator), so a share is attributable to exactly
one stream. The server gives each job a fresh id (unique across connections) when it sends it,
together with the difficulty in force, so vardiff can re-send the same template under a new id
and shares for older ids are still checked at the difficulty they were sent with.

Every share the server checks, accepted or rejected, goes to ``WorkSource.record_shares`` before
the miner sees the reply; when that returns, an accepted share is durable. The server hands
over the shares of one read's lines together (one durable write for all of them, one reply
write). A work source that cannot record them now (its storage is failing) raises
``ShareNotRecorded`` for all: the miner is answered with its message instead of ``true``, and
the connection goes on. An accepted share carries what the miner submitted (the job's ``seq``,
extranonce1 and extranonce2, ntime, nonce, version bits), so a source that mirrors another
pool's jobs can forward it there.

Layouts. A connection's extranonce1 and extranonce2 size are its own (the server's allocator,
the configured size) unless its source says otherwise: a source that mirrors a pool's jobs
needs the pool's extranonce1 with a slot of its own in front of the miner's extranonce2. So
the source chooses a connection's ``Layout``: at subscribe (``WorkSource.layout_for``, asked
with the session id, so a miner that reconnects to resume its session is given the layout its
source reserved for it) and later (``MinerLink.change_layout``: ``mining.set_extranonce`` for
miners that asked for it, ``mining.set_version_mask`` when the bits it may roll change). A
miner that cannot take a new extranonce in place is told to reconnect (``MinerLink.reconnect``)
and is given its new layout when it resumes. The session id stays the connection's own value
whatever its layout, so a resumed session is found again.

Everything in this module is a value or a Protocol: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from stratum.core.shares import Algorithm


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A block template in wire form (hex strings exactly as ``mining.notify`` carries them)."""

    source: str
    seq: int
    height: int
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str
    clean_jobs: bool


#: Every version bit: a source that does not restrict version rolling.
ALL_VERSION_BITS = 0xFFFFFFFF


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    """How a work source shapes one connection's work: the extranonce1 its miner puts in the
    coinbase, the extranonce2 size it fills, and the version bits the source lets it roll (the
    miner rolls the intersection with what it negotiated). ``None`` where a layout is asked
    for means the connection's own: its session id as extranonce1, the configured size."""

    extranonce1: bytes
    extranonce2_size: int
    version_mask: int = ALL_VERSION_BITS


class Share(msgspec.Struct, frozen=True, kw_only=True):
    """One checked submission, as the server hands it to the work source.

    ``reason`` is ``None`` for an accepted share, else the rejection's short name
    (``"stale"``, ``"duplicate"``, ``"low_difficulty"``, ``"unauthorized"``, ``"other"``...).
    ``source`` is the job's stream, or ``""`` when the job was unknown. An accepted share also
    carries the job's ``seq`` and the submission as the miner made it (hex, as on the wire:
    the extranonce1 the job was sent with, extranonce2, ntime, nonce, version bits or ``None``).
    """

    conn_id: int
    account: str
    worker: str
    algorithm: Algorithm
    source: str
    difficulty: float
    accepted: bool
    reason: str | None
    time_ms: int
    hash_hex: str = ""
    job_seq: int = 0
    extranonce1: str = ""
    extranonce2: str = ""
    ntime: str = ""
    nonce: str = ""
    version_bits: str | None = None


class ShareNotRecorded(Exception):
    """``WorkSource.record_shares`` could not record the shares now (the work source's storage
    is failing): none of them was. The server answers each submit ``[20, message]``, counts it
    neither accepted nor rejected (so not toward the rejects-in-a-row limit either), forgets it
    was seen (the miner may send it again) and keeps the connection and its jobs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MinerLink(Protocol):
    """What a work source may do with one connection the server holds."""

    @property
    def conn_id(self) -> int: ...

    @property
    def account(self) -> str:
        """The account of the connection's first authorized worker."""
        ...

    @property
    def worker(self) -> str:
        """The name (without the account) of the connection's first authorized worker."""
        ...

    @property
    def difficulty(self) -> float:
        """The share difficulty currently in force for this connection."""
        ...

    @property
    def session_id(self) -> bytes:
        """The connection's own id: what a miner resuming its session asks for again."""
        ...

    @property
    def extranonce_subscribed(self) -> bool:
        """Whether the miner sent ``mining.extranonce.subscribe`` (takes a new extranonce)."""
        ...

    def push_job(self, job: Job) -> None:
        """Queue ``job`` to be sent (with ``set_difficulty`` first if it changed).

        Never blocks: a connection too slow to take its jobs is closed instead.
        """
        ...

    def change_layout(self, layout: Layout | None, job: Job) -> bool:
        """Move the connection to ``layout`` (``None``: its own) and send ``job`` with
        ``clean_jobs`` under it: ``mining.set_extranonce`` first when the extranonce changes,
        ``mining.set_version_mask`` when the bits the miner may roll change. False, and
        nothing sent, when the extranonce would change but the miner never sent
        ``mining.extranonce.subscribe``: reconnect it instead. Never blocks."""
        ...

    def reconnect(
        self, *, host: str | None = None, port: int | None = None, wait_s: int = 0
    ) -> None:
        """Send ``client.reconnect`` (to ``host``/``port``; default: the address the miner
        connected to) and close the connection once it is flushed."""
        ...


class WorkSource(Protocol):
    """Hands out jobs to connections and receives their shares."""

    @property
    def algorithm(self) -> Algorithm: ...

    def layout_for(self, session_id: bytes) -> Layout | None:
        """A connection subscribes with ``session_id`` (the one it asked to resume, when it
        was free): the layout its work needs, ``None`` for its own."""
        ...

    def connect(self, link: MinerLink) -> Job | None:
        """A connection's first worker authorized: return its first job, keep ``link``.
        ``None`` when the source already sent it its work itself (``change_layout``) or told
        it to reconnect."""
        ...

    def disconnect(self, link: MinerLink) -> None:
        """The connection is gone; forget ``link``. Idempotent."""
        ...

    async def record_shares(self, shares: Sequence[Share]) -> None:
        """Take checked shares (one connection's, in the order they came; at least one). On
        return every accepted share among them is durable. Raises ``ShareNotRecorded`` when
        they cannot be recorded now (then none is). May be cancelled only before it records
        any: a wait after that (for durability) must not end by cancellation, because the
        server counts a share it hands over as recorded unless told otherwise."""
        ...
