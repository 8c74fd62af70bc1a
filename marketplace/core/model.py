"""Values of the marketplace core: enums, configuration, keys and the read-only views.

Theory of operation
-------------------
Everything here is an immutable value: the frozen configuration a ``Market`` is built with,
the keys that name workers, and the views that the facade hands out (copies, never live
state). Units follow ``docs/architecture.md``: money in integer msat, speed in integer H/s,
prices in msat per (unit/s) per day, times in integer ms since the epoch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import msgspec

from marketplace.core.errors import InvalidArgument
from marketplace.core.key_events import OPERATOR_ACCOUNT
from marketplace.core.money import UNIT_HS
from stratum.core.shares import Algorithm

#: The account that receives the marketplace fees: the operator's (control.md).
FEE_ACCOUNT = OPERATOR_ACCOUNT


class OrderType(StrEnum):
    STANDARD = "standard"
    FIXED = "fixed"


class OrderStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class LedgerKind(StrEnum):
    """What a ledger entry did. Signs: escrow, charge, withdrawal and refund_paid are negative.

    ``refund`` gives a buyer back the charge for shares its pool rejected; ``refund_paid`` is
    the fee account paying for it (proxy.md: the seller keeps what it earned)."""

    DEPOSIT = "deposit"
    ESCROW = "escrow"
    RELEASE = "release"
    CHARGE = "charge"
    EARNING = "earning"
    FEE = "fee"
    WITHDRAWAL = "withdrawal"
    REFUND = "refund"
    REFUND_PAID = "refund_paid"


class MarketRules(msgspec.Struct, frozen=True, kw_only=True):
    """The rules of one market (one algorithm)."""

    algorithm: Algorithm
    unit_hs: int
    min_price_msat: int
    min_limit_hs: int
    min_amount_msat: int
    price_down_step_bps: int = 1000
    price_down_interval_s: int = 600
    fee_bps: int = 200
    #: Speed assumed for a worker before it has shares (when the bridge gives none).
    start_estimate_hs: int = 1_000_000
    #: Fixed-order quote: highest served standard price plus this much.
    fixed_premium_bps: int = 1000


def default_rules(algorithm: Algorithm) -> MarketRules:
    """Rules sized for CPU workers: small minimums so a demo can trade with a few MH/s."""
    unit = UNIT_HS[algorithm]
    return MarketRules(
        algorithm=algorithm,
        unit_hs=unit,
        min_price_msat=1_000_000,  # 0.00001 BTC per unit/s per day
        min_limit_hs=unit // 100,  # 0.01 unit/s
        min_amount_msat=100_000_000,  # 0.001 BTC
        start_estimate_hs=unit if algorithm is Algorithm.SHA256D else 10 * unit,
    )


def _default_markets() -> dict[Algorithm, MarketRules]:
    return {algorithm: default_rules(algorithm) for algorithm in Algorithm}


class MarketConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a ``Market`` is built with. Not journaled: pass the same config on replay."""

    markets: dict[Algorithm, MarketRules] = msgspec.field(default_factory=_default_markets)
    settle_interval_ms: int = 10_000
    faucet: bool = False
    fee_account: str = FEE_ACCOUNT
    #: Window of the moving averages behind accepted speeds and worker estimates.
    speed_window_ms: int = 60_000

    def rules(self, algorithm: Algorithm) -> MarketRules:
        """The rules of ``algorithm``'s market. Raises ``InvalidArgument`` for no such market."""
        try:
            return self.markets[algorithm]
        except KeyError:
            raise InvalidArgument(
                f"no market for {algorithm!r}",
                {"algorithm": str(algorithm)[:32]},
            ) from None


class WorkerKey(NamedTuple):
    """One Stratum connection: the market's allocation unit."""

    conn_id: int
    account: str
    worker: str
    algorithm: Algorithm


class Assignment(NamedTuple):
    """A move made by ``rebalance``: ``worker`` now serves ``order_id`` (``None`` = idle)."""

    worker: WorkerKey
    order_id: str | None


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    available_msat: int
    escrowed_msat: int


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One append-only ledger line. ``amount_msat`` is signed (see ``LedgerKind``)."""

    id: int
    account: str
    kind: LedgerKind
    amount_msat: int
    ref: str
    time_ms: int


class PoolLink(msgspec.Struct, frozen=True, kw_only=True):
    """An order's ``pool`` object (proxy.md): its upstream now (``status``: connecting, alive
    or dead; the pool's share ``difficulty``; ``last_error`` in words a buyer can act on;
    ``since_ms``: when the status began) and the pool's answers to the shares forwarded to it
    over the order's life."""

    status: str
    difficulty: float | None
    accepted: int
    rejected: dict[str, int]
    last_error: str | None
    since_ms: int


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """Every field of the API's Order object, in internal units."""

    id: str
    account: str
    algorithm: Algorithm
    type: OrderType
    status: OrderStatus
    price_msat: int
    limit_hs: int
    amount_msat: int
    spent_msat: int
    remaining_msat: int
    accepted_speed_hs: int
    workers: int
    created_ms: int
    ends_ms: int | None
    #: When the order stopped being active (completed, cancelled, expired), else ``None``.
    ended_ms: int | None = None
    #: The buyer's pool the order mines for (``None``: the emulated chain), and its link.
    pool_id: str | None = None
    pool: PoolLink | None = None
    #: Why a cancelled order was cancelled (``None`` unless cancelled).
    cancel_reason: str | None = None
    #: Charges given back for shares the pool rejected (settled refunds).
    refunded_msat: int = 0
    #: The ``X-Request-Id`` it was placed with, if any.
    request_id: str | None = None
    #: When its settings or status last changed (its creation, if never).
    updated_ms: int = 0


class OrderBookEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An order as the public book shows it: no owner."""

    id: str
    type: OrderType
    price_msat: int
    limit_hs: int
    accepted_speed_hs: int
    workers: int


class OrderBookView(msgspec.Struct, frozen=True, kw_only=True):
    algorithm: Algorithm
    total_speed_hs: int
    orders: list[OrderBookEntry]


class MarketStatsView(msgspec.Struct, frozen=True, kw_only=True):
    """The market's recent activity (over ``MarketConfig.speed_window_ms``)."""

    algorithm: Algorithm
    workers: int
    accepted_speed_hs: int
    #: Accepted shares per second, in thousandths (an integer: 1500 = 1.5 shares/s).
    shares_per_s_milli: int
    rejected_speed_hs: dict[str, int]
    #: Rejected shares per second by reason, in thousandths, over the same window.
    rejected_per_s_milli: dict[str, int]
    #: Rejected shares by reason over the last 24 h.
    rejected: dict[str, int]
    active_orders: int
    fixed_price_msat: int


class WorkerView(msgspec.Struct, frozen=True, kw_only=True):
    """A seller's worker (account + worker name + algorithm), connected or not."""

    name: str
    algorithm: Algorithm
    connected: bool
    speed_hs: int
    difficulty: float
    accepted: int
    rejected: dict[str, int]
    order_id: str | None
    earned_msat: int


class StatPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One minute of an order's (or worker's) history; ``time_ms`` is the minute's start."""

    time_ms: int
    accepted_speed_hs: int
    rejected_speed_hs: int
    accepted_shares: int
    rejected_shares: int
    spend_msat: int


class SellerKey(NamedTuple):
    """Who is paid for work: a seller account's named worker on one market."""

    account: str
    worker: str
    algorithm: Algorithm
