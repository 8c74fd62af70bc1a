"""The fleet: connected workers, their speed estimates and who serves which order, right now.

Theory of operation
-------------------
A ``Fleet`` is the market's ephemeral half. Nothing here is evented or journaled, and nothing
here needs ``Engine.execute``: a restart begins with an empty fleet, and every worker joins again
when its miner reconnects. The durable half (``market.py``) never writes here; the driver
(``marketplace.bridge`` and ``marketplace.scheduler``) tells the fleet what happened:

- ``worker_joined`` / ``worker_left``: one Stratum connection (a ``WorkerKey``) comes or goes.
  A worker joins idle, with its start estimate. ``worker_resumed``: a connection told to
  reconnect (to take another extranonce layout) came back as a new one and takes over its
  place: its order and its speed estimate, so the move costs no second rebalance.
- ``share_accepted``: after the market recorded an accepted share, its work feeds the
  connection's ``RateWindow``, so the estimate follows the work actually done.
- ``rebalance(algorithm, queue=..., now_ms=...)``: re-run the allocation rule
  (``allocation.py``) against the queue of active orders the market gives
  (``Market.allocation_queue``), starting from the current holdings so only what the rule
  forces moves; return only the moves. A quiet market costs one O(workers) pass and no
  notifications.

An order that ended keeps its workers until the next rebalance (the market reports it as
holding none, see ``views.py``). What the market's rules read from here (the speed fixed orders
hold, which orders are served) is the ``FleetFacts`` protocol of ``allocation.py``, which this class
satisfies without either module importing the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

from marketplace.core.allocation import OrderSlot, allocate
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.model import Assignment, MarketConfig, SellerKey, WorkerKey
from marketplace.core.stats import RateWindow
from marketplace.core.work import share_work
from stratum.core.shares import Algorithm

# NamedTuple's generated __new__ costs a Python call per instance; a cold rebalance of 10,000
# workers makes 10,000 moves, so build them the way ``NamedTuple._make`` does.
_new_tuple = tuple.__new__


class LastRebalance(NamedTuple):
    """The inputs and answer of a market's last rebalance, for ``invariants.check_fleet``."""

    queue: list[OrderSlot]
    held: dict[str, list[WorkerKey]]
    idle: list[WorkerKey]
    speed: dict[WorkerKey, int]


class FleetMarket(NamedTuple):
    """One market's allocation state, read-only, for ``invariants.check_fleet``."""

    workers: Mapping[WorkerKey, RateWindow]
    holdings: Mapping[str, Mapping[WorkerKey, None]]
    idle: Mapping[WorkerKey, None]
    last: LastRebalance | None


class Fleet:
    """The connected workers of every market and their allocation (see the module doc). Not
    thread-safe; run it from one trio task at a time, like the ``Market``."""

    def __init__(self, *, config: MarketConfig) -> None:
        self._config = config
        self._workers: dict[Algorithm, dict[WorkerKey, RateWindow]] = {
            a: {} for a in config.markets
        }
        self._seller_conns: dict[SellerKey, dict[WorkerKey, None]] = {}
        self._serving: dict[WorkerKey, str | None] = {}
        self._holdings: dict[Algorithm, dict[str, dict[WorkerKey, None]]] = {
            a: {} for a in config.markets
        }
        self._idle: dict[Algorithm, dict[WorkerKey, None]] = {a: {} for a in config.markets}
        self._last: dict[Algorithm, LastRebalance] = {}

    # ------------------------------------------------------------------ what happened

    def worker_joined(self, *, worker: WorkerKey, estimate_hs: int, now_ms: int) -> None:
        """A connection's first worker authorized: it joins its market idle. ``estimate_hs``
        <= 0 means "use the market's start estimate". Joining again updates the estimate.
        Raises ``InvalidArgument`` for no such market."""
        rules = self._config.rules(worker.algorithm)
        prior = estimate_hs if estimate_hs > 0 else rules.start_estimate_hs
        window = self._workers[worker.algorithm].get(worker)
        if window is not None:
            window.prior_hs = prior
            return
        self._workers[worker.algorithm][worker] = RateWindow(
            joined_ms=now_ms, prior_hs=prior, window_ms=self._config.speed_window_ms
        )
        seller = SellerKey(worker.account, worker.worker, worker.algorithm)
        self._seller_conns.setdefault(seller, {})[worker] = None
        self._serving[worker] = None
        self._idle[worker.algorithm][worker] = None

    def worker_left(self, *, worker: WorkerKey, now_ms: int) -> None:
        """The connection is gone; its order loses it now. Idempotent."""
        if self._workers.get(worker.algorithm, {}).pop(worker, None) is None:
            return
        seller = SellerKey(worker.account, worker.worker, worker.algorithm)
        conns = self._seller_conns.get(seller)
        if conns is not None:
            conns.pop(worker, None)
            if not conns:
                del self._seller_conns[seller]
        order_id = self._serving.pop(worker, None)
        if order_id is None:
            self._idle[worker.algorithm].pop(worker, None)
        else:
            holders = self._holdings[worker.algorithm][order_id]
            del holders[worker]
            if not holders:
                del self._holdings[worker.algorithm][order_id]

    def worker_resumed(self, *, old: WorkerKey, new: WorkerKey) -> None:
        """The connection ``old`` came back as ``new`` (same account, worker and market): it
        takes over ``old``'s order, place in line and speed estimate. Raises ``NotFound``
        when ``old`` is not connected, ``InvalidArgument`` for another market or seller."""
        if (old.account, old.worker, old.algorithm) != (new.account, new.worker, new.algorithm):
            raise InvalidArgument("a resumed worker keeps its name and market")
        workers = self._workers.get(old.algorithm, {})
        window = workers.pop(old, None)
        if window is None:
            raise NotFound("no such worker", {"worker": old.worker})
        workers[new] = window
        conns = self._seller_conns[SellerKey(old.account, old.worker, old.algorithm)]
        del conns[old]
        conns[new] = None
        order_id = self._serving.pop(old)
        self._serving[new] = order_id
        if order_id is None:
            idle = self._idle[old.algorithm]
            del idle[old]
            idle[new] = None
        else:
            held = self._holdings[old.algorithm]
            held[order_id] = {new if key == old else key: None for key in held[order_id]}

    def share_accepted(self, *, worker: WorkerKey, difficulty: float, time_ms: int) -> None:
        """Count an accepted share's work in ``worker``'s estimate; call it after the market
        recorded the share. A worker that already left is ignored (its share was in flight)."""
        window = self._workers.get(worker.algorithm, {}).get(worker)
        if window is not None:
            window.add(time_ms=time_ms, work=share_work(difficulty, worker.algorithm))

    def clock_jumped(self, delta_ms: int) -> None:
        """Market time jumped ``delta_ms`` forward (an operator's advance): shift every speed
        estimate's history with it, so the jump does not read as connected workers going idle
        (their hash rate did not change; only the market's clock did)."""
        for workers in self._workers.values():
            for window in workers.values():
                window.shift(delta_ms)

    def rebalance(
        self, algorithm: Algorithm, *, queue: Sequence[OrderSlot], now_ms: int
    ) -> list[Assignment]:
        """Re-run the allocation of one market at ``now_ms`` against ``queue`` (its active
        orders, best first: ``Market.allocation_queue``); return only the moves (a worker with
        its new order, ``None`` = now idle), in queue order then idle. Raises
        ``InvalidArgument`` for no such market."""
        self._config.rules(algorithm)
        queue = list(queue)
        speed = {key: window.rate(now_ms) for key, window in self._workers[algorithm].items()}
        holdings = self._holdings[algorithm]
        result = allocate(
            queue=queue,
            holdings={order_id: list(workers) for order_id, workers in holdings.items()},
            idle=list(self._idle[algorithm]),
            speed=speed,
        )
        serving = self._serving
        moves: list[Assignment] = []
        new_holdings: dict[str, dict[WorkerKey, None]] = {}
        for order_id, workers in result.held.items():
            if not workers:
                continue
            new_holdings[order_id] = dict.fromkeys(workers)
            for worker in workers:
                if serving[worker] != order_id:
                    serving[worker] = order_id
                    moves.append(_new_tuple(Assignment, (worker, order_id)))
        for worker in result.idle:
            if serving[worker] is not None:
                serving[worker] = None
                moves.append(_new_tuple(Assignment, (worker, None)))
        self._holdings[algorithm] = new_holdings
        self._idle[algorithm] = dict.fromkeys(result.idle)
        self._last[algorithm] = LastRebalance(
            queue=queue, held=result.held, idle=result.idle, speed=speed
        )
        return moves

    # ------------------------------------------------------------------ reads

    def worker_speed(self, worker: WorkerKey, *, now_ms: int) -> int:
        """The estimate the allocation uses for a connected worker. Raises ``NotFound``."""
        window = self._workers.get(worker.algorithm, {}).get(worker)
        if window is None:
            raise NotFound("no such worker", {"worker": worker.worker})
        return window.rate(now_ms)

    def assignment(self, worker: WorkerKey) -> str | None:
        """The order ``worker`` serves (``None``: idle or not connected)."""
        return self._serving.get(worker)

    def connected(self, algorithm: Algorithm) -> int:
        """How many workers are connected to ``algorithm``'s market."""
        return len(self._workers.get(algorithm, ()))

    def holders(self, algorithm: Algorithm, order_id: str) -> int:
        """How many workers serve ``order_id`` since the last rebalance."""
        return len(self._holdings.get(algorithm, {}).get(order_id, ()))

    def served_orders(self, algorithm: Algorithm) -> Iterator[str]:
        """The orders of ``algorithm``'s market holding at least one worker (``FleetFacts``)."""
        return iter(self._holdings.get(algorithm, {}))

    def held_speeds(self, algorithm: Algorithm, *, now_ms: int) -> tuple[dict[str, int], int]:
        """(the estimated speed each order holds, every connected worker's speed) of a market
        at ``now_ms`` (``FleetFacts``)."""
        total = 0
        held: dict[str, int] = {}
        serving = self._serving
        for key, window in self._workers.get(algorithm, {}).items():
            speed = window.rate(now_ms)
            total += speed
            order_id = serving.get(key)
            if order_id is not None:
                held[order_id] = held.get(order_id, 0) + speed
        return held, total

    def sellers(self, account: str) -> dict[SellerKey, str | None]:
        """``account``'s connected (worker name, algorithm)s, each with the order one of its
        connections serves (``None``: idle)."""
        return {
            seller: next((o for o in map(self._serving.get, conns) if o is not None), None)
            for seller, conns in self._seller_conns.items()
            if seller.account == account
        }

    def inspect(self, algorithm: Algorithm) -> FleetMarket:
        """One market's allocation state, read-only views of the live maps (for checks)."""
        return FleetMarket(
            workers=self._workers[algorithm],
            holdings=self._holdings[algorithm],
            idle=self._idle[algorithm],
            last=self._last.get(algorithm),
        )

    def assignments(self) -> Mapping[WorkerKey, str | None]:
        """Every connected worker's order (``None``: idle), read-only (for checks)."""
        return self._serving

    def algorithms(self) -> list[Algorithm]:
        """The markets this fleet serves (those of its ``MarketConfig``)."""
        return list(self._config.markets)
