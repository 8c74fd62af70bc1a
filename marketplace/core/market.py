"""The market: accounts, orders, charging and settlement as one event-sourced component.

Theory of operation
-------------------
``Market`` is the durable half of the marketplace (``component = "market"``). Every method
below "commands" validates its arguments against the current state and raises a
``MarketError`` subclass, changing nothing, or emits events (``events.py``) that ``apply``
folds into the state (``book.py``). A command therefore must run inside ``Engine.execute``,
which journals what it emitted before anyone hears the answer. Replaying the journal into a
fresh ``Market`` built with the same ``MarketConfig`` gives the same state and the same ids.

The ephemeral half is the ``Fleet`` (``fleet.py``): connected workers, their speed estimates and
the allocation, changed directly (no events, no ``execute``) by the driver. The two do not
import each other. The rules read two facts of the allocation, so the commands that need them
take it as an argument, the small read-only ``FleetFacts``: a fixed order's price is the best
served standard price plus a premium, and it is refused when the free plus standard-held speed
is under its limit. The market hands the fleet its queue (``allocation_queue``); the read-only
views that combine both halves (order views, the order book, statistics, a seller's workers)
are in ``views.py``, the snapshot state in ``state.py``, the whole-state checks in
``invariants.py``.

Money flows (all integer msat, see ``ledger.py``): creating or refilling an order escrows its
amount; each accepted share raises the order's spend by its exact value (fractions carried, see
``orders.py``); every settlement moves each order's new spend out of escrow as a ``charge`` and
pays it out as ``fee`` + ``earning`` lines (``settlement.py``); cancel and expiry release the
unspent budget at once. Hence at every event boundary: the sum of all balances equals deposits
minus withdrawals, charges equal earnings plus fees, and each buyer's escrow equals what its
orders still hold (``invariants.check_market``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from marketplace.core import events
from marketplace.core.account_commands import AccountCommands
from marketplace.core.allocation import FleetFacts, OrderSlot
from marketplace.core.book import MAX_NAME, Book
from marketplace.core.errors import (
    InvalidArgument,
    NotFound,
    RuleViolation,
)
from marketplace.core.eventsourced import EventSourced
from marketplace.core.model import (
    Balance,
    LedgerEntry,
    MarketConfig,
    MarketRules,
    OrderType,
)
from marketplace.core.order_rules import (
    check_active,
    check_limit_change,
    check_new_order,
    check_price_change,
    priority_key,
    require_int,
)
from marketplace.core.order_rules import fixed_quote as quote_for
from marketplace.core.pool_orders import PoolOrders
from marketplace.core.rules import RuleChange, check_change
from marketplace.core.state import SNAPSHOT_FORMAT, MarketState, export_book, import_book
from marketplace.core.work import WORK_RULE
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm


class Market(EventSourced[events.MarketEvent], AccountCommands, PoolOrders):
    """The durable marketplace (see the module doc). Not thread-safe; run it from one trio task
    at a time (synchronous methods are atomic under trio)."""

    component: ClassVar[str] = "market"
    event_type: ClassVar[Any] = events.MarketEvent
    state_type: ClassVar[Any] = MarketState
    state_format: ClassVar[int] = SNAPSHOT_FORMAT

    def __init__(self, *, config: MarketConfig) -> None:
        super().__init__()
        for algorithm, rules in config.markets.items():
            if rules.algorithm is not algorithm:
                raise ValueError(f"rules for {rules.algorithm} filed under {algorithm}")
        self._config = config
        self._book = Book(config=config)

    # ------------------------------------------------------------------ reads

    @property
    def config(self) -> MarketConfig:
        """The configuration this market was built with."""
        return self._config

    @property
    def book(self) -> Book:
        """The durable state, for ``views``, ``state`` and ``invariants``: read it, never write."""
        return self._book

    def rules(self, algorithm: Algorithm) -> MarketRules:
        """The rules in force in ``algorithm``'s market (the config's, with the operator's
        changes). Raises ``InvalidArgument`` for no such market."""
        self._config.rules(algorithm)
        return self._book.rules[algorithm]

    def algorithms(self) -> list[Algorithm]:
        """The markets this marketplace runs."""
        return list(self._config.markets)

    @property
    def clock_ms(self) -> int:
        """The latest time any event carried (the time views use when not given one)."""
        return self._book.clock_ms

    def next_settle_ms(self) -> int | None:
        """When the next settlement is due (``None``: none yet, settle at will)."""
        if self._book.last_settle_ms is None:
            return None
        return self._book.last_settle_ms + self._config.settle_interval_ms

    def has_account(self, account: str) -> bool:
        """Whether ``account`` exists (created, ensured, or paid as a seller)."""
        return self._book.ledger.has(account)

    def _account(self, account: str) -> str:
        if not isinstance(account, str) or not self._book.ledger.has(account):
            raise NotFound("no such account", {"account": str(account)[:MAX_NAME]})
        return account

    def balance(self, account: str) -> Balance:
        """The account's balances. Raises ``NotFound`` for an unknown account."""
        return self._book.ledger.balance(self._account(account))

    def ledger(
        self, account: str, *, limit: int = 50, before: int | None = None
    ) -> list[LedgerEntry]:
        """The account's ledger entries, newest first: at most ``limit``, ids below ``before``.

        Raises ``NotFound`` for an unknown account, ``InvalidArgument`` for a negative limit.
        """
        self._account(account)
        if require_int("limit", limit) < 0:
            raise InvalidArgument("limit must not be negative", {"field": "limit"})
        if before is not None:
            require_int("before", before)
        return self._book.ledger.entries(account, limit=limit, before=before)

    def order_active(self, order_id: str) -> bool:
        """Whether ``order_id`` names an order that can still buy hash power (any account)."""
        order = self._book.orders.get(order_id)
        return order is not None and order.active

    def allocation_queue(
        self, algorithm: Algorithm, *, alive: Callable[[str], bool] | None = None
    ) -> list[OrderSlot]:
        """The active orders of ``algorithm``'s market that can take hash power, best first,
        as ``Fleet.rebalance`` takes them: an order with a pool only while ``alive(order_id)``
        says its pool is (never without ``alive``). Raises ``InvalidArgument`` for no such
        market."""
        self.rules(algorithm)
        active = [
            o
            for o in self._book.active[algorithm].values()
            if o.pool_id is None or (alive is not None and alive(o.id))
        ]
        return [OrderSlot(o.id, o.limit_hs) for o in sorted(active, key=priority_key)]

    def fixed_quote(self, algorithm: Algorithm, *, fleet: FleetFacts) -> int:
        """The price a fixed order gets now: the best served standard price + 10%, at least
        the minimum. Raises ``InvalidArgument`` for no such market."""
        rules = self.rules(algorithm)
        return quote_for(rules, served_standard_prices=self.served_prices(algorithm, fleet=fleet))

    def served_prices(self, algorithm: Algorithm, *, fleet: FleetFacts) -> list[int]:
        """The prices of the active standard orders of a market that hold workers."""
        active = self._book.active[algorithm]
        return [
            active[order_id].price_msat
            for order_id in fleet.served_orders(algorithm)
            if order_id in active and active[order_id].type is OrderType.STANDARD
        ]

    def _free_speed(self, algorithm: Algorithm, *, fleet: FleetFacts, now_ms: int) -> int:
        """The speed a new fixed order may claim: all connected speed minus what fixed orders
        claim. A fixed order claims what it holds or its limit, whichever is more: one created
        since the last rebalance holds nothing yet, and two such orders must not both be
        promised the same free speed."""
        held, total = fleet.held_speeds(algorithm, now_ms=now_ms)
        fixed = sum(
            max(held.get(order.id, 0), order.limit_hs)
            for order in self._book.active[algorithm].values()
            if order.type is OrderType.FIXED
        )
        return total - fixed

    def change_rules(self, *, algorithm: Algorithm, change: RuleChange, now_ms: int) -> MarketRules:
        """Command: change some of ``algorithm``'s rules from now on (``rules.py``); the rules
        in force after. Raises ``InvalidArgument`` for no such market, no change or a value
        out of its range."""
        self.rules(algorithm)
        check_change(change)
        self._emit(events.RulesChanged(algorithm=algorithm, change=change, time_ms=now_ms))
        return self.rules(algorithm)

    # ------------------------------------------------------------------ commands: orders

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
        fleet: FleetFacts,
        pool_id: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Command: place an order, escrowing ``amount_msat`` from the account's available
        balance; return its id. ``pool_id``: the buyer's pool it mines for (the caller checked
        it is the account's, of this algorithm: ``PoolRegistry.usable``); ``request_id``: the
        request it was placed with, which the order keeps.

        Standard orders bid ``price_msat``; fixed orders get the market's quote (a given
        ``price_msat`` is the most the buyer accepts) and need a limit and a duration; both
        read the allocation from ``fleet``.
        Raises ``NotFound`` (account), ``InvalidArgument`` (bad values, no such market, no
        price for a standard order), ``RuleViolation`` (minimums, fixed order without duration
        or bigger than the free plus standard-held speed, quote above the buyer's price),
        ``InsufficientBalance``.
        """
        self._account(account)
        rules = self.rules(algorithm)
        order_type = check_new_order(
            rules,
            type=type,
            price_msat=price_msat,
            limit_hs=limit_hs,
            amount_msat=amount_msat,
            duration_s=duration_s,
        )
        if order_type is OrderType.FIXED:
            quote = self.fixed_quote(algorithm, fleet=fleet)
            if price_msat is not None and price_msat < quote:
                raise RuleViolation(
                    "the fixed price is above the price given",
                    {"field": "price", "fixed_price_msat": quote},
                )
            free = self._free_speed(algorithm, fleet=fleet, now_ms=now_ms)
            if free < limit_hs:
                raise RuleViolation(
                    "the market cannot serve that limit",
                    {"field": "limit", "available_hs": max(0, free), "algorithm": algorithm.value},
                )
            price_msat = quote
        assert price_msat is not None
        self._require_available(account, amount_msat)
        order_id = f"o-{self._book.order_seq + 1:06d}"
        self._emit(
            events.OrderCreated(
                order_id=order_id,
                account=account,
                algorithm=algorithm,
                type=order_type,
                price_msat=price_msat,
                limit_hs=limit_hs,
                amount_msat=amount_msat,
                duration_s=duration_s,
                time_ms=now_ms,
                pool_id=pool_id,
                request_id=request_id,
            )
        )
        return order_id

    def set_price(self, *, account: str, order_id: str, price_msat: int, now_ms: int) -> None:
        """Command: change a standard order's price: up any time, down by at most the market's
        step once per interval. Raises ``NotFound``, ``InvalidState`` (not active, fixed, too
        far, too soon), ``RuleViolation`` (under the minimum), ``InvalidArgument``."""
        self.change_order(account=account, order_id=order_id, price_msat=price_msat, now_ms=now_ms)

    def set_limit(self, *, account: str, order_id: str, limit_hs: int, now_ms: int) -> None:
        """Command: change a standard order's limit (0 = none). Raises ``NotFound``,
        ``InvalidState`` (not active, fixed), ``RuleViolation`` (under the minimum),
        ``InvalidArgument``."""
        self.change_order(account=account, order_id=order_id, limit_hs=limit_hs, now_ms=now_ms)

    def change_order(
        self,
        *,
        account: str,
        order_id: str,
        price_msat: int | None = None,
        limit_hs: int | None = None,
        now_ms: int,
    ) -> None:
        """Command: a standard order's new price, new limit or both (NiceHash changes them in
        one call), each under ``set_price``'s and ``set_limit``'s rules; both are checked
        before either changes, so a refusal changes nothing. Raises as those two do."""
        order = self._book.owned(account, order_id)
        rules = self.rules(order.algorithm)
        check_active(order)
        if price_msat is not None:
            check_price_change(order, rules, price_msat=price_msat, now_ms=now_ms)
        if limit_hs is not None:
            check_limit_change(order, rules, limit_hs=limit_hs)
        if price_msat is not None and price_msat != order.price_msat:
            self._emit(
                events.PriceChanged(order_id=order.id, price_msat=price_msat, time_ms=now_ms)
            )
        if limit_hs is not None and limit_hs != order.limit_hs:
            self._emit(events.LimitChanged(order_id=order.id, limit_hs=limit_hs, time_ms=now_ms))

    def refill(self, *, account: str, order_id: str, amount_msat: int, now_ms: int) -> None:
        """Command: add ``amount_msat`` to an active order's budget, escrowing it. Raises
        ``NotFound``, ``InvalidState``, ``InvalidArgument`` (amount <= 0),
        ``InsufficientBalance``."""
        order = self._book.owned(account, order_id)
        check_active(order)
        if require_int("amount", amount_msat) <= 0:
            raise InvalidArgument("amount must be positive", {"field": "amount"})
        self._require_available(account, amount_msat)
        self._emit(events.Refilled(order_id=order.id, amount_msat=amount_msat, time_ms=now_ms))

    def cancel(self, *, account: str, order_id: str, now_ms: int) -> None:
        """Command: cancel an active order, releasing its unspent budget at once. Raises
        ``NotFound``, ``InvalidState`` (not active)."""
        order = self._book.owned(account, order_id)
        check_active(order)
        self._emit(events.OrderCancelled(order_id=order.id, time_ms=now_ms))

    def expire(self, *, now_ms: int) -> list[str]:
        """Command: end every active order whose duration is over at ``now_ms``, releasing its
        unspent budget; return their ids."""
        ended = [
            order.id
            for active in self._book.active.values()
            for order in active.values()
            if order.ends_ms is not None and order.ends_ms <= now_ms
        ]
        for order_id in ended:
            self._emit(events.OrderExpired(order_id=order_id, time_ms=now_ms))
        return ended

    # ------------------------------------------------------------------ commands: shares

    def record_share(
        self, share: Share, *, order_id: str | None, billable: bool = True
    ) -> int | None:
        """Command: record one checked share (accepted or not); the price it was charged at,
        if it was. An accepted share for an active order of its market is charged to it (never
        past its budget); one for an order that ended, an unknown order, ``order_id=None`` or
        not ``billable`` (its pool can no longer take it) charges nothing and only counts in
        statistics. The worker's speed estimate is the fleet's: tell it after
        (``Fleet.share_accepted``)."""
        order = None if order_id is None else self._book.orders.get(order_id)
        price = None
        if (
            order is not None
            and share.accepted
            and billable
            and order.algorithm is share.algorithm
            and order.charges_at(share.time_ms)
        ):
            price = order.price_msat
        self._emit(
            events.ShareRecorded(
                conn_id=share.conn_id,
                account=share.account,
                worker=share.worker,
                algorithm=share.algorithm,
                order_id=order_id,
                difficulty=share.difficulty,
                accepted=share.accepted,
                reason=share.reason,
                time_ms=share.time_ms,
                work_rule=WORK_RULE,
                billable=billable,
            )
        )
        return price

    def settle(self, *, now_ms: int) -> None:
        """Command: settle every order's spend since the last settlement (see
        ``settlement.py``). Does nothing (and emits nothing) when there is nothing to settle."""
        book = self._book
        if not book.unsettled and not any(o.refund_due_msat for o in book.refunds_due.values()):
            return
        settlement_id = f"s-{self._book.settlement_seq + 1:06d}"
        self._emit(events.Settled(settlement_id=settlement_id, time_ms=now_ms))

    def record_sample(
        self,
        algorithm: Algorithm,
        *,
        workers: int,
        best_price_msat: int | None,
        fill_price_msat: int | None,
        now_ms: int,
    ) -> bool:
        """Command: journal what the (ephemeral) allocation looks like, for the history;
        whether it was news (a repeat within the minute emits nothing). Raises
        ``InvalidArgument`` for no such market."""
        self.rules(algorithm)
        event = events.MarketSampled(
            algorithm=algorithm,
            workers=workers,
            best_price_msat=best_price_msat,
            fill_price_msat=fill_price_msat,
            time_ms=now_ms,
        )
        if not self._book.market_history[algorithm].sample_is_news(event):
            return False
        self._emit(event)
        return True

    # ------------------------------------------------------------------ events and snapshots

    def apply(self, event: events.MarketEvent) -> None:
        """Fold one event into the state (deterministic; see ``book.py``)."""
        self._book.apply(event)

    def blank(self) -> Market:
        """A market under this one's config with no event applied (see ``EventSourced``)."""
        return Market(config=self._config)

    def export_state(self) -> MarketState:
        """The durable state (see ``EventSourced``); connections and allocation are not in it."""
        return export_book(self._book)

    def import_state(self, state: MarketState) -> None:
        """Become the market that exported ``state`` (indexes rebuilt from the orders).

        Raises ``RuntimeError`` on a market that has applied events, ``ValueError`` for a state
        that does not hold together (an unknown order, a market this config does not run)."""
        if not self._book.fresh:
            raise RuntimeError("import_state needs a fresh market")
        self._book = import_book(state, config=self._config)
