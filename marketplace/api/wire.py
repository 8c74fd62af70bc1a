"""The API's objects on the wire, and the one place where inside units become strings.

Theory of operation
-------------------
Every params object is a msgspec Struct with ``forbid_unknown_fields=True`` (unknown params are
refused, not ignored); every result is a Struct whose field names are the contract of
``buyer-api.md``. The ``*_out`` functions turn the market's views (integer msat and H/s) into
results (BTC strings with 8 decimals, speeds in the market's unit); ``parse_*`` go the other
way, raising ``InvalidArgument`` (-32602) for junk. The client decodes the same result Structs,
so server and client cannot drift apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Final

import msgspec
from msgspec import Meta

from marketplace.api.errors import wire_data
from marketplace.core.key_events import IssuedKey, KeyView, Scope
from marketplace.core.model import (
    Balance,
    LedgerEntry,
    LedgerKind,
    MarketRules,
    MarketStatsView,
    OrderBookView,
    OrderStatus,
    OrderType,
    OrderView,
    PoolLink,
    StatPoint,
    WorkerView,
)
from marketplace.core.money import (
    UNIT_HS,
    UNIT_NAME,
    format_btc,
    format_speed,
    parse_btc,
    parse_speed,
)
from marketplace.core.security_events import ActivityRecorded, AddressView
from stratum.core.shares import Algorithm

if TYPE_CHECKING:  # the client reads these types, and must not import the pool registry
    from marketplace.core.pools import PoolView

#: Decimal strings (BTC or a speed); their content is checked by ``money``.
Decimal = Annotated[str, Meta(min_length=1, max_length=32)]
OrderId = Annotated[str, Meta(min_length=1, max_length=64)]
KeyId = Annotated[str, Meta(min_length=1, max_length=64)]
Label = Annotated[str, Meta(min_length=1, max_length=64)]
Address = Annotated[str, Meta(min_length=1, max_length=128)]
PoolId = Annotated[str, Meta(min_length=1, max_length=64)]
PoolName = Annotated[str, Meta(min_length=1, max_length=64)]
Host = Annotated[str, Meta(min_length=1, max_length=253)]
Port = Annotated[int, Meta(ge=1, le=65535)]
PoolUser = Annotated[str, Meta(min_length=1, max_length=256)]
PoolPassword = Annotated[str, Meta(max_length=256)]
TimeMs = Annotated[int, Meta(ge=0, le=2**53)]
#: A second-factor code: six digits from an authenticator app, or a recovery code.
Otp = Annotated[str, Meta(min_length=1, max_length=32)]
AddressLabel = Annotated[str, Meta(max_length=64)]
MAX_GRACE_S: Final = 30 * 86_400
DEFAULT_GRACE_S: Final = 3600


class _Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every params object: by name, unknown names refused."""


class NoParams(_Params, frozen=True):
    pass


class AlgorithmParams(_Params, frozen=True):
    algorithm: Algorithm


class LedgerParams(_Params, frozen=True):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    before: Annotated[int, Meta(ge=0)] | None = None


class DepositParams(_Params, frozen=True):
    amount: Decimal


class WithdrawParams(_Params, frozen=True):
    amount: Decimal
    address: Address
    otp: Otp | None = None


class OrderCreateParams(_Params, frozen=True):
    algorithm: Algorithm
    type: OrderType
    limit: Decimal
    amount: Decimal
    price: Decimal | None = None
    duration_s: Annotated[int, Meta(ge=1, le=10 * 365 * 86_400)] | None = None
    #: The buyer's pool the order mines for (proxy.md); none: the emulated chain.
    pool_id: PoolId | None = None


class SetPoolParams(_Params, frozen=True):
    id: OrderId
    pool_id: PoolId | None


class PoolCreateParams(_Params, frozen=True):
    name: PoolName
    algorithm: Algorithm
    host: Host
    port: Port
    username: PoolUser
    password: PoolPassword = ""


class PoolIdParams(_Params, frozen=True):
    id: PoolId


class PoolVerifyParams(_Params, frozen=True):
    """``pool.verify``: ``{"id"}`` of a saved pool, or the create params."""

    id: PoolId | None = None
    name: PoolName | None = None
    algorithm: Algorithm | None = None
    host: Host | None = None
    port: Port | None = None
    username: PoolUser | None = None
    password: PoolPassword = ""


class OrderIdParams(_Params, frozen=True):
    id: OrderId


class OrderListParams(_Params, frozen=True):
    status: OrderStatus | None = None


class SetPriceParams(_Params, frozen=True):
    id: OrderId
    price: Decimal


class SetLimitParams(_Params, frozen=True):
    id: OrderId
    limit: Decimal


class RefillParams(_Params, frozen=True):
    id: OrderId
    amount: Decimal


class OrderStatsParams(_Params, frozen=True):
    id: OrderId
    since_ms: TimeMs | None = None


class KeyCreateParams(_Params, frozen=True):
    label: Label
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=4)]
    expires_in_s: Annotated[int, Meta(ge=1, le=10 * 365 * 86_400)] | None = None
    otp: Otp | None = None


class KeyIdParams(_Params, frozen=True):
    key_id: KeyId


class KeyRotateParams(_Params, frozen=True):
    key_id: KeyId
    grace_s: Annotated[int, Meta(ge=0, le=MAX_GRACE_S)] = DEFAULT_GRACE_S
    otp: Otp | None = None


class OtpParams(_Params, frozen=True):
    """``account.2fa.confirm``: a code of the pending secret."""

    otp: Otp


class OptionalOtpParams(_Params, frozen=True):
    """``account.2fa.disable``: a code (missing: 4011 "otp required", like every gated call)."""

    otp: Otp | None = None


class AddressAddParams(_Params, frozen=True):
    address: Address
    label: AddressLabel
    otp: Otp | None = None


class AddressParams(_Params, frozen=True):
    address: Address


class ActivityParams(_Params, frozen=True):
    limit: Annotated[int, Meta(ge=1, le=500)] = 100
    before: Annotated[int, Meta(ge=0)] | None = None


# ---------------------------------------------------------------------------------- results


class _Result(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every result (decoding ignores fields added later)."""


class TimeOut(_Result, frozen=True):
    #: The wall clock: what signed requests' ``X-Time`` is checked against.
    time_ms: int
    #: The market's clock (control.md): the wall clock plus the offset an operator advanced.
    market_time_ms: int


class MarketOut(_Result, frozen=True):
    algorithm: Algorithm
    unit: str
    stratum_host: str
    stratum_port: int | None
    min_price: str
    min_limit: str
    min_amount: str
    price_down_step: str
    price_down_step_bps: int
    price_down_interval_s: int
    fee_bps: int
    fixed_price: str


class MarketInfoOut(_Result, frozen=True):
    markets: list[MarketOut]


class BookOrderOut(_Result, frozen=True):
    id: str
    type: OrderType
    price: str
    limit: str
    accepted_speed: str
    workers: int


class OrderBookOut(_Result, frozen=True):
    algorithm: Algorithm
    unit: str
    total_speed: str
    orders: list[BookOrderOut]


class MarketStatsOut(_Result, frozen=True):
    algorithm: Algorithm
    unit: str
    workers: int
    accepted_speed: str
    shares_per_s: str
    rejected_speed: dict[str, str]
    rejected: dict[str, int]
    active_orders: int
    fixed_price: str
    rejected_per_s: dict[str, str] = msgspec.field(default_factory=dict)


class BalanceOut(_Result, frozen=True):
    available: str
    escrowed: str
    currency: str = "BTC"


class LedgerEntryOut(_Result, frozen=True):
    id: int
    kind: LedgerKind
    amount: str
    ref: str
    time_ms: int


class LedgerOut(_Result, frozen=True):
    entries: list[LedgerEntryOut]


class MoneyMoveOut(_Result, frozen=True):
    """The answer of a deposit or a withdrawal: its ledger entry and the new balance."""

    entry: LedgerEntryOut
    balance: BalanceOut


class OrderOut(_Result, frozen=True):
    id: str
    algorithm: Algorithm
    type: OrderType
    status: OrderStatus
    price: str
    limit: str
    amount: str
    spent: str
    remaining: str
    accepted_speed: str
    workers: int
    created_ms: int
    ends_ms: int | None
    unit: str = ""
    pool_id: str | None = None
    #: The order's ``pool`` object (proxy.md): no inside units, so the core's value as is.
    pool: PoolLink | None = None
    cancel_reason: str | None = None
    #: Charges given back for shares the buyer's pool rejected (BTC).
    refunded: str = "0.00000000"


class PoolOut(_Result, frozen=True):
    """A pool: everything but the password, which is write-only."""

    id: str
    name: str
    algorithm: Algorithm
    host: str
    port: int
    username: str
    created_ms: int
    #: When its settings last changed (NiceHash's door edits pools).
    updated_ms: int = 0


class PoolListOut(_Result, frozen=True):
    pools: list[PoolOut]


class PoolVerifyOut(_Result, frozen=True):
    """What ``pool.verify`` found: ``ok`` or the ``stage`` it stopped at and why (``error``);
    what the pool gave (extranonce, difficulty, the version-rolling mask it granted, hex)."""

    ok: bool
    stage: str
    latency_ms: int | None
    extranonce1: str | None
    extranonce2_size: int | None
    difficulty: float | None
    version_rolling: str | None
    error: str | None


class OrderListOut(_Result, frozen=True):
    orders: list[OrderOut]


class StatPointOut(_Result, frozen=True):
    time_ms: int
    accepted_speed: str
    rejected_speed: str
    accepted_shares: int
    rejected_shares: int
    spend: str


class OrderStatsOut(_Result, frozen=True):
    id: str
    unit: str
    points: list[StatPointOut]


class WorkerOut(_Result, frozen=True):
    name: str
    algorithm: Algorithm
    connected: bool
    speed: str
    difficulty: float
    accepted: int
    rejected: dict[str, int]
    order_id: str | None
    earned: str


class WorkerListOut(_Result, frozen=True):
    workers: list[WorkerOut]


class KeyOut(_Result, frozen=True):
    key_id: str
    label: str
    scopes: list[Scope]
    version: int
    created_ms: int
    expires_ms: int | None
    last_used_ms: int | None
    secret: str | msgspec.UnsetType = msgspec.UNSET


class KeyListOut(_Result, frozen=True):
    keys: list[KeyOut]


class OkOut(_Result, frozen=True):
    ok: bool
    key_id: str


class TwoFactorSecretOut(_Result, frozen=True):
    """``account.2fa.enable``: the base32 secret and its otpauth URI, shown once (the
    idempotency record keeps neither: see ``methods``)."""

    secret: str
    otpauth_uri: str


class TwoFactorConfirmOut(_Result, frozen=True):
    """``account.2fa.confirm``: on, with the recovery codes, shown once."""

    enabled: bool
    recovery_codes: list[str]


class TwoFactorOffOut(_Result, frozen=True):
    enabled: bool


class TwoFactorStatusOut(_Result, frozen=True):
    enabled: bool
    pending: bool


class AddressOut(_Result, frozen=True):
    address: str
    label: str
    usable_from_ms: int


class AddressListOut(_Result, frozen=True):
    addresses: list[AddressOut]


class AddressRemovedOut(_Result, frozen=True):
    ok: bool
    address: str


class ActivityEntryOut(_Result, frozen=True):
    id: int
    time_ms: int
    #: An ``ActivityKind`` value; a plain string, so a client reads kinds added later.
    kind: str
    key_id: str | None
    remote: str | None
    detail: dict[str, str | int]


class ActivityOut(_Result, frozen=True):
    events: list[ActivityEntryOut]


# ---------------------------------------------------------------------------------- edge


def parse_price(text: str) -> int:
    """A BTC-per-unit/s-per-day price string as msat. Raises ``InvalidArgument``."""
    return parse_btc(text)


def parse_amount(text: str) -> int:
    """A BTC amount string as msat. Raises ``InvalidArgument``."""
    return parse_btc(text)


def parse_limit(text: str, algorithm: Algorithm) -> int:
    """A speed in ``algorithm``'s unit as H/s. Raises ``InvalidArgument``."""
    return parse_speed(text, unit_hs=UNIT_HS[algorithm])


def _speed(hs: int, algorithm: Algorithm) -> str:
    return format_speed(hs, unit_hs=UNIT_HS[algorithm])


def balance_out(balance: Balance) -> BalanceOut:
    return BalanceOut(
        available=format_btc(balance.available_msat), escrowed=format_btc(balance.escrowed_msat)
    )


def ledger_entry_out(entry: LedgerEntry) -> LedgerEntryOut:
    return LedgerEntryOut(
        id=entry.id,
        kind=entry.kind,
        amount=format_btc(entry.amount_msat),
        ref=entry.ref,
        time_ms=entry.time_ms,
    )


def order_out(view: OrderView) -> OrderOut:
    alg = view.algorithm
    return OrderOut(
        id=view.id,
        algorithm=alg,
        type=view.type,
        status=view.status,
        price=format_btc(view.price_msat),
        limit=_speed(view.limit_hs, alg),
        amount=format_btc(view.amount_msat),
        spent=format_btc(view.spent_msat),
        remaining=format_btc(view.remaining_msat),
        accepted_speed=_speed(view.accepted_speed_hs, alg),
        workers=view.workers,
        created_ms=view.created_ms,
        ends_ms=view.ends_ms,
        unit=UNIT_NAME[alg],
        pool_id=view.pool_id,
        pool=view.pool,
        cancel_reason=view.cancel_reason,
        refunded=format_btc(view.refunded_msat),
    )


def pool_out(view: PoolView) -> PoolOut:
    """A pool as its owner sees it on the wire (the view without the account)."""
    fields = msgspec.structs.asdict(view)
    del fields["account"]
    return PoolOut(**fields)


def market_out(
    rules: MarketRules, *, fixed_price_msat: int, stratum_host: str, stratum_port: int | None
) -> MarketOut:
    alg = rules.algorithm
    return MarketOut(
        algorithm=alg,
        unit=UNIT_NAME[alg],
        stratum_host=stratum_host,
        stratum_port=stratum_port,
        min_price=format_btc(rules.min_price_msat),
        min_limit=_speed(rules.min_limit_hs, alg),
        min_amount=format_btc(rules.min_amount_msat),
        price_down_step=f"{rules.price_down_step_bps // 10_000}."
        f"{rules.price_down_step_bps % 10_000:04d}",
        price_down_step_bps=rules.price_down_step_bps,
        price_down_interval_s=rules.price_down_interval_s,
        fee_bps=rules.fee_bps,
        fixed_price=format_btc(fixed_price_msat),
    )


def orderbook_out(book: OrderBookView) -> OrderBookOut:
    alg = book.algorithm
    return OrderBookOut(
        algorithm=alg,
        unit=UNIT_NAME[alg],
        total_speed=_speed(book.total_speed_hs, alg),
        orders=[
            BookOrderOut(
                id=o.id,
                type=o.type,
                price=format_btc(o.price_msat),
                limit=_speed(o.limit_hs, alg),
                accepted_speed=_speed(o.accepted_speed_hs, alg),
                workers=o.workers,
            )
            for o in book.orders
        ],
    )


def per_second(milli: int) -> str:
    """A rate in thousandths per second as a decimal string (``1500`` -> ``"1.500"``)."""
    whole, rest = divmod(milli, 1000)
    return f"{whole}.{rest:03d}"


def market_stats_out(stats: MarketStatsView) -> MarketStatsOut:
    alg = stats.algorithm
    return MarketStatsOut(
        algorithm=alg,
        unit=UNIT_NAME[alg],
        workers=stats.workers,
        accepted_speed=_speed(stats.accepted_speed_hs, alg),
        shares_per_s=per_second(stats.shares_per_s_milli),
        rejected_speed={r: _speed(s, alg) for r, s in stats.rejected_speed_hs.items()},
        rejected=dict(stats.rejected),
        active_orders=stats.active_orders,
        fixed_price=format_btc(stats.fixed_price_msat),
        rejected_per_s={r: per_second(n) for r, n in stats.rejected_per_s_milli.items()},
    )


def order_stats_out(order: OrderView, points: list[StatPoint]) -> OrderStatsOut:
    alg = order.algorithm
    return OrderStatsOut(
        id=order.id,
        unit=UNIT_NAME[alg],
        points=[
            StatPointOut(
                time_ms=p.time_ms,
                accepted_speed=_speed(p.accepted_speed_hs, alg),
                rejected_speed=_speed(p.rejected_speed_hs, alg),
                accepted_shares=p.accepted_shares,
                rejected_shares=p.rejected_shares,
                spend=format_btc(p.spend_msat),
            )
            for p in points
        ],
    )


def worker_out(view: WorkerView) -> WorkerOut:
    return WorkerOut(
        name=view.name,
        algorithm=view.algorithm,
        connected=view.connected,
        speed=_speed(view.speed_hs, view.algorithm),
        difficulty=view.difficulty,
        accepted=view.accepted,
        rejected=dict(view.rejected),
        order_id=view.order_id,
        earned=format_btc(view.earned_msat),
    )


def key_out(view: KeyView, secret: str | None = None) -> KeyOut:
    return KeyOut(
        key_id=view.key_id,
        label=view.label,
        scopes=list(view.scopes),
        version=view.version,
        created_ms=view.created_ms,
        expires_ms=view.expires_ms,
        last_used_ms=view.last_used_ms,
        secret=msgspec.UNSET if secret is None else secret,
    )


def issued_out(issued: IssuedKey) -> KeyOut:
    return key_out(issued.key, issued.secret)


def address_out(view: AddressView) -> AddressOut:
    return AddressOut(address=view.address, label=view.label, usable_from_ms=view.usable_from_ms)


def activity_entry_out(entry: ActivityRecorded) -> ActivityEntryOut:
    """An activity entry; amounts in its details (``*_msat``) as BTC strings."""
    return ActivityEntryOut(
        id=entry.id,
        time_ms=entry.time_ms,
        kind=entry.kind.value,
        key_id=entry.key_id,
        remote=entry.remote,
        detail={k: v for k, v in wire_data(entry.detail).items() if isinstance(v, str | int)},
    )
