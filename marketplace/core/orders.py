"""Orders: the rules that refuse bad commands, the state machine, and charging for shares.

Theory of operation
-------------------
An ``Order`` is the market's mutable record of one buy order; only the fold (``book.py``)
changes it, and only through its methods. Its status moves once, from ``active`` to
``completed`` (budget spent), ``cancelled`` or ``expired``; nothing leaves a final state. The
``check_*`` functions hold the market rules (minimums, price-down step and interval, fixed
orders) and raise a ``MarketError`` before any event exists, so a refused command changes
nothing.

Charging is exact. A share's value is ``price * difficulty * 2**32 / (unit * 86400)`` msat, a
rational number. The order accumulates the exact value of everything it was sent
(``accrued``) and its integer spend follows ``floor(accrued)``, capped at the amount: the
fractions of a msat are carried to the next share, never rounded away, and the share that
reaches the amount is charged only what is left, after which the order is ``completed``. The
sums are ``accrual.Accrual`` values (a whole part and a carried remainder: the same rationals
as ``Fraction`` sums, without a gcd per share).
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from marketplace.core.accrual import Accrual, Ratio
from marketplace.core.errors import InvalidArgument, InvalidState, RuleViolation
from marketplace.core.model import (
    MarketRules,
    OrderStatus,
    OrderType,
    OrderView,
    SellerKey,
)
from marketplace.core.money import MSAT_PER_SAT
from stratum.core.shares import HASHES_PER_DIFF1, Algorithm

SECONDS_PER_DAY = 86_400
BPS = 10_000


def share_value(*, price_msat: int, difficulty: float, unit_hs: int) -> Fraction:
    """Exact msat value of one accepted share: price * difficulty * 2**32 / (unit * 86400)."""
    return Fraction(
        *share_value_ratio(price_msat=price_msat, difficulty=difficulty, unit_hs=unit_hs)
    )


def share_value_ratio(*, price_msat: int, difficulty: float, unit_hs: int) -> Ratio:
    """``share_value`` as an unreduced (numerator, denominator), from the float's exact ratio:
    what ``Order.charge`` adds to its ``Accrual`` for every share, live and on replay."""
    numerator, denominator = difficulty.as_integer_ratio()
    return numerator * price_msat * HASHES_PER_DIFF1, denominator * unit_hs * SECONDS_PER_DAY


#: An exact ``Fraction`` in a snapshot: (numerator, denominator).
FractionState = tuple[int, int]


class SellerWork(msgspec.Struct, frozen=True, array_like=True):
    """One seller's accepted work in an order's current settlement period (a snapshot)."""

    account: str
    worker: str
    algorithm: Algorithm
    work: FractionState


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """Every field of an ``Order`` for snapshots (Fractions as numerator and denominator)."""

    id: str
    seq: int
    account: str
    algorithm: Algorithm
    type: OrderType
    status: OrderStatus
    price_msat: int
    limit_hs: int
    amount_msat: int
    created_ms: int
    ends_ms: int | None
    ended_ms: int | None
    spent_msat: int
    accrued: FractionState
    settled_msat: int
    released_msat: int
    last_lowered_ms: int | None
    period_work: list[SellerWork]
    fee_carry: FractionState


class Order:
    """One order's state (internal; ``views.py`` hands out ``OrderView`` copies)."""

    __slots__ = (
        "_accrued",
        "account",
        "algorithm",
        "amount_msat",
        "created_ms",
        "ended_ms",
        "ends_ms",
        "fee_carry",
        "id",
        "last_lowered_ms",
        "limit_hs",
        "period_work",
        "price_msat",
        "released_msat",
        "seq",
        "settled_msat",
        "spent_msat",
        "status",
        "type",
    )

    def __init__(
        self,
        *,
        order_id: str,
        seq: int,
        account: str,
        algorithm: Algorithm,
        type: OrderType,
        price_msat: int,
        limit_hs: int,
        amount_msat: int,
        created_ms: int,
        ends_ms: int | None,
    ) -> None:
        self.id = order_id
        self.seq = seq
        self.account = account
        self.algorithm = algorithm
        self.type = type
        self.price_msat = price_msat
        self.limit_hs = limit_hs
        self.amount_msat = amount_msat
        self.created_ms = created_ms
        self.ends_ms = ends_ms
        self.status = OrderStatus.ACTIVE
        self.ended_ms: int | None = None
        #: Whole msat charged for shares (the buyer's spend), <= amount.
        self.spent_msat = 0
        #: Exact value of every share charged so far; spend follows its floor.
        self._accrued = Accrual()
        #: Part of the spend already moved out of escrow by settlements.
        self.settled_msat = 0
        #: Unspent budget given back (cancel, expiry).
        self.released_msat = 0
        self.last_lowered_ms: int | None = None
        #: Accepted work per seller since the last settlement (sum of share difficulties).
        self.period_work: dict[SellerKey, Accrual] = {}
        #: Fraction of a msat of fee owed but not yet taken (see ``settlement``).
        self.fee_carry = Fraction(0)

    def export_state(self) -> OrderState:
        """A copy of every field."""
        return OrderState(
            id=self.id,
            seq=self.seq,
            account=self.account,
            algorithm=self.algorithm,
            type=self.type,
            status=self.status,
            price_msat=self.price_msat,
            limit_hs=self.limit_hs,
            amount_msat=self.amount_msat,
            created_ms=self.created_ms,
            ends_ms=self.ends_ms,
            ended_ms=self.ended_ms,
            spent_msat=self.spent_msat,
            accrued=self._accrued.state(),
            settled_msat=self.settled_msat,
            released_msat=self.released_msat,
            last_lowered_ms=self.last_lowered_ms,
            period_work=[
                SellerWork(seller.account, seller.worker, seller.algorithm, work.state())
                for seller, work in self.period_work.items()
            ],
            fee_carry=(self.fee_carry.numerator, self.fee_carry.denominator),
        )

    @classmethod
    def from_state(cls, state: OrderState) -> Order:
        """The order that exported ``state``. Raises ``ZeroDivisionError`` for a fraction with
        a zero denominator."""
        order = cls(
            order_id=state.id,
            seq=state.seq,
            account=state.account,
            algorithm=state.algorithm,
            type=state.type,
            price_msat=state.price_msat,
            limit_hs=state.limit_hs,
            amount_msat=state.amount_msat,
            created_ms=state.created_ms,
            ends_ms=state.ends_ms,
        )
        order.status = state.status
        order.ended_ms = state.ended_ms
        order.spent_msat = state.spent_msat
        order._accrued = Accrual.of(*state.accrued)
        order.settled_msat = state.settled_msat
        order.released_msat = state.released_msat
        order.last_lowered_ms = state.last_lowered_ms
        order.period_work = {
            SellerKey(w.account, w.worker, w.algorithm): Accrual.of(*w.work)
            for w in state.period_work
        }
        order.fee_carry = Fraction(*state.fee_carry)
        return order

    @property
    def accrued(self) -> Fraction:
        """The exact value of every share charged so far (msat)."""
        return self._accrued.value

    def period_work_exact(self) -> dict[SellerKey, Fraction]:
        """Each seller's accepted work since the last settlement, exactly."""
        return {seller: work.value for seller, work in self.period_work.items()}

    @property
    def active(self) -> bool:
        """Whether the order can still be charged and changed."""
        return self.status is OrderStatus.ACTIVE

    @property
    def remaining_msat(self) -> int:
        """Budget still available to spend (0 once the order has ended)."""
        if not self.active:
            return 0
        return self.amount_msat - self.spent_msat

    @property
    def escrowed_msat(self) -> int:
        """What this order holds in its buyer's escrow: the budget not yet settled or released."""
        return self.amount_msat - self.settled_msat - self.released_msat

    @property
    def unsettled_msat(self) -> int:
        """Spend not yet moved out of escrow by a settlement."""
        return self.spent_msat - self.settled_msat

    def change_price(self, price_msat: int, *, time_ms: int) -> None:
        """Take the new price; a lower one starts the price-down interval at ``time_ms``."""
        if price_msat < self.price_msat:
            self.last_lowered_ms = time_ms
        self.price_msat = price_msat

    def change_limit(self, limit_hs: int) -> None:
        """Take the new limit (0 = none)."""
        self.limit_hs = limit_hs

    def refill(self, amount_msat: int) -> None:
        """Add ``amount_msat`` to the budget (the caller escrows it)."""
        self.amount_msat += amount_msat

    def charges_at(self, time_ms: int) -> bool:
        """Whether an accepted share found at ``time_ms`` is charged: the order is active and its
        end time, if any, has not come (a share found after it, before the expiry tick ended the
        order, is not charged)."""
        return self.active and (self.ends_ms is None or time_ms < self.ends_ms)

    def charge(self, value: Ratio, *, seller: SellerKey, work: Ratio, time_ms: int) -> int:
        """Charge one accepted share of exact ``value`` msat, found at ``time_ms`` by ``seller``
        with ``work`` (its difficulty), both as (numerator, denominator) with non-negative
        numerators and positive denominators; return the whole msat charged now.

        Only an active order is charged (an ended one returns 0 and changes nothing). Fractions
        carry over in ``accrued``; the charge never takes the spend past the amount, and
        reaching the amount completes the order at ``time_ms``. The work counts toward the
        seller's share of this settlement period either way.
        """
        if not self.active:
            return 0
        accrued = self._accrued
        accrued.add(*value)
        due = accrued.whole - self.spent_msat  # floor(accrued)
        charged = min(due, self.amount_msat - self.spent_msat)
        self.spent_msat += charged
        seller_work = self.period_work.get(seller)
        if seller_work is None:
            seller_work = self.period_work[seller] = Accrual()
        seller_work.add(*work)
        if self.spent_msat == self.amount_msat:
            self.status = OrderStatus.COMPLETED
            self.ended_ms = time_ms
        return charged

    def mark_settled(self, *, fee_carry: Fraction) -> None:
        """A settlement moved the whole spend out of escrow: keep the fee's carried fraction and
        start a new settlement period."""
        self.settled_msat = self.spent_msat
        self.fee_carry = fee_carry
        self.period_work = {}

    def end(self, status: OrderStatus, *, time_ms: int) -> int:
        """Move an active order to a final status; return the budget released (unspent)."""
        assert self.active, f"{self.id} already {self.status}"
        self.status = status
        self.ended_ms = time_ms
        released = self.amount_msat - self.spent_msat
        self.released_msat += released
        return released

    def expire(self, *, time_ms: int) -> int:
        """End an active order whose duration is over, noticed at ``time_ms``; return the budget
        released. It ended at its end time, whenever the expiry tick noticed."""
        released = self.end(OrderStatus.EXPIRED, time_ms=time_ms)
        if self.ends_ms is not None:
            self.ended_ms = min(self.ends_ms, time_ms)
        return released

    def view(self, *, accepted_speed_hs: int, workers: int) -> OrderView:
        """An immutable copy for callers, with the ephemeral figures given."""
        return OrderView(
            id=self.id,
            account=self.account,
            algorithm=self.algorithm,
            type=self.type,
            status=self.status,
            price_msat=self.price_msat,
            limit_hs=self.limit_hs,
            amount_msat=self.amount_msat,
            spent_msat=self.spent_msat,
            remaining_msat=self.remaining_msat,
            accepted_speed_hs=accepted_speed_hs,
            workers=workers,
            created_ms=self.created_ms,
            ends_ms=self.ends_ms,
            ended_ms=self.ended_ms,
        )


def priority_key(order: Order) -> tuple[int, int, int, int]:
    """Sort key of the allocation queue: fixed by creation, then standard by price descending,
    ties by creation (``seq`` breaks ties of equal creation times)."""
    if order.type is OrderType.FIXED:
        return (0, 0, order.created_ms, order.seq)
    return (1, -order.price_msat, order.created_ms, order.seq)


def fixed_quote(rules: MarketRules, *, served_standard_prices: list[int]) -> int:
    """The fixed-order price: the highest price among standard orders receiving hash power,
    plus the premium (10%), rounded up to a whole satoshi (the wire shows 8 decimals, so the
    quote a buyer sees is the quote, and sending it back is accepted), never under the market
    minimum."""
    best = max(served_standard_prices, default=0)
    quote = -(-best * (BPS + rules.fixed_premium_bps) // (BPS * MSAT_PER_SAT)) * MSAT_PER_SAT
    return max(quote, rules.min_price_msat)


def _require_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer", {"field": name})
    return value


def check_amount(rules: MarketRules, amount_msat: int, *, field: str = "amount") -> None:
    """A new order's budget: positive and at least the market minimum."""
    _require_int(field, amount_msat)
    if amount_msat <= 0:
        raise InvalidArgument(f"{field} must be positive", {"field": field})
    if amount_msat < rules.min_amount_msat:
        raise RuleViolation(
            f"{field} is under the market minimum",
            {"field": field, "min_msat": rules.min_amount_msat},
        )


def check_price(rules: MarketRules, price_msat: int) -> None:
    """A standard price: positive and at least the market minimum."""
    _require_int("price", price_msat)
    if price_msat <= 0:
        raise InvalidArgument("price must be positive", {"field": "price"})
    if price_msat < rules.min_price_msat:
        raise RuleViolation(
            "price is under the market minimum",
            {"field": "price", "min_msat": rules.min_price_msat},
        )


def check_limit(rules: MarketRules, limit_hs: int, *, type: OrderType) -> None:
    """A limit: 0 (no limit, standard orders only) or at least the market minimum."""
    _require_int("limit", limit_hs)
    if limit_hs < 0:
        raise InvalidArgument("limit must not be negative", {"field": "limit"})
    if limit_hs == 0 and type is OrderType.FIXED:
        raise RuleViolation("a fixed order needs a limit", {"field": "limit"})
    if 0 < limit_hs < rules.min_limit_hs:
        raise RuleViolation(
            "limit is under the market minimum",
            {"field": "limit", "min_hs": rules.min_limit_hs, "algorithm": rules.algorithm.value},
        )


def check_duration(duration_s: int | None, *, type: OrderType) -> None:
    """Fixed orders need a duration; a given duration is a positive number of seconds."""
    if duration_s is None:
        if type is OrderType.FIXED:
            raise RuleViolation("a fixed order needs duration_s", {"field": "duration_s"})
        return
    _require_int("duration_s", duration_s)
    if duration_s <= 0:
        raise InvalidArgument("duration_s must be positive", {"field": "duration_s"})


def check_active(order: Order) -> None:
    """Raises ``InvalidState`` unless the order is active."""
    if not order.active:
        raise InvalidState(
            f"order {order.id} is {order.status}", {"id": order.id, "status": str(order.status)}
        )


def check_price_change(order: Order, rules: MarketRules, *, price_msat: int, now_ms: int) -> None:
    """Raise any time; lower by at most ``price_down_step_bps`` of the current price, and only
    once per ``price_down_interval_s``. Fixed orders keep their quoted price."""
    check_active(order)
    if order.type is OrderType.FIXED:
        raise InvalidState("a fixed order's price cannot change", {"id": order.id})
    check_price(rules, price_msat)
    if price_msat >= order.price_msat:
        return
    floor = -(-order.price_msat * (BPS - rules.price_down_step_bps) // BPS)
    if price_msat < floor:
        raise InvalidState(
            "price lowered too far",
            {"id": order.id, "min_msat": floor, "step_bps": rules.price_down_step_bps},
        )
    interval_ms = rules.price_down_interval_s * 1000
    if order.last_lowered_ms is not None and now_ms - order.last_lowered_ms < interval_ms:
        raise InvalidState(
            "price lowered too soon",
            {"id": order.id, "retry_at_ms": order.last_lowered_ms + interval_ms},
        )


def check_limit_change(order: Order, rules: MarketRules, *, limit_hs: int) -> None:
    """Standard orders may change their limit while active; fixed orders keep theirs."""
    check_active(order)
    if order.type is OrderType.FIXED:
        raise InvalidState("a fixed order's limit cannot change", {"id": order.id})
    check_limit(rules, limit_hs, type=order.type)
