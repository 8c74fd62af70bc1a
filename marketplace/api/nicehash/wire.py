"""The NiceHash door's objects on the wire: request bodies in, NiceHash's objects out.

Theory of operation
-------------------
Field names are NiceHash's (camelCase through ``rename="camel"``, buy info's snake_case by
name). Request bodies take any number as a JSON number or a string (``Number``: msgspec reads
either into a ``Decimal`` exactly, digit for digit) and ports as an int or a string;
fields NiceHash's clients send that this door does not use are ignored, as NiceHash's servers
ignore them. Answers carry decimals as strings, counts as integers, flags as booleans and
object times as ISO-8601 strings (``units.py`` formats them).

The routes' params (``*Params``) are what the door hands to the shared API path after its own
checks: our units and names, so that the handler and the idempotency record see one shape.
"""

from __future__ import annotations

import decimal
from typing import Annotated

import msgspec
from msgspec import Meta

#: A number as a JSON number or a string (msgspec reads either into a ``Decimal``, exactly).
Number = decimal.Decimal
Text = Annotated[str, Meta(max_length=256)]


class _Body(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of request bodies: camelCase names, unknown ones ignored."""


class OrderBody(_Body, frozen=True, kw_only=True):
    market: Text | None = None
    algorithm: Text
    amount: Number
    price: Number
    limit: Number
    #: NiceHash's orders always name a pool (proxy.md): required here too.
    pool_id: Text
    type: Text
    market_factor: Number | None = None
    display_market_factor: Text | None = None
    price_factor: Number | None = None
    display_price_factor: Text | None = None


class RefillBody(_Body, frozen=True):
    amount: Number


class UpdateBody(_Body, frozen=True):
    price: Number | None = None
    limit: Number | None = None
    market_factor: Number | None = None
    display_market_factor: Text | None = None
    price_factor: Number | None = None
    display_price_factor: Text | None = None


class PoolBody(_Body, frozen=True, kw_only=True):
    id: Text | None = None
    name: Text
    algorithm: Text
    stratum_hostname: Text
    stratum_port: int | Annotated[str, Meta(max_length=8)]
    username: Text
    password: Text = ""


class VerifyBody(_Body, frozen=True, kw_only=True):
    pool_verification_service_location: Text | None = None
    mining_algorithm: Text
    stratum_host: Text
    stratum_port: int | Annotated[str, Meta(max_length=8)]
    username: Text
    password: Text = ""


# ---------------------------------------------------------------------------------- params


class _Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the routes' params (built by the door, never sent by a client)."""


class NoParams(_Params, frozen=True):
    pass


class IdParams(_Params, frozen=True):
    id: str


class OrderBookParams(_Params, frozen=True):
    algorithm: str
    size: int
    page: int


class MyOrdersParams(_Params, frozen=True):
    algorithm: str | None
    ts_ms: int
    op: str
    limit: int
    active: bool | None
    status: str | None


class StatsParams(_Params, frozen=True):
    id: str
    after_ms: int | None
    before_ms: int | None


class RefillParams(_Params, frozen=True):
    id: str
    amount: str


class UpdateParams(_Params, frozen=True):
    id: str
    price: str | None
    limit: str | None
    #: Factors sent with the change, checked against the order's algorithm.
    market_factor: str | None
    price_factor: str | None
    display_market_factor: str | None
    display_price_factor: str | None


class CurrencyParams(_Params, frozen=True):
    currency: str


class PageParams(_Params, frozen=True):
    size: int
    page: int


class OrderParams(_Params, frozen=True):
    """A STANDARD order's values, checked at the door: our algorithm name and decimals."""

    algorithm: str
    price: str
    limit: str
    amount: str
    pool_id: str
    market_factor: str | None
    price_factor: str | None
    display_market_factor: str | None
    display_price_factor: str | None


class PoolParams(_Params, frozen=True):
    """A pool to create (``id`` None) or edit."""

    id: str | None
    name: str
    algorithm: str
    host: str
    port: int
    username: str
    password: str


class VerifyParams(_Params, frozen=True):
    algorithm: str
    host: str
    port: int
    username: str
    password: str


# ---------------------------------------------------------------------------------- answers


class _Out(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of answers: camelCase names."""


class TimeOut(_Out, frozen=True):
    server_time: int


class MiningAlgorithmOut(_Out, frozen=True):
    algorithm: str
    title: str
    enabled: bool
    order: int
    display_mining_factor: str
    mining_factor: str
    display_market_factor: str
    market_factor: str
    display_price_factor: str
    price_factor: str
    minimal_order_amount: str
    min_speed_limit: str
    max_speed_limit: str
    price_down_step: str
    minimal_pool_difficulty: str
    port: int | None
    orders_enabled: bool
    enabled_markets: str


class MiningAlgorithmsOut(_Out, frozen=True):
    mining_algorithms: list[MiningAlgorithmOut]


class BuyInfoAlgorithmOut(msgspec.Struct, frozen=True, kw_only=True):
    """One algorithm of ``/public/buy/info``: NiceHash names these in snake_case."""

    algo: int
    name: str
    speed_text: str
    multi: str
    down_step: str
    min_price: str
    max_price: str
    min_limit: str
    max_limit: str
    min_amount: str
    min_diff_initial: str
    min_diff_working: str
    enabled_hashpower_markets: list[str] = msgspec.field(name="enabledHashpowerMarkets")


class BuyInfoOut(_Out, frozen=True):
    mining_algorithms: list[BuyInfoAlgorithmOut]


class CurrencyInfoOut(_Out, frozen=True):
    symbol: str
    name: str
    transaction_info_url: str
    address_info_url: str
    wallet_version: int
    withdrawal_fee: str
    min_withdrawal_amount: str
    decimals: int


class CurrenciesOut(_Out, frozen=True):
    currencies: list[CurrencyInfoOut]


class BalanceOut(_Out, frozen=True):
    """One currency of ``accounts2``: ``available`` is what new orders can use, ``pending``
    what orders hold (our escrow), ``totalBalance`` the two together."""

    active: bool
    currency: str
    total_balance: str
    available: str
    debt: str
    pending: str


class TotalOut(_Out, frozen=True):
    currency: str
    total_balance: str
    available: str
    debt: str
    pending: str


class AccountsOut(_Out, frozen=True):
    total: TotalOut
    currencies: list[BalanceOut]


class BookOrderOut(_Out, frozen=True):
    id: str
    type: str
    price: str
    limit: str
    rigs_count: int
    accepted_speed: str
    paying_speed: str
    alive: bool


class PaginationOut(_Out, frozen=True):
    size: int
    page: int
    total_page_count: int


class MarketBookOut(_Out, frozen=True):
    updated_ts: int
    total_speed: str
    market_factor: str
    display_market_factor: str
    price_factor: str
    display_price_factor: str
    orders: list[BookOrderOut]
    pagination: PaginationOut


class OrderBookOut(_Out, frozen=True):
    stats: dict[str, MarketBookOut]


class AlgorithmRefOut(_Out, frozen=True):
    algorithm: str
    title: str
    enabled: bool
    order: int


class CodeOut(_Out, frozen=True):
    code: str
    description: str


class PoolOut(_Out, frozen=True):
    id: str
    name: str
    algorithm: str
    stratum_hostname: str
    stratum_port: int
    username: str
    password: str
    status: str
    updated_ts: str
    in_moratorium: bool


class PoolListOut(_Out, frozen=True):
    list: list[PoolOut]
    pagination: PaginationOut


class EmptyOut(_Out, frozen=True):
    pass


class VerifyOut(_Out, frozen=True):
    success: bool
    logs: list[str]


class OrderOut(_Out, frozen=True):
    id: str
    request_id: str | None
    available_amount: str
    payed_amount: str
    amount: str
    price: str
    limit: str
    accepted_current_speed: str
    rigs_count: int
    alive: bool
    market: str
    algorithm: AlgorithmRefOut
    type: CodeOut
    status: CodeOut
    display_market_factor: str
    market_factor: str
    display_price_factor: str
    price_factor: str
    pool: PoolOut | None
    start_ts: str
    end_ts: str | None
    created_ts: str
    updated_ts: str
    estimate_duration_in_seconds: int


class OrderListOut(_Out, frozen=True):
    list: list[OrderOut]


class StatsOut(_Out, frozen=True):
    columns: list[str]
    data: list[list[int | str]]


class ErrorItem(msgspec.Struct, frozen=True):
    code: int
    message: str


class ErrorOut(msgspec.Struct, frozen=True):
    error_id: str
    errors: list[ErrorItem]
