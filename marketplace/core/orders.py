"""Orders: the rules that refuse bad commands, the state machine, and charging for shares.

Theory of operation
-------------------
An ``Order`` is the market's mutable record of one buy order; only the fold (``book.py``)
changes it, and only through its methods. Its status moves once, from ``active`` to
``completed`` (budget spent), ``cancelled`` or ``expired``; nothing leaves a final state. The
rules that refuse bad commands are in ``order_rules.py``.

Charging is exact. A share's value is ``price * work / (unit * 86400)`` msat with ``work =
difficulty * hashes_per_diff1`` (``work.py``: 2**32 for sha256d, 2**16 for scrypt), a rational
number. The order accumulates the exact value of everything it was sent
(``accrued``) and its integer spend follows ``floor(accrued)``, capped at the amount: the
fractions of a msat are carried to the next share, never rounded away, and the share that
reaches the amount is charged only what is left, after which the order is ``completed``. The
sums are ``accrual.Accrual`` values (a whole part and a carried remainder: the same rationals
as ``Fraction`` sums, without a gcd per share).

An order with a pool also keeps the pool's answers to the shares forwarded to it (accepted, and
rejected by the pool's reason), and the exact value of the charged shares the pool rejected
(``refund_accrued``): settlements give its whole msat back to the buyer (``refunded_msat``,
never more than was settled), fractions carried like the spend's.
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from marketplace.core.accrual import Accrual, Ratio
from marketplace.core.model import (
    OrderStatus,
    OrderType,
    OrderView,
    PoolLink,
    SellerKey,
)
from marketplace.core.relay import RelayView
from stratum.core.shares import Algorithm

SECONDS_PER_DAY = 86_400
BPS = 10_000
#: Reasons of pool rejections kept apart per order (the rest count as ``other``).
MAX_POOL_REASONS = 16
#: What a cancelled order's ``cancel_reason`` says when its buyer cancelled it.
CANCELLED_BY_BUYER = "cancelled by the buyer"


def share_value(
    *, price_msat: int, difficulty: float, unit_hs: int, hashes_per_diff1: int
) -> Fraction:
    """Exact msat value of one accepted share: ``price * difficulty * hashes_per_diff1 /
    (unit * 86400)`` (``work.hashes_per_diff1`` of the share's algorithm and rule)."""
    return Fraction(
        *share_value_ratio(
            price_msat=price_msat,
            difficulty=difficulty,
            unit_hs=unit_hs,
            hashes_per_diff1=hashes_per_diff1,
        )
    )


def share_value_ratio(
    *, price_msat: int, difficulty: float, unit_hs: int, hashes_per_diff1: int
) -> Ratio:
    """``share_value`` as an unreduced (numerator, denominator), from the float's exact ratio:
    what ``Order.charge`` adds to its ``Accrual`` for every share, live and on replay."""
    numerator, denominator = difficulty.as_integer_ratio()
    return numerator * price_msat * hashes_per_diff1, denominator * unit_hs * SECONDS_PER_DAY


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
    pool_id: str | None = None
    cancel_reason: str | None = None
    pool_accepted: int = 0
    pool_rejected: dict[str, int] = msgspec.field(default_factory=dict)
    refund_accrued: FractionState = (0, 1)
    refunded_msat: int = 0
    request_id: str | None = None
    #: ``None`` in snapshots written before it was kept: the creation time.
    updated_ms: int | None = None


class Order:
    """One order's state (internal; ``views.py`` hands out ``OrderView`` copies)."""

    __slots__ = (
        "_accrued",
        "account",
        "algorithm",
        "amount_msat",
        "cancel_reason",
        "created_ms",
        "ended_ms",
        "ends_ms",
        "fee_carry",
        "id",
        "last_lowered_ms",
        "limit_hs",
        "period_work",
        "pool_accepted",
        "pool_id",
        "pool_rejected",
        "price_msat",
        "refund_accrued",
        "refunded_msat",
        "released_msat",
        "request_id",
        "seq",
        "settled_msat",
        "spent_msat",
        "status",
        "type",
        "updated_ms",
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
        pool_id: str | None = None,
        request_id: str | None = None,
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
        self.pool_id = pool_id
        self.cancel_reason: str | None = None
        self.pool_accepted = 0
        self.pool_rejected: dict[str, int] = {}
        #: Exact value of the charged shares the pool rejected; refunds follow its floor.
        self.refund_accrued = Fraction(0)
        self.refunded_msat = 0
        #: The request id the buyer placed it with, and when its settings or status last
        #: changed (price, limit, budget, pool, end; not its charges).
        self.request_id = request_id
        self.updated_ms = created_ms

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
            pool_id=self.pool_id,
            cancel_reason=self.cancel_reason,
            pool_accepted=self.pool_accepted,
            pool_rejected=dict(self.pool_rejected),
            refund_accrued=(self.refund_accrued.numerator, self.refund_accrued.denominator),
            refunded_msat=self.refunded_msat,
            request_id=self.request_id,
            updated_ms=self.updated_ms,
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
            pool_id=state.pool_id,
            request_id=state.request_id,
        )
        order.updated_ms = state.created_ms if state.updated_ms is None else state.updated_ms
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
        order.cancel_reason = state.cancel_reason
        order.pool_accepted = state.pool_accepted
        order.pool_rejected = dict(state.pool_rejected)
        order.refund_accrued = Fraction(*state.refund_accrued)
        order.refunded_msat = state.refunded_msat
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

    def count_pool_answer(self, *, accepted: bool, reason: str, refund: Fraction) -> None:
        """Count the pool's answer to one forwarded share; a rejected one that was charged
        adds its exact value (``refund``) to what the buyer gets back. At most
        ``MAX_POOL_REASONS`` reasons are kept apart, the rest count as ``other``."""
        if accepted:
            self.pool_accepted += 1
            return
        if reason not in self.pool_rejected and len(self.pool_rejected) >= MAX_POOL_REASONS:
            reason = "other"
        self.pool_rejected[reason] = self.pool_rejected.get(reason, 0) + 1
        self.refund_accrued += refund

    @property
    def refund_due_msat(self) -> int:
        """Whole msat of refund owed now: the floor of what accrued, never past what was
        settled (paid out of escrow), minus what was refunded."""
        return max(0, min(int(self.refund_accrued), self.settled_msat) - self.refunded_msat)

    def mark_settled(self, *, fee_carry: Fraction) -> None:
        """A settlement moved the whole spend out of escrow: keep the fee's carried fraction and
        start a new settlement period."""
        self.settled_msat = self.spent_msat
        self.fee_carry = fee_carry
        self.period_work = {}

    def end(self, status: OrderStatus, *, time_ms: int, reason: str | None = None) -> int:
        """Move an active order to a final status (``reason``: why it was cancelled); return
        the budget released (unspent)."""
        assert self.active, f"{self.id} already {self.status}"
        self.status = status
        self.cancel_reason = reason
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

    def view(
        self, *, accepted_speed_hs: int, workers: int, relay: RelayView | None = None
    ) -> OrderView:
        """An immutable copy for callers, with the ephemeral figures given (``relay``: its
        pool's upstream now, if it has one and it is running)."""
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
            pool_id=self.pool_id,
            pool=self._pool_link(relay),
            cancel_reason=self.cancel_reason,
            refunded_msat=self.refunded_msat,
            request_id=self.request_id,
            updated_ms=max(self.updated_ms, self.ended_ms or 0),
        )

    def _pool_link(self, relay: RelayView | None) -> PoolLink | None:
        if self.pool_id is None:
            return None
        if relay is not None and self.active:
            status, difficulty = relay.status.value, relay.difficulty
            last_error, since_ms = relay.last_error, relay.since_ms
        elif self.active:  # no session started yet (the driver has not seen the order)
            status, difficulty, last_error, since_ms = "connecting", None, None, self.created_ms
        else:  # ended: its upstream connection is closed
            status, difficulty, last_error = "dead", None, f"the order is {self.status}"
            since_ms = self.ended_ms or self.created_ms
        return PoolLink(
            status=status,
            difficulty=difficulty,
            accepted=self.pool_accepted,
            rejected=dict(self.pool_rejected),
            last_error=last_error,
            since_ms=since_ms,
        )
