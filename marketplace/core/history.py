"""Market and account history: minute buckets for a day, hour buckets for a month.

Theory of operation
-------------------
A ``History`` is part of the market's durable state (``book.py`` folds into it, ``state.py``
snapshots it), so a restart rebuilds it from the journal exactly. It keeps two rings of
``Slot``s: one per minute for the last 24 h and one per hour for the last 30 days. Every fact
goes into both rings at once (a share's work, money spent or earned, a sample), so the hour
ring holds a month without the minutes behind it. Adding a slot newer than the newest prunes
the ones that fell out of the ring, so memory is bounded by 1,440 + 720 slots whatever the
traffic; a fact older than a ring keeps counts only in the all-time totals.

Three kinds of fact arrive:

- shares (``add_share``): their work in hashes, accepted or rejected, from ``ShareRecorded``;
- money (``add_money``): what buyers were charged per share, what sellers earned at a
  settlement, the fees;
- samples (``add_sample``): what only the allocation knows (connected workers, the best bid,
  the fill price). The allocation is ephemeral, so the scheduler journals a ``MarketSampled``
  event every few seconds; a slot keeps the most workers sampled in it and the last prices.

``points`` reads a ring at 60 s, 300 s (five minute slots merged) or 3600 s, from the first
slot with data (or ``since_ms``) to ``now_ms``, one point per slot, empty slots as zeros with
no prices: speeds are the slot's work over the time it covers (the current slot's elapsed part).
Times come from the events or the caller's ``now_ms``: no clock.
"""

from __future__ import annotations

import bisect
from typing import Final, Protocol

import msgspec

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
KEEP_MINUTES: Final = 24 * 60
KEEP_HOURS: Final = 30 * 24
#: The resolutions ``points`` answers, in seconds.
RESOLUTIONS: Final = (60, 300, 3600)


class Sample(Protocol):
    """A sample of the allocation (``events.MarketSampled`` is one)."""

    @property
    def time_ms(self) -> int: ...
    @property
    def workers(self) -> int: ...
    @property
    def best_price_msat(self) -> int | None: ...
    @property
    def fill_price_msat(self) -> int | None: ...


class Slot:
    """One minute or one hour of a market (or an account: money only)."""

    __slots__ = (
        "accepted_shares",
        "accepted_work",
        "best_price_msat",
        "earned_msat",
        "fill_price_msat",
        "rejected_work",
        "sampled",
        "spent_msat",
        "workers",
    )

    def __init__(self) -> None:
        self.accepted_work = 0
        self.rejected_work = 0
        self.accepted_shares = 0
        self.spent_msat = 0
        self.earned_msat = 0
        self.workers = 0
        self.best_price_msat: int | None = None
        self.fill_price_msat: int | None = None
        self.sampled = False


class SlotState(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One ``Slot`` in a snapshot."""

    index: int
    accepted_work: int
    rejected_work: int
    accepted_shares: int
    spent_msat: int
    earned_msat: int
    workers: int
    best_price_msat: int | None
    fill_price_msat: int | None
    sampled: bool


class HistoryState(msgspec.Struct, frozen=True, kw_only=True):
    """A ``History`` in a snapshot: both rings oldest first, and the totals."""

    minutes: list[SlotState]
    hours: list[SlotState]
    first_ms: int | None
    accepted_work_total: int
    spent_msat_total: int
    earned_msat_total: int
    fees_msat_total: int


class HistoryPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket as ``points`` reads it (``time_ms`` is the bucket's start)."""

    time_ms: int
    accepted_speed_hs: int
    rejected_speed_hs: int
    shares: int
    workers: int
    best_price_msat: int | None
    fill_price_msat: int | None
    spent_msat: int
    earned_msat: int


class _Ring:
    """Slots of ``width_ms`` keyed by ``time // width``, at most ``keep`` of them."""

    __slots__ = ("indexes", "keep", "slots", "width_ms")

    def __init__(self, *, width_ms: int, keep: int) -> None:
        self.width_ms = width_ms
        self.keep = keep
        self.slots: dict[int, Slot] = {}
        self.indexes: list[int] = []  # sorted keys of ``slots``

    def slot(self, time_ms: int) -> Slot | None:
        """The slot of ``time_ms``, made if needed; ``None`` when it is older than the ring."""
        index = time_ms // self.width_ms
        found = self.slots.get(index)
        if found is not None:
            return found
        indexes = self.indexes
        if indexes and index <= indexes[-1] - self.keep:
            return None
        made = self.slots[index] = Slot()
        if not indexes or index > indexes[-1]:
            indexes.append(index)
            horizon = index - self.keep
            while indexes[0] <= horizon:
                del self.slots[indexes.pop(0)]
        else:
            bisect.insort(indexes, index)
        return made

    def export(self) -> list[SlotState]:
        return [
            SlotState(
                index=index,
                accepted_work=s.accepted_work,
                rejected_work=s.rejected_work,
                accepted_shares=s.accepted_shares,
                spent_msat=s.spent_msat,
                earned_msat=s.earned_msat,
                workers=s.workers,
                best_price_msat=s.best_price_msat,
                fill_price_msat=s.fill_price_msat,
                sampled=s.sampled,
            )
            for index in self.indexes
            for s in (self.slots[index],)
        ]

    def load(self, saved: list[SlotState]) -> None:
        for state in saved:
            slot = Slot()
            slot.accepted_work = state.accepted_work
            slot.rejected_work = state.rejected_work
            slot.accepted_shares = state.accepted_shares
            slot.spent_msat = state.spent_msat
            slot.earned_msat = state.earned_msat
            slot.workers = state.workers
            slot.best_price_msat = state.best_price_msat
            slot.fill_price_msat = state.fill_price_msat
            slot.sampled = state.sampled
            self.slots[state.index] = slot
        self.indexes = sorted(self.slots)


class History:
    """Minute and hour buckets of one market or one account (see the module doc)."""

    __slots__ = (
        "_hours",
        "_minutes",
        "accepted_work_total",
        "earned_msat_total",
        "fees_msat_total",
        "first_ms",
        "spent_msat_total",
    )

    def __init__(self) -> None:
        self._minutes = _Ring(width_ms=MINUTE_MS, keep=KEEP_MINUTES)
        self._hours = _Ring(width_ms=HOUR_MS, keep=KEEP_HOURS)
        self.first_ms: int | None = None
        self.accepted_work_total = 0
        self.spent_msat_total = 0
        self.earned_msat_total = 0
        self.fees_msat_total = 0

    def _slots(self, time_ms: int) -> tuple[Slot | None, Slot | None]:
        if self.first_ms is None or time_ms < self.first_ms:
            self.first_ms = time_ms
        return self._minutes.slot(time_ms), self._hours.slot(time_ms)

    # ------------------------------------------------------------------ facts

    def add_share(self, *, time_ms: int, work: int, accepted: bool) -> None:
        """Count one share proving ``work`` hashes."""
        if accepted:
            self.accepted_work_total += work
        for slot in self._slots(time_ms):
            if slot is None:
                continue
            if accepted:
                slot.accepted_work += work
                slot.accepted_shares += 1
            else:
                slot.rejected_work += work

    def add_money(
        self, *, time_ms: int, spent_msat: int = 0, earned_msat: int = 0, fees_msat: int = 0
    ) -> None:
        """Count money spent by buyers, earned by sellers, or taken as fees (a total only)."""
        self.spent_msat_total += spent_msat
        self.earned_msat_total += earned_msat
        self.fees_msat_total += fees_msat
        if not (spent_msat or earned_msat):
            return
        for slot in self._slots(time_ms):
            if slot is not None:
                slot.spent_msat += spent_msat
                slot.earned_msat += earned_msat

    def add_sample(self, sample: Sample) -> None:
        """Record what the allocation looked like at ``sample.time_ms``: a slot keeps the most
        workers sampled in it and the latest prices."""
        for slot in self._slots(sample.time_ms):
            if slot is None:
                continue
            slot.workers = max(slot.workers, sample.workers) if slot.sampled else sample.workers
            slot.best_price_msat = sample.best_price_msat
            slot.fill_price_msat = sample.fill_price_msat
            slot.sampled = True

    def sample_is_news(self, sample: Sample) -> bool:
        """Whether ``sample`` would change anything: False when its minute already holds its
        prices and at least its workers."""
        slot = self._minutes.slots.get(sample.time_ms // MINUTE_MS)
        return not (
            slot is not None
            and slot.sampled
            and slot.workers >= sample.workers
            and slot.best_price_msat == sample.best_price_msat
            and slot.fill_price_msat == sample.fill_price_msat
        )

    # ------------------------------------------------------------------ reads

    def points(self, *, resolution_s: int, since_ms: int | None, now_ms: int) -> list[HistoryPoint]:
        """One point per ``resolution_s`` bucket from ``since_ms`` (default and floor: the
        first data, at most 24 h back at 60 and 300 s, 30 days at 3600 s) to ``now_ms``,
        oldest first. Raises ``ValueError`` for a resolution not in ``RESOLUTIONS``."""
        if resolution_s not in RESOLUTIONS:
            raise ValueError(f"resolution_s must be one of {RESOLUTIONS}")
        if self.first_ms is None:
            return []
        ring = self._hours if resolution_s == 3600 else self._minutes
        width = resolution_s * 1000
        horizon = now_ms - ring.keep * ring.width_ms
        start = max(self.first_ms, horizon, since_ms or 0)
        first = start // width
        last = now_ms // width
        per = width // ring.width_ms
        points: list[HistoryPoint] = []
        for bucket in range(first, last + 1):
            begin = bucket * width
            slots = [
                s for s in (ring.slots.get(bucket * per + i) for i in range(per)) if s is not None
            ]
            span_ms = min(width, max(now_ms - begin, 1000))
            points.append(_merge(slots, time_ms=begin, span_ms=span_ms))
        return points


def _merge(slots: list[Slot], *, time_ms: int, span_ms: int) -> HistoryPoint:
    """The point of one bucket made of ``slots`` (oldest first)."""
    sampled = [s for s in slots if s.sampled]
    latest = sampled[-1] if sampled else None
    return HistoryPoint(
        time_ms=time_ms,
        accepted_speed_hs=sum(s.accepted_work for s in slots) * 1000 // span_ms,
        rejected_speed_hs=sum(s.rejected_work for s in slots) * 1000 // span_ms,
        shares=sum(s.accepted_shares for s in slots),
        workers=max((s.workers for s in sampled), default=0),
        best_price_msat=None if latest is None else latest.best_price_msat,
        fill_price_msat=None if latest is None else latest.fill_price_msat,
        spent_msat=sum(s.spent_msat for s in slots),
        earned_msat=sum(s.earned_msat for s in slots),
    )


def export_history(history: History) -> HistoryState:
    """A copy of everything ``history`` holds."""
    return HistoryState(
        minutes=history._minutes.export(),
        hours=history._hours.export(),
        first_ms=history.first_ms,
        accepted_work_total=history.accepted_work_total,
        spent_msat_total=history.spent_msat_total,
        earned_msat_total=history.earned_msat_total,
        fees_msat_total=history.fees_msat_total,
    )


def import_history(state: HistoryState) -> History:
    """The ``History`` that exported ``state``."""
    history = History()
    history._minutes.load(state.minutes)
    history._hours.load(state.hours)
    history.first_ms = state.first_ms
    history.accepted_work_total = state.accepted_work_total
    history.spent_msat_total = state.spent_msat_total
    history.earned_msat_total = state.earned_msat_total
    history.fees_msat_total = state.fees_msat_total
    return history
