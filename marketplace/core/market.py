"""The market facade: accounts, orders, allocation, charging, settlement and statistics.

Theory of operation
-------------------
``Market`` is one event-sourced component (``component = "market"``). Every command validates
its arguments against the current state and raises a ``MarketError`` subclass, changing
nothing, or emits one event (``events.py``) that ``apply`` folds into the state. Durable state
is what the events rebuild: accounts and the ledger, orders (with their exact charge
accumulators), settlements and statistics (derived from the share events). Replaying the
journal into a fresh ``Market`` built with the same ``MarketConfig`` gives the same state and
the same ids: ids come from counters in the state (``o-000001``, ``w-000001``, ``s-000001``),
times from the events.

Ephemeral state is not evented: the connected workers (one per Stratum connection), their
speed estimates and the allocation. The driver (``marketplace.engine``/``bridge``) reports
joins and leaves, records every checked share, and calls ``rebalance`` after any command and on
its periodic tick; ``rebalance`` returns only the moves, so a quiet market costs one O(workers)
pass and no notifications. Orders that end release their workers at the next rebalance, and a
share for an order that is no longer active charges nothing.

Money flows (all integer msat, see ``ledger.py``): creating or refilling an order escrows its
amount; each accepted share raises the order's spend by its exact value (fractions carried, see
``orders.py``); every settlement moves each order's new spend out of escrow as a ``charge`` and
pays it out as ``fee`` + ``earning`` lines (``settlement.py``); cancel and expiry release the
unspent budget at once. Hence at every event boundary: the sum of all balances equals deposits
minus withdrawals, charges equal earnings plus fees, and each buyer's escrow equals what its
orders still hold (``check_invariants``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, ClassVar

import msgspec

from marketplace.core.allocation import OrderSlot, allocate, check_allocation
from marketplace.core.errors import (
    InsufficientBalance,
    InvalidArgument,
    InvalidState,
    NotFound,
    RuleViolation,
)
from marketplace.core.events import (
    AccountCreated,
    Deposited,
    LimitChanged,
    MarketEvent,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    PriceChanged,
    Refilled,
    Settled,
    ShareRecorded,
    Withdrawn,
)
from marketplace.core.eventsourced import EventSourced
from marketplace.core.ledger import Ledger, LedgerState
from marketplace.core.model import (
    Assignment,
    Balance,
    LedgerEntry,
    LedgerKind,
    MarketConfig,
    MarketRules,
    MarketStatsView,
    OrderBookEntry,
    OrderBookView,
    OrderStatus,
    OrderType,
    OrderView,
    SellerKey,
    StatPoint,
    WorkerKey,
    WorkerView,
)
from marketplace.core.names import check_account_name
from marketplace.core.orders import (
    Order,
    OrderState,
    check_active,
    check_amount,
    check_duration,
    check_limit,
    check_limit_change,
    check_price,
    check_price_change,
    priority_key,
    share_value,
)
from marketplace.core.orders import fixed_quote as quote_for
from marketplace.core.settlement import split_spend
from marketplace.core.stats import RateWindow, Series, SeriesState, share_work
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

_MAX_NAME = 128
# NamedTuple's generated __new__ costs a Python call per instance; a cold rebalance of 10,000
# workers makes 10,000 moves, so build them the way ``NamedTuple._make`` does.
_new_tuple = tuple.__new__


class _Check:
    """The inputs and answer of the last rebalance of a market, for ``check_invariants``."""

    __slots__ = ("held", "idle", "queue", "speed")

    def __init__(
        self,
        *,
        queue: list[OrderSlot],
        held: dict[str, list[WorkerKey]],
        idle: list[WorkerKey],
        speed: dict[WorkerKey, int],
    ) -> None:
        self.queue = queue
        self.held = held
        self.idle = idle
        self.speed = speed


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise InvalidArgument(f"{field} must be a non-empty string of at most {_MAX_NAME} chars")
    return value


def _check_int(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{field} must be an integer", {"field": field})
    return value


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One order and its statistics in a snapshot."""

    order: OrderState
    stats: SeriesState


class SellerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One seller worker's statistics in a snapshot."""

    account: str
    worker: str
    algorithm: Algorithm
    stats: SeriesState


class MarketState(msgspec.Struct, frozen=True, kw_only=True):
    """The market's durable state (what its events rebuild), for snapshots."""

    ledger: LedgerState
    orders: list[OrderRecord]  # in creation order
    unsettled: list[str]  # order ids, in the order the next settlement takes them
    sellers: list[SellerRecord]
    market_stats: dict[Algorithm, SeriesState]
    order_seq: int
    withdrawal_seq: int
    settlement_seq: int
    clock_ms: int
    last_settle_ms: int | None


class Market(EventSourced[MarketEvent]):
    """The marketplace core (see the module doc). Not thread-safe; run it from one trio task
    at a time (synchronous methods are atomic under trio)."""

    component: ClassVar[str] = "market"
    event_type: ClassVar[Any] = MarketEvent
    state_type: ClassVar[Any] = MarketState

    def __init__(self, *, config: MarketConfig) -> None:
        super().__init__()
        for algorithm, rules in config.markets.items():
            if rules.algorithm is not algorithm:
                raise ValueError(f"rules for {rules.algorithm} filed under {algorithm}")
        self._config = config
        self._ledger = Ledger()
        self._ledger.open(config.fee_account)
        # Durable (rebuilt by apply).
        self._orders: dict[str, Order] = {}
        self._orders_of: dict[str, list[Order]] = {}
        self._active: dict[Algorithm, dict[str, Order]] = {a: {} for a in config.markets}
        self._order_seq = 0
        self._withdrawal_seq = 0
        self._settlement_seq = 0
        self._unsettled: dict[str, Order] = {}
        self._order_stats: dict[str, Series] = {}
        self._seller_stats: dict[SellerKey, Series] = {}
        self._market_stats: dict[Algorithm, Series] = {a: Series() for a in config.markets}
        self._clock_ms = 0
        self._last_settle_ms: int | None = None
        # Ephemeral (connections and allocation).
        self._workers: dict[Algorithm, dict[WorkerKey, RateWindow]] = {
            a: {} for a in config.markets
        }
        self._conns: dict[int, WorkerKey] = {}
        self._seller_conns: dict[SellerKey, dict[WorkerKey, None]] = {}
        self._serving: dict[WorkerKey, str | None] = {}
        self._holdings: dict[Algorithm, dict[str, dict[WorkerKey, None]]] = {
            a: {} for a in config.markets
        }
        self._idle: dict[Algorithm, dict[WorkerKey, None]] = {a: {} for a in config.markets}
        self._checks: dict[Algorithm, _Check] = {}

    # ------------------------------------------------------------------ configuration

    @property
    def config(self) -> MarketConfig:
        """The configuration this market was built with."""
        return self._config

    def rules(self, algorithm: Algorithm) -> MarketRules:
        """The rules of ``algorithm``'s market. Raises ``InvalidArgument`` for no such market."""
        try:
            return self._config.markets[algorithm]
        except KeyError:
            raise InvalidArgument(
                f"no market for {algorithm!r}",
                {"algorithm": str(algorithm)[:32]},
            ) from None

    def algorithms(self) -> list[Algorithm]:
        """The markets this marketplace runs."""
        return list(self._config.markets)

    @property
    def clock_ms(self) -> int:
        """The latest time any event carried (the time views use when not given one)."""
        return self._clock_ms

    def next_settle_ms(self) -> int | None:
        """When the next settlement is due (``None``: none yet, settle at will)."""
        if self._last_settle_ms is None:
            return None
        return self._last_settle_ms + self._config.settle_interval_ms

    # ------------------------------------------------------------------ accounts

    def create_account(self, *, account: str, now_ms: int) -> None:
        """Open an account. Raises ``InvalidState`` if it exists, ``InvalidArgument`` for a bad
        name."""
        check_account_name(account)
        if self._ledger.has(account):
            raise InvalidState("account exists", {"account": account})
        self._emit(AccountCreated(account=account, time_ms=now_ms))

    def ensure_account(self, *, account: str, now_ms: int) -> None:
        """Open ``account`` if it does not exist (sellers). Raises ``InvalidArgument`` for a bad
        name."""
        check_account_name(account)
        if not self._ledger.has(account):
            self._emit(AccountCreated(account=account, time_ms=now_ms))

    def has_account(self, account: str) -> bool:
        """Whether ``account`` exists (created, ensured, or paid as a seller)."""
        return self._ledger.has(account)

    def _account(self, account: str) -> str:
        if not isinstance(account, str) or not self._ledger.has(account):
            raise NotFound("no such account", {"account": str(account)[:_MAX_NAME]})
        return account

    def balance(self, account: str) -> Balance:
        """The account's balances. Raises ``NotFound`` for an unknown account."""
        return self._ledger.balance(self._account(account))

    def ledger(
        self, account: str, *, limit: int = 50, before: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger entries, newest first: at most ``limit``, ids below ``before``.

        Raises ``NotFound`` for an unknown account, ``InvalidArgument`` for a negative limit.
        """
        self._account(account)
        if _check_int("limit", limit) < 0:
            raise InvalidArgument("limit must not be negative", {"field": "limit"})
        if before is not None:
            _check_int("before", before)
        return self._ledger.entries(account, limit=limit, before=before)

    def deposit(self, *, account: str, amount_msat: int, now_ms: int) -> LedgerEntry:
        """Faucet money into ``account``. Raises ``RuleViolation`` when the faucet is off,
        ``NotFound`` for an unknown account, ``InvalidArgument`` for an amount <= 0."""
        if not self._config.faucet:
            raise RuleViolation("the faucet is off", {"faucet": "off"})
        self._account(account)
        if _check_int("amount", amount_msat) <= 0:
            raise InvalidArgument("amount must be positive", {"field": "amount"})
        self._emit(Deposited(account=account, amount_msat=amount_msat, time_ms=now_ms))
        return self._ledger.entries(account, limit=1)[0]

    def withdraw(self, *, account: str, amount_msat: int, address: str, now_ms: int) -> LedgerEntry:
        """Record a withdrawal of ``amount_msat`` (0 allowed) to ``address``.

        Raises ``NotFound`` (account), ``InvalidArgument`` (negative amount, bad address),
        ``InsufficientBalance`` (more than available).
        """
        self._account(account)
        _check_name("address", address)
        if _check_int("amount", amount_msat) < 0:
            raise InvalidArgument("amount must not be negative", {"field": "amount"})
        self._require_available(account, amount_msat)
        withdrawal_id = f"w-{self._withdrawal_seq + 1:06d}"
        self._emit(
            Withdrawn(
                withdrawal_id=withdrawal_id,
                account=account,
                amount_msat=amount_msat,
                address=address,
                time_ms=now_ms,
            )
        )
        return self._ledger.entries(account, limit=1)[0]

    # ------------------------------------------------------------------ orders

    def _require_available(self, account: str, amount_msat: int) -> None:
        """Raise ``InsufficientBalance`` unless ``account`` has ``amount_msat`` available."""
        available = self._ledger.balance(account).available_msat
        if amount_msat > available:
            raise InsufficientBalance(
                "amount exceeds the available balance", {"available_msat": available}
            )

    def order_active(self, order_id: str) -> bool:
        """Whether ``order_id`` names an order that can still buy hash power (any account)."""
        order = self._orders.get(order_id)
        return order is not None and order.active

    def _own_order(self, account: str, order_id: str) -> Order:
        order = self._orders.get(order_id) if isinstance(order_id, str) else None
        if order is None or order.account != account:
            raise NotFound("no such order", {"id": str(order_id)[:_MAX_NAME]})
        return order

    def _order_view(self, order: Order, *, now_ms: int | None = None) -> OrderView:
        now = self._clock_ms if now_ms is None else now_ms
        speed = self._order_stats[order.id].accepted_speed(
            now_ms=now, window_ms=self._config.speed_window_ms
        )
        holders = self._holdings[order.algorithm].get(order.id)
        return order.view(
            accepted_speed_hs=speed, workers=len(holders) if holders and order.active else 0
        )

    def _held_speeds(self, algorithm: Algorithm, now_ms: int) -> tuple[int, int]:
        """(speed claimed by fixed orders, all connected speed) of a market at ``now_ms``.

        A fixed order claims what it holds or its limit, whichever is more: one created since
        the last rebalance holds nothing yet, and two such orders must not both be promised the
        same free speed."""
        total = 0
        active = self._active[algorithm]
        held: dict[str, int] = {}
        for key, window in self._workers[algorithm].items():
            speed = window.rate(now_ms)
            total += speed
            order_id = self._serving.get(key)
            if order_id is not None:
                held[order_id] = held.get(order_id, 0) + speed
        fixed = sum(
            max(held.get(order.id, 0), order.limit_hs)
            for order in active.values()
            if order.type is OrderType.FIXED
        )
        return fixed, total

    def create_order(
        self,
        *,
        account: str,
        algorithm: Algorithm,
        type: OrderType,
        price_msat: int | None,
        limit_hs: int,
        amount_msat: int,
        duration_s: int | None,
        now_ms: int,
    ) -> OrderView:
        """Place an order, escrowing ``amount_msat`` from the account's available balance.

        Standard orders bid ``price_msat``; fixed orders get the market's quote (a given
        ``price_msat`` is the most the buyer accepts) and need a limit and a duration.
        Raises ``NotFound`` (account), ``InvalidArgument`` (bad values, no such market, no
        price for a standard order), ``RuleViolation`` (minimums, fixed order without duration
        or bigger than the free plus standard-held speed, quote above the buyer's price),
        ``InsufficientBalance``.
        """
        self._account(account)
        rules = self.rules(algorithm)
        try:
            order_type = OrderType(type)
        except ValueError:
            raise InvalidArgument("type must be standard or fixed", {"field": "type"}) from None
        if order_type is OrderType.STANDARD:
            if price_msat is None:
                raise InvalidArgument("a standard order needs a price", {"field": "price"})
            check_price(rules, price_msat)
        elif price_msat is not None:
            _check_int("price", price_msat)
        check_limit(rules, limit_hs, type=order_type)
        check_amount(rules, amount_msat)
        check_duration(duration_s, type=order_type)
        if order_type is OrderType.FIXED:
            quote = self.fixed_quote(algorithm)
            if price_msat is not None and price_msat < quote:
                raise RuleViolation(
                    "the fixed price is above the price given",
                    {"field": "price", "fixed_price_msat": quote},
                )
            fixed_held, total = self._held_speeds(algorithm, now_ms)
            if total - fixed_held < limit_hs:
                raise RuleViolation(
                    "the market cannot serve that limit",
                    {
                        "field": "limit",
                        "available_hs": max(0, total - fixed_held),
                        "algorithm": algorithm.value,
                    },
                )
            price_msat = quote
        assert price_msat is not None
        self._require_available(account, amount_msat)
        order_id = f"o-{self._order_seq + 1:06d}"
        self._emit(
            OrderCreated(
                order_id=order_id,
                account=account,
                algorithm=algorithm,
                type=order_type,
                price_msat=price_msat,
                limit_hs=limit_hs,
                amount_msat=amount_msat,
                duration_s=duration_s,
                time_ms=now_ms,
            )
        )
        return self._order_view(self._orders[order_id], now_ms=now_ms)

    def get_order(self, *, account: str, order_id: str, now_ms: int | None = None) -> OrderView:
        """``account``'s order ``order_id``. Raises ``NotFound`` (also for another account's)."""
        return self._order_view(self._own_order(account, order_id), now_ms=now_ms)

    def list_orders(
        self, *, account: str, status: OrderStatus | None = None, now_ms: int | None = None
    ) -> list[OrderView]:
        """``account``'s orders (optionally of one status), oldest first. An unknown account
        has no orders."""
        return [
            self._order_view(order, now_ms=now_ms)
            for order in self._orders_of.get(account, ())
            if status is None or order.status == status
        ]

    def set_price(self, *, account: str, order_id: str, price_msat: int, now_ms: int) -> OrderView:
        """Change a standard order's price: up any time, down by at most the market's step
        once per interval. Raises ``NotFound``, ``InvalidState`` (not active, fixed, too far,
        too soon), ``RuleViolation`` (under the minimum), ``InvalidArgument``."""
        order = self._own_order(account, order_id)
        rules = self.rules(order.algorithm)
        check_price_change(order, rules, price_msat=price_msat, now_ms=now_ms)
        if price_msat != order.price_msat:
            self._emit(PriceChanged(order_id=order.id, price_msat=price_msat, time_ms=now_ms))
        return self._order_view(order, now_ms=now_ms)

    def set_limit(self, *, account: str, order_id: str, limit_hs: int, now_ms: int) -> OrderView:
        """Change a standard order's limit (0 = none). Raises ``NotFound``, ``InvalidState``
        (not active, fixed), ``RuleViolation`` (under the minimum), ``InvalidArgument``."""
        order = self._own_order(account, order_id)
        check_limit_change(order, self.rules(order.algorithm), limit_hs=limit_hs)
        if limit_hs != order.limit_hs:
            self._emit(LimitChanged(order_id=order.id, limit_hs=limit_hs, time_ms=now_ms))
        return self._order_view(order, now_ms=now_ms)

    def refill(self, *, account: str, order_id: str, amount_msat: int, now_ms: int) -> OrderView:
        """Add ``amount_msat`` to an active order's budget, escrowing it. Raises ``NotFound``,
        ``InvalidState``, ``InvalidArgument`` (amount <= 0), ``InsufficientBalance``."""
        order = self._own_order(account, order_id)
        check_active(order)
        if _check_int("amount", amount_msat) <= 0:
            raise InvalidArgument("amount must be positive", {"field": "amount"})
        self._require_available(account, amount_msat)
        self._emit(Refilled(order_id=order.id, amount_msat=amount_msat, time_ms=now_ms))
        return self._order_view(order, now_ms=now_ms)

    def cancel(self, *, account: str, order_id: str, now_ms: int) -> OrderView:
        """Cancel an active order, releasing its unspent budget at once. Raises ``NotFound``,
        ``InvalidState`` (not active)."""
        order = self._own_order(account, order_id)
        check_active(order)
        self._emit(OrderCancelled(order_id=order.id, time_ms=now_ms))
        return self._order_view(order, now_ms=now_ms)

    def order_stats(
        self, *, account: str, order_id: str, since_ms: int | None, now_ms: int
    ) -> list[StatPoint]:
        """The order's minute points from ``since_ms`` (default and floor: its creation, at
        most 24 h back) to ``now_ms``. Raises ``NotFound``."""
        order = self._own_order(account, order_id)
        start = order.created_ms if since_ms is None else max(since_ms, order.created_ms)
        end = now_ms if order.ended_ms is None else min(now_ms, order.ended_ms)
        return self._order_stats[order.id].points(since_ms=start, now_ms=max(end, start))

    def expire(self, *, now_ms: int) -> list[str]:
        """End every active order whose duration is over at ``now_ms``, releasing its unspent
        budget; return their ids."""
        ended = [
            order.id
            for active in self._active.values()
            for order in active.values()
            if order.ends_ms is not None and order.ends_ms <= now_ms
        ]
        for order_id in ended:
            self._emit(OrderExpired(order_id=order_id, time_ms=now_ms))
        return ended

    # ------------------------------------------------------------------ market views

    def _served_standard_prices(self, algorithm: Algorithm) -> list[int]:
        active = self._active[algorithm]
        return [
            active[order_id].price_msat
            for order_id, workers in self._holdings[algorithm].items()
            if workers and order_id in active and active[order_id].type is OrderType.STANDARD
        ]

    def fixed_quote(self, algorithm: Algorithm) -> int:
        """The price a fixed order gets now: the best served standard price + 10%, at least
        the minimum. Raises ``InvalidArgument`` for no such market."""
        rules = self.rules(algorithm)
        return quote_for(rules, served_standard_prices=self._served_standard_prices(algorithm))

    def _queue(self, algorithm: Algorithm) -> list[Order]:
        return sorted(self._active[algorithm].values(), key=priority_key)

    def orderbook(self, algorithm: Algorithm, *, now_ms: int | None = None) -> OrderBookView:
        """The active orders best first, without owners, and their total accepted speed."""
        self.rules(algorithm)
        entries = []
        for order in self._queue(algorithm):
            view = self._order_view(order, now_ms=now_ms)
            entries.append(
                OrderBookEntry(
                    id=view.id,
                    type=view.type,
                    price_msat=view.price_msat,
                    limit_hs=view.limit_hs,
                    accepted_speed_hs=view.accepted_speed_hs,
                    workers=view.workers,
                )
            )
        return OrderBookView(
            algorithm=algorithm,
            total_speed_hs=sum(e.accepted_speed_hs for e in entries),
            orders=entries,
        )

    def market_stats(self, algorithm: Algorithm, *, now_ms: int) -> MarketStatsView:
        """Connected workers, accepted speed, shares/s and rejects of a market."""
        self.rules(algorithm)
        series = self._market_stats[algorithm]
        window = self._config.speed_window_ms
        shares, covered = series.accepted_shares_in(now_ms=now_ms, window_ms=window)
        return MarketStatsView(
            algorithm=algorithm,
            workers=len(self._workers[algorithm]),
            accepted_speed_hs=series.accepted_speed(now_ms=now_ms, window_ms=window),
            shares_per_s_milli=shares * 1_000_000 // covered,
            rejected_speed_hs=series.rejected_speed(now_ms=now_ms, window_ms=window),
            rejected=series.rejected_recent(now_ms=now_ms),
            active_orders=len(self._active[algorithm]),
            fixed_price_msat=self.fixed_quote(algorithm),
        )

    def workers_of(self, account: str, *, now_ms: int) -> list[WorkerView]:
        """``account``'s workers as a seller: every (worker name, algorithm) that sent shares
        or is connected, sorted by name then algorithm."""
        sellers = {key for key in self._seller_stats if key.account == account}
        sellers.update(key for key in self._seller_conns if key.account == account)
        views = []
        window = self._config.speed_window_ms
        for seller in sorted(sellers):
            series = self._seller_stats.get(seller) or Series()
            conns = self._seller_conns.get(seller, {})
            order_id = next(
                (o for o in (self._serving.get(c) for c in conns) if o is not None), None
            )
            views.append(
                WorkerView(
                    name=seller.worker,
                    algorithm=seller.algorithm,
                    connected=bool(conns),
                    speed_hs=series.accepted_speed(now_ms=now_ms, window_ms=window),
                    difficulty=series.last_difficulty,
                    accepted=series.accepted_shares,
                    rejected=dict(sorted(series.rejected_shares.items())),
                    order_id=order_id,
                    earned_msat=series.earned_msat,
                )
            )
        return views

    # ------------------------------------------------------------------ seller side

    def worker_joined(self, *, worker: WorkerKey, estimate_hs: int, now_ms: int) -> None:
        """A connection's first worker authorized: it joins its market idle. ``estimate_hs``
        <= 0 means "use the market's start estimate". Joining again updates the estimate.
        Raises ``InvalidArgument`` for no such market."""
        rules = self.rules(worker.algorithm)
        prior = estimate_hs if estimate_hs > 0 else rules.start_estimate_hs
        window = self._workers[worker.algorithm].get(worker)
        if window is not None:
            window.prior_hs = prior
            return
        self._workers[worker.algorithm][worker] = RateWindow(
            joined_ms=now_ms, prior_hs=prior, window_ms=self._config.speed_window_ms
        )
        self._conns[worker.conn_id] = worker
        seller = SellerKey(worker.account, worker.worker, worker.algorithm)
        self._seller_conns.setdefault(seller, {})[worker] = None
        self._serving[worker] = None
        self._idle[worker.algorithm][worker] = None

    def worker_left(self, *, worker: WorkerKey, now_ms: int) -> None:
        """The connection is gone; its order loses it now. Idempotent."""
        if self._workers.get(worker.algorithm, {}).pop(worker, None) is None:
            return
        if self._conns.get(worker.conn_id) == worker:
            del self._conns[worker.conn_id]
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

    def worker_speed(self, worker: WorkerKey, *, now_ms: int) -> int:
        """The estimate the allocation uses for a connected worker. Raises ``NotFound``."""
        window = self._workers.get(worker.algorithm, {}).get(worker)
        if window is None:
            raise NotFound("no such worker", {"worker": worker.worker})
        return window.rate(now_ms)

    def assignment(self, worker: WorkerKey) -> str | None:
        """The order ``worker`` serves (``None``: idle or not connected)."""
        return self._serving.get(worker)

    def record_share(self, share: Share, *, order_id: str | None) -> None:
        """Record one checked share (accepted or not). An accepted share for an active order of
        its market is charged to it (never past its budget); one for an order that ended, an
        unknown order or ``order_id=None`` charges nothing and only counts in statistics."""
        self._emit(
            ShareRecorded(
                conn_id=share.conn_id,
                account=share.account,
                worker=share.worker,
                algorithm=share.algorithm,
                order_id=order_id,
                difficulty=share.difficulty,
                accepted=share.accepted,
                reason=share.reason,
                time_ms=share.time_ms,
            )
        )

    def rebalance(self, algorithm: Algorithm, *, now_ms: int) -> list[Assignment]:
        """Re-run the allocation of one market at ``now_ms``; return only the moves (a worker
        with its new order, ``None`` = now idle), in queue order then idle."""
        self.rules(algorithm)
        queue = [OrderSlot(o.id, o.limit_hs) for o in self._queue(algorithm)]
        speed = {key: window.rate(now_ms) for key, window in self._workers[algorithm].items()}
        holdings = self._holdings[algorithm]
        idle = self._idle[algorithm]
        result = allocate(
            queue=queue,
            holdings={order_id: list(workers) for order_id, workers in holdings.items()},
            idle=list(idle),
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
        self._checks[algorithm] = _Check(
            queue=queue, held=result.held, idle=result.idle, speed=speed
        )
        return moves

    def settle(self, *, now_ms: int) -> None:
        """Settle every order's spend since the last settlement (see ``settlement.py``). Does
        nothing (and emits nothing) when there is nothing to settle."""
        if not self._unsettled:
            return
        settlement_id = f"s-{self._settlement_seq + 1:06d}"
        self._emit(Settled(settlement_id=settlement_id, time_ms=now_ms))

    # ------------------------------------------------------------------ apply

    def apply(self, event: MarketEvent) -> None:
        """Fold one event into the state (deterministic; see the module doc)."""
        self._clock_ms = max(self._clock_ms, event.time_ms)
        match event:
            case ShareRecorded():
                self._apply_share(event)
            case AccountCreated(account=account):
                self._ledger.open(account)
            case Deposited():
                self._ledger.post(
                    account=event.account,
                    kind=LedgerKind.DEPOSIT,
                    amount_msat=event.amount_msat,
                    ref="faucet",
                    time_ms=event.time_ms,
                )
            case Withdrawn():
                self._withdrawal_seq += 1
                self._ledger.post(
                    account=event.account,
                    kind=LedgerKind.WITHDRAWAL,
                    amount_msat=-event.amount_msat,
                    ref=f"{event.withdrawal_id} {event.address}",
                    time_ms=event.time_ms,
                )
            case OrderCreated():
                self._apply_order_created(event)
            case PriceChanged():
                order = self._orders[event.order_id]
                if event.price_msat < order.price_msat:
                    order.last_lowered_ms = event.time_ms
                order.price_msat = event.price_msat
            case LimitChanged():
                self._orders[event.order_id].limit_hs = event.limit_hs
            case Refilled():
                order = self._orders[event.order_id]
                self._ledger.post(
                    account=order.account,
                    kind=LedgerKind.ESCROW,
                    amount_msat=-event.amount_msat,
                    ref=order.id,
                    time_ms=event.time_ms,
                )
                order.amount_msat += event.amount_msat
            case OrderCancelled():
                self._end_order(self._orders[event.order_id], OrderStatus.CANCELLED, event.time_ms)
            case OrderExpired():
                order = self._orders[event.order_id]
                self._end_order(order, OrderStatus.EXPIRED, event.time_ms)
                # It ended at its end time, whenever the expiry tick noticed.
                if order.ends_ms is not None:
                    order.ended_ms = min(order.ends_ms, event.time_ms)
            case Settled():
                self._apply_settled(event)

    def _apply_order_created(self, event: OrderCreated) -> None:
        self._order_seq += 1
        ends_ms = None if event.duration_s is None else event.time_ms + event.duration_s * 1000
        order = Order(
            order_id=event.order_id,
            seq=self._order_seq,
            account=event.account,
            algorithm=event.algorithm,
            type=event.type,
            price_msat=event.price_msat,
            limit_hs=event.limit_hs,
            amount_msat=event.amount_msat,
            created_ms=event.time_ms,
            ends_ms=ends_ms,
        )
        self._ledger.post(
            account=event.account,
            kind=LedgerKind.ESCROW,
            amount_msat=-event.amount_msat,
            ref=order.id,
            time_ms=event.time_ms,
        )
        self._orders[order.id] = order
        self._orders_of.setdefault(order.account, []).append(order)
        self._active[order.algorithm][order.id] = order
        self._order_stats[order.id] = Series()

    def _end_order(self, order: Order, status: OrderStatus, time_ms: int) -> None:
        released = order.end(status, time_ms=time_ms)
        del self._active[order.algorithm][order.id]
        if released:
            self._ledger.post(
                account=order.account,
                kind=LedgerKind.RELEASE,
                amount_msat=released,
                ref=order.id,
                time_ms=time_ms,
            )

    def _apply_share(self, event: ShareRecorded) -> None:
        reason = event.reason or "other"
        seller = SellerKey(event.account, event.worker, event.algorithm)
        seller_series = self._seller_stats.get(seller)
        if seller_series is None:
            seller_series = self._seller_stats[seller] = Series()
        seller_series.add_share(
            time_ms=event.time_ms,
            difficulty=event.difficulty,
            accepted=event.accepted,
            reason=reason,
        )
        market_series = self._market_stats.get(event.algorithm)
        if market_series is None:
            return  # a market this configuration does not run
        market_series.add_share(
            time_ms=event.time_ms,
            difficulty=event.difficulty,
            accepted=event.accepted,
            reason=reason,
        )
        order = None if event.order_id is None else self._orders.get(event.order_id)
        if order is not None and order.algorithm is event.algorithm:
            self._order_stats[order.id].add_share(
                time_ms=event.time_ms,
                difficulty=event.difficulty,
                accepted=event.accepted,
                reason=reason,
            )
            # A share found after the order's end time (before the expiry tick) is not charged.
            in_time = order.ends_ms is None or event.time_ms < order.ends_ms
            if event.accepted and order.active and in_time:
                difficulty = Fraction(event.difficulty)
                value = share_value(
                    price_msat=order.price_msat,
                    difficulty=event.difficulty,
                    unit_hs=self._config.markets[order.algorithm].unit_hs,
                )
                charged = order.charge(value)
                order.period_work[seller] = order.period_work.get(seller, 0) + difficulty
                self._unsettled[order.id] = order
                if charged:
                    self._order_stats[order.id].add_money(time_ms=event.time_ms, spend_msat=charged)
                if not order.active:  # the budget is spent
                    order.ended_ms = event.time_ms
                    del self._active[order.algorithm][order.id]
        if event.accepted:
            key = self._conns.get(event.conn_id)
            if key is not None:
                self._workers[key.algorithm][key].add(
                    time_ms=event.time_ms, work=share_work(event.difficulty)
                )

    def _apply_settled(self, event: Settled) -> None:
        self._settlement_seq += 1
        self._last_settle_ms = event.time_ms
        for order in self._unsettled.values():
            spend = order.unsettled_msat
            if spend:
                rules = self._config.markets[order.algorithm]
                split = split_spend(
                    spend_msat=spend,
                    work=order.period_work,
                    fee_bps=rules.fee_bps,
                    fee_carry=order.fee_carry,
                    tiebreak=f"{event.settlement_id}/{order.id}",
                )
                ref = f"{event.settlement_id}/{order.id}"
                self._ledger.post(
                    account=order.account,
                    kind=LedgerKind.CHARGE,
                    amount_msat=-spend,
                    ref=ref,
                    time_ms=event.time_ms,
                )
                if split.fee_msat:
                    self._ledger.post(
                        account=self._config.fee_account,
                        kind=LedgerKind.FEE,
                        amount_msat=split.fee_msat,
                        ref=ref,
                        time_ms=event.time_ms,
                    )
                for payout in split.payouts:
                    self._ledger.open(payout.seller.account)
                    self._ledger.post(
                        account=payout.seller.account,
                        kind=LedgerKind.EARNING,
                        amount_msat=payout.amount_msat,
                        ref=ref,
                        time_ms=event.time_ms,
                    )
                    self._seller_stats[payout.seller].add_money(
                        time_ms=event.time_ms, earned_msat=payout.amount_msat
                    )
                order.settled_msat += spend
                order.fee_carry = split.fee_carry
                order.period_work = {}
            # With no whole msat spent yet, the work stays: the value it made is still in the
            # order's accrual and is paid, to these sellers, with the next spend.
        self._unsettled = {}

    # ------------------------------------------------------------------ snapshots

    def export_state(self) -> MarketState:
        """The durable state (see ``EventSourced``); connections and allocation are not in it."""
        return MarketState(
            ledger=self._ledger.export_state(),
            orders=[
                OrderRecord(order=order.export_state(), stats=self._order_stats[oid].export_state())
                for oid, order in self._orders.items()
            ],
            unsettled=list(self._unsettled),
            sellers=[
                SellerRecord(
                    account=key.account,
                    worker=key.worker,
                    algorithm=key.algorithm,
                    stats=series.export_state(),
                )
                for key, series in self._seller_stats.items()
            ],
            market_stats={a: series.export_state() for a, series in self._market_stats.items()},
            order_seq=self._order_seq,
            withdrawal_seq=self._withdrawal_seq,
            settlement_seq=self._settlement_seq,
            clock_ms=self._clock_ms,
            last_settle_ms=self._last_settle_ms,
        )

    def import_state(self, state: MarketState) -> None:
        """Become the market that exported ``state`` (indexes rebuilt from the orders).

        Raises ``RuntimeError`` on a market that has applied events, ``ValueError`` for a state
        that does not hold together (an unknown order, a market this config does not run)."""
        if self._orders or self._clock_ms or self._ledger.all_entries() or self._order_seq:
            raise RuntimeError("import_state needs a fresh market")
        ledger = Ledger.from_state(state.ledger)
        orders: dict[str, Order] = {}
        active: dict[Algorithm, dict[str, Order]] = {a: {} for a in self._config.markets}
        orders_of: dict[str, list[Order]] = {}
        order_stats: dict[str, Series] = {}
        for record in state.orders:
            order = Order.from_state(record.order)
            if order.algorithm not in active:
                raise ValueError(f"order {order.id} is in a market this config does not run")
            orders[order.id] = order
            orders_of.setdefault(order.account, []).append(order)
            if order.active:
                active[order.algorithm][order.id] = order
            order_stats[order.id] = Series.from_state(record.stats)
        unknown = [oid for oid in state.unsettled if oid not in orders]
        if unknown:
            raise ValueError(f"unsettled orders {unknown[:3]} are not in the snapshot")
        self._ledger = ledger
        self._ledger.open(self._config.fee_account)
        self._orders = orders
        self._orders_of = orders_of
        self._active = active
        self._order_stats = order_stats
        self._unsettled = {oid: orders[oid] for oid in state.unsettled}
        self._seller_stats = {
            SellerKey(r.account, r.worker, r.algorithm): Series.from_state(r.stats)
            for r in state.sellers
        }
        self._market_stats = {a: Series() for a in self._config.markets}
        for algorithm, saved in state.market_stats.items():
            if algorithm in self._market_stats:
                self._market_stats[algorithm] = Series.from_state(saved)
        self._order_seq = state.order_seq
        self._withdrawal_seq = state.withdrawal_seq
        self._settlement_seq = state.settlement_seq
        self._clock_ms = state.clock_ms
        self._last_settle_ms = state.last_settle_ms

    # ------------------------------------------------------------------ checks

    def check_invariants(self) -> None:
        """Assert every whole-state invariant; ``AssertionError`` names the first broken one.

        Ledger balances equal the ledger's sums and are never negative; money is conserved
        (balances = deposits - withdrawals, charges = earnings + fees); each buyer's escrow is
        what its orders still hold; no order spent past its amount; statuses agree with
        spend; the last rebalance of each market obeys the allocation rule.
        """
        self._ledger.check()
        escrow: dict[str, int] = {}
        settled = 0
        for order in self._orders.values():
            assert 0 <= order.settled_msat <= order.spent_msat <= order.amount_msat, (
                f"{order.id}: settled {order.settled_msat}, spent {order.spent_msat}, "
                f"amount {order.amount_msat}"
            )
            assert order.spent_msat <= order.accrued, f"{order.id} charged more than it accrued"
            if order.status is OrderStatus.COMPLETED:
                assert order.spent_msat == order.amount_msat, f"{order.id} completed early"
                assert order.released_msat == 0, f"{order.id} completed yet released"
            elif order.status is OrderStatus.ACTIVE:
                assert order.spent_msat < order.amount_msat, f"{order.id} active but spent"
                assert order.id in self._active[order.algorithm], f"{order.id} not indexed"
                assert order.released_msat == 0, f"{order.id} active yet released"
            else:
                assert order.released_msat == order.amount_msat - order.spent_msat, (
                    f"{order.id} released {order.released_msat}"
                )
            if not order.active:
                assert order.id not in self._active[order.algorithm], f"{order.id} still indexed"
            if order.unsettled_msat:
                assert order.id in self._unsettled, f"{order.id} has unsettled spend unqueued"
            escrow[order.account] = escrow.get(order.account, 0) + order.escrowed_msat
            settled += order.settled_msat
        for account in self._ledger.accounts():
            held = self._ledger.balance(account).escrowed_msat
            assert held == escrow.get(account, 0), (
                f"{account}: escrow {held} but orders hold {escrow.get(account, 0)}"
            )
        charged = -self._ledger.total_by_kind()[LedgerKind.CHARGE]
        assert charged == settled, f"ledger charged {charged}, orders settled {settled}"
        for algorithm, holdings in self._holdings.items():
            for order_id, workers in holdings.items():
                for worker in workers:
                    assert self._serving.get(worker) == order_id, f"{worker} serving mismatch"
            for worker in self._idle[algorithm]:
                assert self._serving.get(worker) is None, f"{worker} idle but serving"
            assert len(self._workers[algorithm]) == len(self._idle[algorithm]) + sum(
                len(w) for w in holdings.values()
            ), f"{algorithm}: workers lost between idle and holdings"
        for algorithm, check in self._checks.items():
            problems = check_allocation(
                queue=check.queue, held=check.held, idle=check.idle, speed=check.speed
            )
            assert not problems, f"{algorithm} allocation: {problems}"
