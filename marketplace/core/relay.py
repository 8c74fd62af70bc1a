"""One order's upstream pool, as the proxy sees it: status, layouts, mirrored jobs, which shares
go upstream, and the dead time behind the placeholder rule (proxy.md).

Theory of operation
-------------------
A ``Relay`` is the pure half of an order's upstream session; the trio driver
(``marketplace.upstream``) owns the socket and tells it what the pool said, and the bridge asks
it what the order's workers get. Nothing here is journaled: a restart starts every relay
``connecting`` again.

- Status: ``connecting`` until the first session is up; ``alive`` once a session is
  authorized and has a job; ``dead`` after a loss or a failure (``fail``, with ``last_error``
  in words a buyer can act on) until a new session is alive. Only an alive relay's order gets
  workers and is charged.
- Layout: the pool gives extranonce1 ``E`` and extranonce2 size ``n``; each worker on the order
  gets a 2-byte slot ``s``, unique on this relay (handed out round-robin, so a slot just given
  back is not at once reused), and works with ``E || s`` and ``n - 2`` bytes of its own
  (``n >= 4``: a worker keeps at least 2 bytes, as NiceHash requires). The version bits it may
  roll are the pool's grant (intersected, by the Stratum session, with ours and its own).
- Jobs: each ``mining.notify`` becomes a ``Job`` of this order (our seq; the pool's prevhash,
  coinbase halves, branch, version, nbits, ntime and ``clean_jobs``), remembered with the
  pool's job id, the session and ``E`` it came under and the pool's target at that moment
  (the difficulty in force when the job arrived, as miners capture it).
- Shares (``route``): a share is billable only if the pool could take it now: its job is of
  the live session and its ``E``. A billable share whose hash also meets the job's pool target
  is forwarded as ``[username, pool job id, s || extranonce2, ntime, nonce, version bits?]``.
- Placeholder rule: time not alive is summed per hour of the order's life (hours counted from
  its creation); more than half of any hour and ``cancel_reason`` says why the order must end.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final, NamedTuple

import msgspec

from stratum.core.jobs import Job, Layout, Share
from stratum.core.messages import NotifyParams
from stratum.core.shares import Algorithm, target_for

HOUR_MS: Final = 3_600_000
SLOT_BYTES: Final = 2
SLOTS: Final = 1 << (8 * SLOT_BYTES)
#: The smallest extranonce2 a pool may give: the slot plus 2 bytes for the worker.
MIN_EXTRANONCE2: Final = SLOT_BYTES + 2
#: Mirrored jobs remembered per relay (a worker keeps at most 16; several share a relay).
MAX_JOBS: Final = 64
#: Shares the pool rejects in a row before the session is given up as unusable.
REJECT_STREAK: Final = 20


class RelayStatus(enum.StrEnum):
    CONNECTING = "connecting"
    ALIVE = "alive"
    DEAD = "dead"


class RelayError(Exception):
    """Something the pool did that makes it unusable; the message is for the buyer."""


class Mirrored(NamedTuple):
    """A pool job as mirrored: its id there, its share target, the session and ``E``."""

    upstream_id: str
    target: int
    session: int
    extranonce1: bytes


class Forward(msgspec.Struct, frozen=True, kw_only=True):
    """One share to submit upstream (the pool's username is added by the driver)."""

    order_id: str
    session: int
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None
    #: Our share's difficulty (what the buyer was charged for), and when we accepted it.
    difficulty: float
    accepted_ms: int


class Route(NamedTuple):
    """Where one accepted share goes: charged or not, forwarded or not."""

    billable: bool
    forward: Forward | None


NOT_BILLABLE: Final = Route(False, None)
BILLABLE: Final = Route(True, None)


class RelayView(msgspec.Struct, frozen=True, kw_only=True):
    """The live half of an order's ``pool`` object, and the relay's counters."""

    status: RelayStatus
    difficulty: float | None
    last_error: str | None
    since_ms: int
    forwarded: int
    sessions: int
    workers: int


class DeadTime:
    """Time not alive within the current hour of an order's life (hours from ``start_ms``)."""

    __slots__ = ("_dead_in_window", "_dead_since", "_window_start")

    def __init__(self, *, start_ms: int, now_ms: int) -> None:
        self._window_start = start_ms
        self._dead_in_window = 0
        self._dead_since: int | None = now_ms
        self._roll(now_ms)

    def _roll(self, now_ms: int) -> None:
        while now_ms >= self._window_start + HOUR_MS:
            self._window_start += HOUR_MS
            self._dead_in_window = 0

    def mark(self, *, alive: bool, now_ms: int) -> None:
        """The relay is (or is not) alive from ``now_ms`` on."""
        self._roll(now_ms)
        if alive and self._dead_since is not None:
            self._dead_in_window += now_ms - max(self._dead_since, self._window_start)
            self._dead_since = None
        elif not alive and self._dead_since is None:
            self._dead_since = now_ms

    def dead_ms(self, now_ms: int) -> tuple[int, int]:
        """(ms not alive in the hour ``now_ms`` is in, which hour of the life: 0 = first)."""
        self._roll(now_ms)
        dead = self._dead_in_window
        if self._dead_since is not None:
            dead += now_ms - max(self._dead_since, self._window_start)
        return dead, self._window_start


class Relay:
    """One order's upstream, without I/O (see the module doc)."""

    def __init__(
        self,
        *,
        order_id: str,
        algorithm: Algorithm,
        created_ms: int,
        now_ms: int,
        first_seq: int = 0,
    ) -> None:
        """``first_seq``: where this relay's job seqs start; an order that moves to another
        pool gets a new relay, and seqs that never repeat keep its old jobs' shares from
        being taken for the new pool's."""
        self.order_id = order_id
        self.algorithm = algorithm
        self.status = RelayStatus.CONNECTING
        self.since_ms = now_ms
        self.last_error: str | None = None
        #: The pool's share difficulty now (``None`` before a session).
        self.difficulty: float | None = None
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        #: Set when the pool changed ``E``/``n``: the workers need the new layout with the
        #: next job (``take_relayout``).
        self.relayout = False
        self.session = 0
        self.current: Job | None = None
        self.job_ms = 0
        self.forwarded = 0
        self._created_ms = created_ms
        self._jobs: OrderedDict[int, Mirrored] = OrderedDict()
        self._seq = first_seq
        self._slots: dict[Hashable, int] = {}
        self._taken: set[int] = set()
        self._next_slot = 0
        self._reject_streak = 0
        self._dead = DeadTime(start_ms=created_ms, now_ms=now_ms)

    @property
    def alive(self) -> bool:
        return self.status is RelayStatus.ALIVE

    # ------------------------------------------------------------------ what the pool said

    def begin(self) -> None:
        """A new connection is being made: what the last one said no longer holds."""
        self.session += 1
        self._jobs.clear()
        self.current = None
        self.difficulty = 1.0  # Stratum's default until the pool sets one
        self.relayout = False
        self._reject_streak = 0

    def subscribed(self, *, extranonce1: str, extranonce2_size: int) -> None:
        """The pool's subscribe reply. Raises ``RelayError`` for a layout no worker can use."""
        self._take_extranonce(extranonce1, extranonce2_size)

    def version_rolling(self, mask: int | None) -> None:
        """The mask the pool granted to ``mining.configure`` (``None``: none)."""
        self.version_mask = mask or 0

    def set_difficulty(self, difficulty: float) -> None:
        """``mining.set_difficulty``: applies to the jobs that arrive after it."""
        self.difficulty = difficulty

    def set_extranonce(self, *, extranonce1: str, extranonce2_size: int) -> None:
        """``mining.set_extranonce``: the workers move to the new layout with the next job.
        Raises ``RelayError`` for a layout no worker can use."""
        self._take_extranonce(extranonce1, extranonce2_size)
        self.relayout = True

    def set_version_mask(self, mask: int) -> None:
        """``mining.set_version_mask``: the bits the pool lets us roll from now on."""
        self.version_mask = mask
        self.relayout = True

    def _take_extranonce(self, extranonce1: str, extranonce2_size: int) -> None:
        if extranonce2_size < MIN_EXTRANONCE2:
            raise RelayError(
                f"extranonce2_size {extranonce2_size} is too small (min {MIN_EXTRANONCE2})"
            )
        try:
            self.extranonce1 = bytes.fromhex(extranonce1)
        except ValueError:
            raise RelayError(f"extranonce1 {extranonce1[:32]!r} is not hex") from None
        self.extranonce2_size = extranonce2_size

    def notified(self, params: NotifyParams, *, now_ms: int) -> tuple[Job, bool]:
        """``mining.notify``: the job our workers get, and whether the relay just came alive
        (its session's first job)."""
        self._seq += 1
        difficulty = self.difficulty or 1.0
        self._jobs[self._seq] = Mirrored(
            params.job_id, target_for(self.algorithm, difficulty), self.session, self.extranonce1
        )
        while len(self._jobs) > MAX_JOBS:
            self._jobs.popitem(last=False)
        job = Job(
            source=self.order_id,
            seq=self._seq,
            height=0,
            prevhash=params.prevhash,
            coinb1=params.coinb1,
            coinb2=params.coinb2,
            merkle_branch=tuple(params.merkle_branch),
            version=params.version,
            nbits=params.nbits,
            ntime=params.ntime,
            clean_jobs=params.clean_jobs,
        )
        self.current, self.job_ms = job, now_ms
        became_alive = self.status is not RelayStatus.ALIVE
        if became_alive:
            self.status, self.since_ms = RelayStatus.ALIVE, now_ms
            self._dead.mark(alive=True, now_ms=now_ms)
        return job, became_alive

    def fail(self, error: str, *, now_ms: int) -> bool:
        """The session is lost or unusable (``error`` says why, for the buyer): ``dead`` (also
        when the first attempt fails: a failed authorize is dead, proxy.md). True when the
        relay was alive until now."""
        was_alive = self.status is RelayStatus.ALIVE
        if self.status is not RelayStatus.DEAD:
            self.status, self.since_ms = RelayStatus.DEAD, now_ms
        self.last_error = error
        self.current = None
        self._jobs.clear()
        self._dead.mark(alive=False, now_ms=now_ms)
        return was_alive

    def note(self, error: str) -> None:
        """Something the buyer should know that does not end the session (slow answers)."""
        self.last_error = error

    def answered(self, *, accepted: bool, reason: str | None) -> str | None:
        """Count the pool's answer to a forwarded share; the error that makes the session
        unusable once it rejected ``REJECT_STREAK`` shares in a row, else ``None``."""
        if accepted:
            self._reject_streak = 0
            return None
        self._reject_streak += 1
        if self._reject_streak >= REJECT_STREAK:
            return (
                f"the pool rejected {self._reject_streak} shares in a row (last: {reason}); "
                "check the pool's username and settings"
            )
        return None

    # ------------------------------------------------------------------ what workers get

    def layout_for(self, slot: int) -> Layout:
        """The layout of the worker holding ``slot``."""
        return Layout(
            extranonce1=self.extranonce1 + slot.to_bytes(SLOT_BYTES, "big"),
            extranonce2_size=self.extranonce2_size - SLOT_BYTES,
            version_mask=self.version_mask,
        )

    def assign(self, key: Hashable) -> Layout:
        """A slot for ``key`` (its own if it has one) and the layout it gives. Raises
        ``RelayError`` when every slot is taken."""
        slot = self._slots.get(key)
        if slot is None:
            if len(self._taken) >= SLOTS:
                raise RelayError(f"all {SLOTS} worker slots of this pool connection are taken")
            while self._next_slot in self._taken:
                self._next_slot = (self._next_slot + 1) % SLOTS
            slot = self._slots[key] = self._next_slot
            self._taken.add(slot)
            self._next_slot = (slot + 1) % SLOTS
        return self.layout_for(slot)

    def layout_of(self, key: Hashable) -> Layout | None:
        """The layout ``key`` holds here, if it holds a slot."""
        slot = self._slots.get(key)
        return None if slot is None else self.layout_for(slot)

    def release(self, key: Hashable) -> None:
        """``key`` no longer works here. Idempotent."""
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._taken.discard(slot)

    def rekey(self, old: Hashable, new: Hashable) -> None:
        """The worker ``old`` came back (a new connection) as ``new``: same slot."""
        slot = self._slots.pop(old, None)
        if slot is not None:
            self._slots[new] = slot

    def holders(self) -> list[Hashable]:
        """The keys holding a slot."""
        return list(self._slots)

    def take_relayout(self) -> bool:
        """Whether the workers must move to a new layout now (once per change, with a job)."""
        due = self.relayout and self.current is not None
        if due:
            self.relayout = False
        return due

    # ------------------------------------------------------------------ shares

    def route(self, share: Share) -> Route:
        """Where an accepted share of this order goes (see the module doc)."""
        mirrored = self._jobs.get(share.job_seq)
        if (
            mirrored is None
            or not self.alive
            or mirrored.session != self.session
            or mirrored.extranonce1 != self.extranonce1
        ):
            return NOT_BILLABLE
        prefix = mirrored.extranonce1.hex()
        if not share.hash_hex or int(share.hash_hex, 16) > mirrored.target:
            return BILLABLE
        if not share.extranonce1.startswith(prefix):
            return NOT_BILLABLE
        self.forwarded += 1
        return Route(
            True,
            Forward(
                order_id=self.order_id,
                session=self.session,
                job_id=mirrored.upstream_id,
                extranonce2=share.extranonce1[len(prefix) :] + share.extranonce2,
                ntime=share.ntime,
                nonce=share.nonce,
                version_bits=share.version_bits,
                difficulty=share.difficulty,
                accepted_ms=share.time_ms,
            ),
        )

    # ------------------------------------------------------------------ the placeholder rule

    def cancel_reason(self, now_ms: int) -> str | None:
        """Why the order must be cancelled now (more than half of an hour of its life not
        alive), or ``None``."""
        dead, window_start = self._dead.dead_ms(now_ms)
        if dead <= HOUR_MS // 2:
            return None
        hour = (window_start - self._created_ms) // HOUR_MS + 1
        which = "first hour" if hour == 1 else f"hour {hour}"
        return (
            f"the pool was not usable for {dead // 60_000} minutes of the order's {which} "
            f"(more than half), so the order was cancelled; last error: "
            f"{self.last_error or 'none'}"
        )

    def view(self) -> RelayView:
        """Status and counters, for the order's ``pool`` object and the dashboard."""
        return RelayView(
            status=self.status,
            difficulty=self.difficulty if self.alive else None,
            last_error=self.last_error,
            since_ms=self.since_ms,
            forwarded=self.forwarded,
            sessions=self.session,
            workers=len(self._slots),
        )
