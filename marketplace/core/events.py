"""The market's events: the only things that change its durable state.

Theory of operation
-------------------
Each event is a frozen msgspec Struct tagged with its kind, so the journal can store any of
them and decode them back into the ``MarketEvent`` union. Commands compute every id and time
before emitting (order ids, withdrawal ids), so ``Market.apply`` is a pure fold. Effects that
follow from the state by fixed rules (what a share is charged, how a settlement splits, when an
order completes) are recomputed by ``apply`` from the event and the state, which replay
reproduces exactly because the rules are integer/rational arithmetic with no clock.
"""

from __future__ import annotations

import msgspec

from marketplace.core.model import OrderType
from marketplace.core.rules import RuleChange
from marketplace.core.work import LEGACY_WORK_RULE
from stratum.core.shares import Algorithm


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the market's events: tagged by an ``event`` field (``type`` is an order field)."""


class AccountCreated(_Event, frozen=True, tag="account_created"):
    account: str
    time_ms: int


class Deposited(_Event, frozen=True, tag="deposited"):
    account: str
    amount_msat: int
    time_ms: int


class Withdrawn(_Event, frozen=True, tag="withdrawn"):
    withdrawal_id: str
    account: str
    amount_msat: int
    address: str
    time_ms: int


class OrderCreated(_Event, frozen=True, tag="order_created"):
    order_id: str
    account: str
    algorithm: Algorithm
    type: OrderType
    price_msat: int
    limit_hs: int
    amount_msat: int
    duration_s: int | None
    time_ms: int
    #: The buyer's pool it mines for (``None``: the emulated chain; absent in old journals).
    pool_id: str | None = None
    #: The ``X-Request-Id`` it was placed with (``None``: none; absent in old journals).
    request_id: str | None = None


class OrderPoolSet(_Event, frozen=True, tag="order_pool_set"):
    """``order.set_pool``: the order mines for ``pool_id`` from now on (``None``: the chain)."""

    order_id: str
    pool_id: str | None
    time_ms: int


class PriceChanged(_Event, frozen=True, tag="price_changed"):
    order_id: str
    price_msat: int
    time_ms: int


class LimitChanged(_Event, frozen=True, tag="limit_changed"):
    order_id: str
    limit_hs: int
    time_ms: int


class Refilled(_Event, frozen=True, tag="refilled"):
    order_id: str
    amount_msat: int
    time_ms: int


class OrderCancelled(_Event, frozen=True, tag="order_cancelled"):
    """Cancelled by its buyer (``reason`` ``None``) or by the market, saying why."""

    order_id: str
    time_ms: int
    reason: str | None = None


class OrderExpired(_Event, frozen=True, tag="order_expired"):
    order_id: str
    time_ms: int


class ShareRecorded(_Event, frozen=True, tag="share"):
    """One checked share; ``order_id`` is the order whose job it solved (``None``: idle).

    ``work_rule`` is the rule its work is counted under (``work.py``): events journaled before
    the field existed are rule 1, and replay prices them as they were priced then.
    """

    conn_id: int
    account: str
    worker: str
    algorithm: Algorithm
    order_id: str | None
    difficulty: float
    accepted: bool
    reason: str | None
    time_ms: int
    work_rule: int = LEGACY_WORK_RULE
    #: False for a share of a job its pool can no longer take (the order's pool connection
    #: was lost): counted, charged nothing (proxy.md: a dead order is charged nothing).
    billable: bool = True


class PoolAnswered(_Event, frozen=True, tag="pool_answered"):
    """The buyer's pool answered one share forwarded to it (``reason``: its refusal, or why it
    never answered). ``price_msat`` is the price the share was charged at (0: not charged); a
    charged share the pool refused is refunded to the buyer at the next settlement, paid by
    the fee account."""

    order_id: str
    accepted: bool
    reason: str | None
    difficulty: float
    price_msat: int
    time_ms: int


class Settled(_Event, frozen=True, tag="settled"):
    """A settlement: every order's spend since the last one is split among its sellers."""

    settlement_id: str
    time_ms: int


class RulesChanged(_Event, frozen=True, tag="rules_changed"):
    """An operator changed some of a market's rules, from now on (``rules.py``)."""

    algorithm: Algorithm
    change: RuleChange
    time_ms: int


class MarketSampled(_Event, frozen=True, tag="market_sampled"):
    """What the allocation looked like (it is not journaled itself): connected workers, the
    best bid and the fill price (``None``: no such order), for the market's history."""

    algorithm: Algorithm
    workers: int
    best_price_msat: int | None
    fill_price_msat: int | None
    time_ms: int


MarketEvent = (
    AccountCreated
    | Deposited
    | Withdrawn
    | OrderCreated
    | OrderPoolSet
    | PriceChanged
    | LimitChanged
    | Refilled
    | OrderCancelled
    | OrderExpired
    | ShareRecorded
    | PoolAnswered
    | Settled
    | RulesChanged
    | MarketSampled
)
