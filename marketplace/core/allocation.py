"""Who serves whom: the allocation rule as a pure function, with stickiness.

Theory of operation
-------------------
The queue is the market's active orders, best first (fixed orders by creation, then standard
orders by price descending, ties by creation; see ``orders.priority_key``). Walking it, each
order gets workers while its allocated speed is under its limit (0 = no limit), so it overshoots
by at most the last worker it took. Workers are whole: a worker serves one order or none.

Stickiness: every move makes the worker's in-flight work stale, so ``allocate`` starts from the
current holdings and moves only what the rule forces:

1. An order first keeps its own workers (oldest first) while under its limit; the ones it no
   longer needs go to the free pool.
2. Still under its limit, it takes free workers (idle ones, those of orders that left the
   queue, those released above), oldest first.
3. Still under its limit, it takes workers from the lowest-priority order below it that has
   any (most recently assigned first): lower bids lose hash power before higher ones.

An order that ends step 3 under its limit has taken every worker below it, so the result obeys
the rule: no worker is idle or on a lower-priority order while a higher-priority order is under
its limit (``check_allocation`` states this for tests). Each worker is looked at a bounded
number of times and the lowest-holder pointer only moves up the queue, so one call is
O(workers + orders): 10,000 workers and 1,000 orders take a few milliseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Generic, NamedTuple, Protocol, TypeVar

from stratum.core.shares import Algorithm

K = TypeVar("K", bound=Hashable)


class FleetFacts(Protocol):
    """What the market's rules read from the allocation (``fleet.Fleet`` provides it): a fixed
    order's price and the speed it may claim depend on who serves what."""

    def served_orders(self, algorithm: Algorithm) -> Iterable[str]:
        """The orders of ``algorithm``'s market that hold at least one worker."""
        ...

    def held_speeds(self, algorithm: Algorithm, *, now_ms: int) -> tuple[dict[str, int], int]:
        """(the estimated speed each order holds, all connected speed) at ``now_ms``."""
        ...


class OrderSlot(NamedTuple):
    """An order in the queue: its id and its limit in H/s (0 = no limit)."""

    order_id: str
    limit_hs: int


class Allocation(NamedTuple, Generic[K]):
    """The answer: each queued order's workers (in holding order) and the idle workers."""

    held: dict[str, list[K]]
    idle: list[K]


def allocate(
    *,
    queue: Sequence[OrderSlot],
    holdings: Mapping[str, Sequence[K]],
    idle: Sequence[K],
    speed: Mapping[K, int],
) -> Allocation[K]:
    """Allocate workers to the queue, moving as few as the rule allows (see module doc).

    ``holdings`` are the current workers of each order (orders not in ``queue`` lose theirs),
    ``idle`` the workers serving nobody, ``speed`` every worker's estimated H/s. Every worker
    of ``holdings`` and ``idle`` appears exactly once in the answer. Raises ``KeyError`` for a
    worker without a speed.
    """
    queued = {slot.order_id for slot in queue}
    lists = [list(holdings.get(slot.order_id, ())) for slot in queue]
    free: deque[K] = deque(idle)
    for order_id, workers in holdings.items():
        if order_id not in queued:
            free.extend(workers)
    held: dict[str, list[K]] = {}
    low = len(queue) - 1
    for k, slot in enumerate(queue):
        limit = slot.limit_hs
        own, lists[k] = lists[k], []
        kept: list[K] = []
        total = 0
        for worker in own:
            if limit == 0 or total < limit:
                kept.append(worker)
                total += speed[worker]
            else:
                free.append(worker)
        while free and (limit == 0 or total < limit):
            worker = free.popleft()
            kept.append(worker)
            total += speed[worker]
        while limit == 0 or total < limit:
            while low > k and not lists[low]:
                low -= 1
            if low <= k:
                break
            worker = lists[low].pop()
            kept.append(worker)
            total += speed[worker]
        held[slot.order_id] = kept
    return Allocation(held=held, idle=list(free))


def check_allocation(
    *,
    queue: Sequence[OrderSlot],
    held: Mapping[str, Sequence[K]],
    idle: Sequence[K],
    speed: Mapping[K, int],
) -> list[str]:
    """Every way ``held``/``idle`` break the allocation rule for ``queue`` (empty if none).

    Checks: each worker appears once; no order outside the queue holds workers; an order
    overshoots its limit by at most one worker; no worker is idle or on a lower-priority order
    while a higher-priority order is under its limit.
    """
    problems: list[str] = []
    seen: set[K] = set()
    queued = {slot.order_id for slot in queue}
    for order_id, workers in held.items():
        if workers and order_id not in queued:
            problems.append(f"{order_id} is not in the queue but holds {len(workers)} workers")
    for worker in [*idle, *(w for workers in held.values() for w in workers)]:
        if worker in seen:
            problems.append(f"{worker} is allocated twice")
        seen.add(worker)
    first_hungry: int | None = None
    for k, slot in enumerate(queue):
        workers = held.get(slot.order_id, ())
        total = sum(speed[w] for w in workers)
        if slot.limit_hs and workers and total - max(speed[w] for w in workers) >= slot.limit_hs:
            problems.append(
                f"{slot.order_id} overshoots its limit {slot.limit_hs} by more than one worker"
            )
        if first_hungry is None and (slot.limit_hs == 0 or total < slot.limit_hs):
            first_hungry = k
        elif first_hungry is not None and workers:
            problems.append(
                f"{slot.order_id} holds {len(workers)} workers while the higher-priority "
                f"{queue[first_hungry].order_id} is under its limit"
            )
    if first_hungry is not None and idle:
        problems.append(
            f"{len(idle)} workers idle while {queue[first_hungry].order_id} is under its limit"
        )
    return problems
