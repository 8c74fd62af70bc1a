"""The market's durable state and the fold that changes it: ``Book.apply(event)``.

Theory of operation
-------------------
A ``Book`` is everything the market's events rebuild: accounts and the ledger, orders (with
their exact charge accumulators), the queue of orders with spend to settle, statistics derived
from the share events, the id counters and the latest event time. ``apply`` is deterministic
and never raises for an event that a ``Market`` command emitted: the command validated it
against this same state first. Replaying the journal into a fresh ``Book`` built with the same
``MarketConfig`` gives the same state and the same ids (``o-000001``, ``w-000001``,
``s-000001``): ids come from the counters here, times from the events.

Nothing here knows about connections or the allocation: a share is charged to the order its job
came from, whatever worker sent it (unless it is not billable: its pool could no longer take
it), and nothing in ``apply`` feeds a speed estimate. A buyer's pool's answers to forwarded
shares are counted on the order; the value of the charged ones it rejected is refunded to the
buyer at the next settlement, paid by the fee account (``refund`` and ``refund_paid`` lines,
after the period's charges and payouts), so sellers keep what they earned and money stays
conserved. Order-local
changes go through ``Order`` methods; this module does the cross-cutting part (the ledger lines,
the indexes, the statistics).

Other modules read the attributes (``Market`` to validate commands, ``views`` and
``invariants`` to report and check); only ``apply`` and ``state.import_book`` write them.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from marketplace.core.errors import NotFound
from marketplace.core.events import (
    AccountCreated,
    Deposited,
    LimitChanged,
    MarketEvent,
    MarketSampled,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPoolSet,
    PoolAnswered,
    PriceChanged,
    Refilled,
    RulesChanged,
    Settled,
    ShareRecorded,
    Withdrawn,
)
from marketplace.core.history import History
from marketplace.core.ledger import Ledger
from marketplace.core.model import LedgerKind, MarketConfig, MarketRules, OrderStatus, SellerKey
from marketplace.core.orders import CANCELLED_BY_BUYER, Order, share_value, share_value_ratio
from marketplace.core.rules import changed
from marketplace.core.settlement import split_spend
from marketplace.core.stats import Series
from marketplace.core.work import hashes_per_diff1, share_work
from stratum.core.shares import Algorithm

#: The events that change an order's settings or status (its ``updated_ms``).
_ORDER_CHANGES: Final = (
    PriceChanged,
    LimitChanged,
    Refilled,
    OrderCancelled,
    OrderPoolSet,
    OrderExpired,
)

#: Longest id or name echoed back in an error.
MAX_NAME = 128


class Book:
    """The durable state of one market (see the module doc). Not thread-safe."""

    def __init__(self, *, config: MarketConfig) -> None:
        self.config = config
        #: The rules in force per market: the config's, with the operator's changes on top.
        self.rules: dict[Algorithm, MarketRules] = dict(config.markets)
        self.ledger = Ledger()
        self.ledger.open(config.fee_account, overdraft=True)
        self.orders: dict[str, Order] = {}  # in creation order
        self.orders_of: dict[str, list[Order]] = {}
        #: Active orders per market: what can still buy hash power.
        self.active: dict[Algorithm, dict[str, Order]] = {a: {} for a in config.markets}
        #: Orders with work since the last settlement, in the order it takes them.
        self.unsettled: dict[str, Order] = {}
        #: Orders with refunds (shares their pool rejected) for the next settlement.
        self.refunds_due: dict[str, Order] = {}
        self.order_stats: dict[str, Series] = {}
        self.seller_stats: dict[SellerKey, Series] = {}
        self.market_stats: dict[Algorithm, Series] = {a: Series() for a in config.markets}
        #: Minute and hour buckets per market (``history.py``) and per account (money only).
        self.market_history: dict[Algorithm, History] = {a: History() for a in config.markets}
        self.account_history: dict[str, History] = {}
        self.order_seq = 0
        self.withdrawal_seq = 0
        self.settlement_seq = 0
        #: The latest time any event carried.
        self.clock_ms = 0
        self.last_settle_ms: int | None = None

    @property
    def fresh(self) -> bool:
        """Whether no event has been applied (the only state ``import_book`` may replace)."""
        return not (self.orders or self.clock_ms or self.ledger.all_entries() or self.order_seq)

    def owned(self, account: str, order_id: str) -> Order:
        """``account``'s order ``order_id``. Raises ``NotFound`` (also for another account's)."""
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None or order.account != account:
            raise NotFound("no such order", {"id": str(order_id)[:MAX_NAME]})
        return order

    # ------------------------------------------------------------------ the fold

    def apply(self, event: MarketEvent) -> None:
        """Fold one event into the state (deterministic; see the module doc)."""
        self.clock_ms = max(self.clock_ms, event.time_ms)
        match event:
            case ShareRecorded():
                self._apply_share(event)
            case AccountCreated(account=account):
                self.ledger.open(account)
            case Deposited():
                self.ledger.post(
                    account=event.account,
                    kind=LedgerKind.DEPOSIT,
                    amount_msat=event.amount_msat,
                    ref="faucet",
                    time_ms=event.time_ms,
                )
            case Withdrawn():
                self.withdrawal_seq += 1
                self.ledger.post(
                    account=event.account,
                    kind=LedgerKind.WITHDRAWAL,
                    amount_msat=-event.amount_msat,
                    ref=f"{event.withdrawal_id} {event.address}",
                    time_ms=event.time_ms,
                )
            case OrderCreated():
                self._apply_order_created(event)
            case PriceChanged():
                self.orders[event.order_id].change_price(event.price_msat, time_ms=event.time_ms)
            case LimitChanged():
                self.orders[event.order_id].change_limit(event.limit_hs)
            case Refilled():
                order = self.orders[event.order_id]
                self._escrow(order, event.amount_msat, time_ms=event.time_ms)
                order.refill(event.amount_msat)
            case OrderCancelled():
                order = self.orders[event.order_id]
                reason = event.reason or CANCELLED_BY_BUYER
                released = order.end(OrderStatus.CANCELLED, time_ms=event.time_ms, reason=reason)
                self._ended(order, released=released, time_ms=event.time_ms)
            case OrderPoolSet():
                self.orders[event.order_id].pool_id = event.pool_id
            case PoolAnswered():
                self._apply_pool_answer(event)
            case OrderExpired():
                order = self.orders[event.order_id]
                released = order.expire(time_ms=event.time_ms)
                self._ended(order, released=released, time_ms=event.time_ms)
            case Settled():
                self._apply_settled(event)
            case RulesChanged():
                self.rules[event.algorithm] = changed(self.rules[event.algorithm], event.change)
            case MarketSampled():
                history = self.market_history.get(event.algorithm)
                if history is not None:
                    history.add_sample(event)
        if isinstance(event, _ORDER_CHANGES):
            self.orders[event.order_id].updated_ms = event.time_ms

    def _account_history(self, account: str) -> History:
        """``account``'s history, made on first use (the fold's only writer)."""
        history = self.account_history.get(account)
        if history is None:
            history = self.account_history[account] = History()
        return history

    def _escrow(self, order: Order, amount_msat: int, *, time_ms: int) -> None:
        self.ledger.post(
            account=order.account,
            kind=LedgerKind.ESCROW,
            amount_msat=-amount_msat,
            ref=order.id,
            time_ms=time_ms,
        )

    def _apply_order_created(self, event: OrderCreated) -> None:
        self.order_seq += 1
        ends_ms = None if event.duration_s is None else event.time_ms + event.duration_s * 1000
        order = Order(
            order_id=event.order_id,
            seq=self.order_seq,
            account=event.account,
            algorithm=event.algorithm,
            type=event.type,
            price_msat=event.price_msat,
            limit_hs=event.limit_hs,
            amount_msat=event.amount_msat,
            created_ms=event.time_ms,
            ends_ms=ends_ms,
            pool_id=event.pool_id,
            request_id=event.request_id,
        )
        self._escrow(order, event.amount_msat, time_ms=event.time_ms)
        self.orders[order.id] = order
        self.orders_of.setdefault(order.account, []).append(order)
        self.active[order.algorithm][order.id] = order
        self.order_stats[order.id] = Series()

    def _ended(self, order: Order, *, released: int, time_ms: int) -> None:
        """Unindex an order that just ended and give back its unspent budget."""
        del self.active[order.algorithm][order.id]
        if released:
            self.ledger.post(
                account=order.account,
                kind=LedgerKind.RELEASE,
                amount_msat=released,
                ref=order.id,
                time_ms=time_ms,
            )

    def _apply_share(self, event: ShareRecorded) -> None:
        reason = event.reason or "other"
        hashes = hashes_per_diff1(event.algorithm, event.work_rule)
        work = share_work(event.difficulty, event.algorithm, event.work_rule)
        seller = SellerKey(event.account, event.worker, event.algorithm)
        seller_series = self.seller_stats.get(seller)
        if seller_series is None:
            seller_series = self.seller_stats[seller] = Series()
        seller_series.add_share(
            time_ms=event.time_ms,
            difficulty=event.difficulty,
            work=work,
            accepted=event.accepted,
            reason=reason,
        )
        market_series = self.market_stats.get(event.algorithm)
        if market_series is None:
            return  # a market this configuration does not run
        market_series.add_share(
            time_ms=event.time_ms,
            difficulty=event.difficulty,
            work=work,
            accepted=event.accepted,
            reason=reason,
        )
        history = self.market_history[event.algorithm]
        history.add_share(time_ms=event.time_ms, work=work, accepted=event.accepted)
        order = None if event.order_id is None else self.orders.get(event.order_id)
        if order is None or order.algorithm is not event.algorithm:
            return
        order_series = self.order_stats[order.id]
        order_series.add_share(
            time_ms=event.time_ms,
            difficulty=event.difficulty,
            work=work,
            accepted=event.accepted,
            reason=reason,
        )
        if not (event.accepted and event.billable and order.charges_at(event.time_ms)):
            return
        value = share_value_ratio(
            price_msat=order.price_msat,
            difficulty=event.difficulty,
            unit_hs=self.rules[order.algorithm].unit_hs,
            hashes_per_diff1=hashes,
        )
        charged = order.charge(
            value, seller=seller, work=event.difficulty.as_integer_ratio(), time_ms=event.time_ms
        )
        self.unsettled[order.id] = order
        if charged:
            order_series.add_money(time_ms=event.time_ms, spend_msat=charged)
            history.add_money(time_ms=event.time_ms, spent_msat=charged)
            self._account_history(order.account).add_money(
                time_ms=event.time_ms, spent_msat=charged
            )
        if not order.active:  # the budget is spent: nothing to release
            del self.active[order.algorithm][order.id]

    def _apply_pool_answer(self, event: PoolAnswered) -> None:
        order = self.orders[event.order_id]
        refund = Fraction(0)
        if not event.accepted and event.price_msat:
            refund = share_value(
                price_msat=event.price_msat,
                difficulty=event.difficulty,
                unit_hs=self.rules[order.algorithm].unit_hs,
                hashes_per_diff1=hashes_per_diff1(order.algorithm),
            )
        order.count_pool_answer(
            accepted=event.accepted, reason=event.reason or "other", refund=refund
        )
        if refund:
            self.refunds_due[order.id] = order

    def _post(self, lines: list[tuple[str, LedgerKind, int]], *, ref: str, time_ms: int) -> None:
        """Post a settlement's ledger lines (a seller's first earning opens its account)."""
        for account, kind, amount_msat in lines:
            self.ledger.open(account)
            self.ledger.post(
                account=account, kind=kind, amount_msat=amount_msat, ref=ref, time_ms=time_ms
            )

    def _refund(self, event: Settled) -> None:
        """Give buyers back what their pools rejected (after this settlement's charges)."""
        for order in list(self.refunds_due.values()):
            due = order.refund_due_msat
            if due:
                lines = [
                    (order.account, LedgerKind.REFUND, due),
                    (self.config.fee_account, LedgerKind.REFUND_PAID, -due),
                ]
                self._post(lines, ref=f"{event.settlement_id}/{order.id}", time_ms=event.time_ms)
                order.refunded_msat += due
            # Kept while more can come due: whole msat accrued beyond what was settled yet.
            if int(order.refund_accrued) <= order.refunded_msat or not order.active:
                del self.refunds_due[order.id]

    def _apply_settled(self, event: Settled) -> None:
        self.settlement_seq += 1
        self.last_settle_ms = event.time_ms
        for order in self.unsettled.values():
            spend = order.unsettled_msat
            if not spend:
                # With no whole msat spent yet, the work stays: the value it made is still in
                # the order's accrual and is paid, to these sellers, with the next spend.
                continue
            rules = self.rules[order.algorithm]
            ref = f"{event.settlement_id}/{order.id}"
            split = split_spend(
                spend_msat=spend,
                work=order.period_work_exact(),
                fee_bps=rules.fee_bps,
                fee_carry=order.fee_carry,
                tiebreak=ref,
            )
            lines = [(order.account, LedgerKind.CHARGE, -spend)]
            if split.fee_msat:
                lines.append((self.config.fee_account, LedgerKind.FEE, split.fee_msat))
            lines += [(p.seller.account, LedgerKind.EARNING, p.amount_msat) for p in split.payouts]
            self._post(lines, ref=ref, time_ms=event.time_ms)
            for payout in split.payouts:
                self.seller_stats[payout.seller].add_money(
                    time_ms=event.time_ms, earned_msat=payout.amount_msat
                )
                self._account_history(payout.seller.account).add_money(
                    time_ms=event.time_ms, earned_msat=payout.amount_msat
                )
            self.market_history[order.algorithm].add_money(
                time_ms=event.time_ms, fees_msat=split.fee_msat
            )
            order.mark_settled(fee_carry=split.fee_carry)
        self.unsettled = {}
        self._refund(event)
