"""The NiceHash door's routes: NiceHash's paths onto the market's operations.

Theory of operation
-------------------
A ``Route`` is one NiceHash endpoint: HTTP method, path template, the scope its key needs
(``None``: public), how the door turns the request into params (``build``: query, path and body
checked in NiceHash's units and names, ``Request`` in, a ``wire.*Params`` out, or a
``NiceHashError``), and a ``Method`` of the API's own kind, which the door runs through the
shared API path (``RpcService.run_method``): the same params decoding, storage-health check,
executor, idempotency record and error mapping as every JSON-RPC call.

The handlers are thin. Each mutation calls the same operation as its JSON-RPC method (the
JSON-RPC handler itself where its arguments are the same: ``methods.order_cancel``,
``methods.order_refill``; the market command where NiceHash joins two into one,
``Market.change_order``), so every rule lives once, in the market; then it reads the order
back and renders it (``render.py``). Reads go to the views.

NiceHash's permissions map onto our scopes: viewing balances and orders (``VBTD``, ``VHOR``) is
``read``; placing, refilling, cancelling and editing orders and managing pools (``PRCO``,
``ELCO``, ``MAPO``) is ``trade``.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from marketplace.api import methods
from marketplace.api import wire as rpc_wire
from marketplace.api.methods import CallContext, Method
from marketplace.api.nicehash import render, units
from marketplace.api.nicehash.errors import bad_factor, malformed
from marketplace.api.nicehash.wire import (
    AccountsOut,
    BalanceOut,
    BookOrderOut,
    BuyInfoOut,
    CurrencyParams,
    IdParams,
    MarketBookOut,
    MiningAlgorithmsOut,
    MyOrdersParams,
    NoParams,
    OrderBookOut,
    OrderBookParams,
    OrderListOut,
    OrderOut,
    PaginationOut,
    RefillBody,
    RefillParams,
    StatsOut,
    StatsParams,
    TotalOut,
    UpdateBody,
    UpdateParams,
)
from marketplace.core.errors import NotFound
from marketplace.core.key_events import Scope
from marketplace.core.model import OrderStatus, OrderView
from marketplace.core.money import format_btc
from stratum.core.shares import Algorithm

P = TypeVar("P", bound=msgspec.Struct)
B = TypeVar("B", bound=msgspec.Struct)

#: Page sizes a list may ask for.
MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 100


class Request(NamedTuple):
    """What the door read of one request: the path's ``{names}``, the query (empty values
    dropped) and the raw body."""

    path: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


class Route(NamedTuple):
    """One NiceHash endpoint (see the module doc); its key's scope is ``method.scope``."""

    http: str
    template: str
    method: Method
    build: Callable[[Request], msgspec.Struct]
    #: The NiceHash field a refusal that names none concerns (``errors.from_rpc_error``).
    field: str | None = None

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/"))


def _method(
    name: str,
    scope: Scope | None,
    params: type[P],
    run: Callable[[CallContext, P], msgspec.Struct],
    *,
    mutating: bool,
) -> Method:
    return Method(
        name=f"nicehash.{name}",
        scope=scope,
        params=params,
        run=run,
        mutating=mutating,
        decoder=msgspec.json.Decoder(params),
    )


# ---------------------------------------------------------------------------------- reading


def body_of(request: Request, body_type: type[B]) -> B:
    """The request's JSON body as ``body_type``. Raises ``NiceHashError`` 60 for a body that
    is missing, not JSON or not of that shape."""
    try:
        return msgspec.json.decode(request.body, type=body_type)
    except msgspec.DecodeError:
        raise malformed() from None


def query_int(request: Request, name: str, *, default: int | None, low: int, high: int) -> int:
    """A whole-number query value within ``low``..``high``. Raises ``NiceHashError`` 60 when
    it is missing without a default, not a number or out of range."""
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise malformed()
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise malformed()
    return int(text)


def _optional_ms(request: Request, name: str) -> int | None:
    if name not in request.query:
        return None
    return query_int(request, name, default=None, low=0, high=2**53)


def _required(request: Request, name: str) -> str:
    value = request.query.get(name)
    if value is None:
        raise malformed()
    return value


def check_factors(
    alg: Algorithm,
    *,
    market_factor: str | None,
    price_factor: str | None,
    display_market_factor: str | None,
    display_price_factor: str | None,
) -> None:
    """Factors a request sent must be ``alg``'s (none sent is fine). Raises
    ``NiceHashError`` 5068."""
    factor = decimal.Decimal(units.factor(alg))
    for given in (market_factor, price_factor):
        if given is not None and decimal.Decimal(given) != factor:
            raise bad_factor()
    display = units.display_factor(alg).upper()
    for shown in (display_market_factor, display_price_factor):
        if shown is not None and shown.upper() != display:
            raise bad_factor()


def _factor_text(value: decimal.Decimal | None, field: str) -> str | None:
    return None if value is None else units.decimal_text(value, field=field)


# ---------------------------------------------------------------------------------- public


def algorithms(ctx: CallContext, p: NoParams) -> MiningAlgorithmsOut:
    served = ctx.market.algorithms()
    return MiningAlgorithmsOut(
        mining_algorithms=[
            render.mining_algorithm(ctx.market.rules(alg), port=ctx.stratum_ports.get(alg))
            for alg in units.LISTED
            if alg in served
        ]
    )


def buy_info(ctx: CallContext, p: NoParams) -> BuyInfoOut:
    served = ctx.market.algorithms()
    return BuyInfoOut(
        mining_algorithms=[
            render.buy_info(ctx.market.rules(alg)) for alg in units.LISTED if alg in served
        ]
    )


def _orderbook_params(request: Request) -> OrderBookParams:
    alg = units.algorithm(_required(request, "algorithm"))
    return OrderBookParams(
        algorithm=alg.value,
        size=query_int(request, "size", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
        page=query_int(request, "page", default=0, low=0, high=2**31),
    )


def order_book(ctx: CallContext, p: OrderBookParams) -> OrderBookOut:
    alg = Algorithm(p.algorithm)
    book = ctx.views.orderbook(alg, now_ms=ctx.now_ms)
    factor, display = units.factor(alg), units.display_factor(alg)
    shown = book.orders[p.page * p.size : (p.page + 1) * p.size]
    stats = MarketBookOut(
        updated_ts=ctx.now_ms,
        total_speed=units.speed_out(book.total_speed_hs, alg),
        market_factor=factor,
        display_market_factor=display,
        price_factor=factor,
        display_price_factor=display,
        orders=[
            BookOrderOut(
                id=o.id,
                type=o.type.upper(),
                price=units.price_out(o.price_msat),
                limit=units.limit_out(o.limit_hs, alg),
                rigs_count=o.workers,
                accepted_speed=units.speed_out(o.accepted_speed_hs, alg),
                paying_speed=units.speed_out(o.accepted_speed_hs, alg),
                alive=True,
            )
            for o in shown
        ],
        pagination=PaginationOut(
            size=p.size, page=p.page, total_page_count=-(-len(book.orders) // p.size)
        ),
    )
    return OrderBookOut(stats={market: stats for market in units.MARKETS})


# ---------------------------------------------------------------------------------- accounts


def _balance(ctx: CallContext) -> BalanceOut:
    balance = ctx.market.balance(ctx.account)
    total = balance.available_msat + balance.escrowed_msat
    return BalanceOut(
        active=True,
        currency="BTC",
        total_balance=format_btc(total),
        available=format_btc(balance.available_msat),
        debt=format_btc(0),
        pending=format_btc(balance.escrowed_msat),
    )


def accounts(ctx: CallContext, p: NoParams) -> AccountsOut:
    btc = _balance(ctx)
    total = TotalOut(
        currency=btc.currency,
        total_balance=btc.total_balance,
        available=btc.available,
        debt=btc.debt,
        pending=btc.pending,
    )
    return AccountsOut(total=total, currencies=[btc])


def account(ctx: CallContext, p: CurrencyParams) -> BalanceOut:
    if p.currency.upper() != "BTC":
        raise NotFound("no such currency", {"currency": p.currency[:16]})
    return _balance(ctx)


# ---------------------------------------------------------------------------------- orders


def _order(ctx: CallContext, order_id: str) -> OrderOut:
    view = ctx.views.get_order(account=ctx.account, order_id=order_id, now_ms=ctx.now_ms)
    return render.order(view, now_ms=ctx.now_ms)


_OPS: Final[dict[str, Callable[[int, int], bool]]] = {
    "LT": lambda created, ts: created < ts,
    "LE": lambda created, ts: created <= ts,
    "GT": lambda created, ts: created > ts,
    "GE": lambda created, ts: created >= ts,
}


def _my_orders_params(request: Request) -> MyOrdersParams:
    alg = request.query.get("algorithm")
    if "market" in request.query:
        units.market(request.query["market"])
    op = request.query.get("op", "LT").upper()
    if op not in _OPS:
        raise malformed()
    active = request.query.get("active")
    if active is not None and active.lower() not in ("true", "false"):
        raise malformed()
    status = request.query.get("status")
    if status is not None and status.upper() not in render.STATUS_CODES:
        raise malformed()
    return MyOrdersParams(
        algorithm=None if alg is None else units.algorithm(alg).value,
        ts_ms=query_int(request, "ts", default=2**53, low=0, high=2**53),
        op=op,
        limit=query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
        active=None if active is None else active.lower() == "true",
        status=None if status is None else status.upper(),
    )


def _listed(view: OrderView, p: MyOrdersParams, *, status: str) -> bool:
    if p.algorithm is not None and view.algorithm != p.algorithm:
        return False
    if p.active is not None and (view.status is OrderStatus.ACTIVE) != p.active:
        return False
    if p.status is not None and status != p.status:
        return False
    return _OPS[p.op](view.created_ms, p.ts_ms)


def my_orders(ctx: CallContext, p: MyOrdersParams) -> OrderListOut:
    """The account's orders created before (or after) ``ts``, the ``limit`` nearest to it,
    newest first."""
    views = ctx.views.list_orders(account=ctx.account, now_ms=ctx.now_ms)
    shown = [render.order(v, now_ms=ctx.now_ms) for v in views]
    chosen = [
        out
        for view, out in zip(views, shown, strict=True)
        if _listed(view, p, status=out.status.code)
    ]
    # Orders come oldest first: the nearest to ``ts`` are the last before it, the first after.
    chosen = chosen[-p.limit :] if p.op in ("LT", "LE") else chosen[: p.limit]
    return OrderListOut(list=chosen[::-1])


def order_get(ctx: CallContext, p: IdParams) -> OrderOut:
    return _order(ctx, p.id)


def order_cancel(ctx: CallContext, p: IdParams) -> OrderOut:
    methods.order_cancel(ctx, rpc_wire.OrderIdParams(id=p.id))
    return _order(ctx, p.id)


def _refill_params(request: Request) -> RefillParams:
    body = body_of(request, RefillBody)
    return RefillParams(id=request.path["id"], amount=units.amount_in(body.amount))


def order_refill(ctx: CallContext, p: RefillParams) -> OrderOut:
    methods.order_refill(ctx, rpc_wire.RefillParams(id=p.id, amount=p.amount))
    return _order(ctx, p.id)


def _update_params(request: Request) -> UpdateParams:
    body = body_of(request, UpdateBody)
    if body.price is None and body.limit is None:
        raise malformed()
    return UpdateParams(
        id=request.path["id"],
        price=None if body.price is None else units.price_in(body.price),
        limit=None if body.limit is None else units.limit_in(body.limit),
        market_factor=_factor_text(body.market_factor, "MARKET_FACTOR"),
        price_factor=_factor_text(body.price_factor, "PRICE_FACTOR"),
        display_market_factor=body.display_market_factor,
        display_price_factor=body.display_price_factor,
    )


def order_update(ctx: CallContext, p: UpdateParams) -> OrderOut:
    """NiceHash's updatePriceAndLimit: the price, the limit or both, in one command."""
    current = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    check_factors(
        current.algorithm,
        market_factor=p.market_factor,
        price_factor=p.price_factor,
        display_market_factor=p.display_market_factor,
        display_price_factor=p.display_price_factor,
    )
    ctx.market.change_order(
        account=ctx.account,
        order_id=p.id,
        price_msat=None if p.price is None else rpc_wire.parse_price(p.price),
        limit_hs=None if p.limit is None else rpc_wire.parse_limit(p.limit, current.algorithm),
        now_ms=ctx.now_ms,
    )
    return _order(ctx, p.id)


_STATS_COLUMNS: Final = [
    "time",
    "accepted_speed",
    "rejected_speed",
    "accepted_shares",
    "rejected_shares",
    "payed_amount",
]


def order_stats(ctx: CallContext, p: StatsParams) -> StatsOut:
    """The order's minute points (``order.stats``) from ``afterTimestamp`` to
    ``beforeTimestamp``: times in ms, speeds in the market's unit, amounts in BTC."""
    view = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    points = ctx.views.order_stats(
        account=ctx.account, order_id=p.id, since_ms=p.after_ms, now_ms=ctx.now_ms
    )
    alg = view.algorithm
    rows: list[list[int | str]] = [
        [
            point.time_ms,
            units.speed_out(point.accepted_speed_hs, alg),
            units.speed_out(point.rejected_speed_hs, alg),
            point.accepted_shares,
            point.rejected_shares,
            units.amount_out(point.spend_msat),
        ]
        for point in points
        if p.before_ms is None or point.time_ms < p.before_ms
    ]
    return StatsOut(columns=list(_STATS_COLUMNS), data=rows)


# ---------------------------------------------------------------------------------- the table


def _no_params(request: Request) -> NoParams:
    return NoParams()


def _id_params(request: Request) -> IdParams:
    return IdParams(id=request.path["id"])


def _currency_params(request: Request) -> CurrencyParams:
    return CurrencyParams(currency=request.path["currency"])


def _stats_params(request: Request) -> StatsParams:
    return StatsParams(
        id=request.path["id"],
        after_ms=_optional_ms(request, "afterTimestamp"),
        before_ms=_optional_ms(request, "beforeTimestamp"),
    )


_R, _T = Scope.READ, Scope.TRADE
_ORDER: Final = "/main/api/v2/hashpower/order/{id}"


def _route(
    http: str,
    template: str,
    scope: Scope | None,
    name: str,
    run: Callable[[CallContext, Any], msgspec.Struct],
    build: Callable[[Request], msgspec.Struct],
    params: type[msgspec.Struct],
    *,
    mutating: bool = False,
    field: str | None = None,
) -> Route:
    return Route(http, template, _method(name, scope, params, run, mutating=mutating), build, field)


ROUTES: Final[tuple[Route, ...]] = (
    _route(
        "GET",
        "/main/api/v2/mining/algorithms",
        None,
        "algorithms",
        algorithms,
        _no_params,
        NoParams,
    ),
    _route("GET", "/main/api/v2/public/buy/info", None, "buy_info", buy_info, _no_params, NoParams),
    _route(
        "GET",
        "/main/api/v2/hashpower/orderBook",
        None,
        "order_book",
        order_book,
        _orderbook_params,
        OrderBookParams,
    ),
    _route(
        "GET", "/main/api/v2/accounting/accounts2", _R, "accounts", accounts, _no_params, NoParams
    ),
    _route(
        "GET",
        "/main/api/v2/accounting/account2/{currency}",
        _R,
        "account",
        account,
        _currency_params,
        CurrencyParams,
    ),
    _route(
        "GET",
        "/main/api/v2/hashpower/myOrders",
        _R,
        "my_orders",
        my_orders,
        _my_orders_params,
        MyOrdersParams,
    ),
    _route("GET", _ORDER, _R, "order_get", order_get, _id_params, IdParams),
    _route("DELETE", _ORDER, _T, "order_cancel", order_cancel, _id_params, IdParams, mutating=True),
    _route(
        "POST",
        _ORDER + "/refill",
        _T,
        "order_refill",
        order_refill,
        _refill_params,
        RefillParams,
        mutating=True,
        field="AMOUNT",
    ),
    _route(
        "POST",
        _ORDER + "/updatePriceAndLimit",
        _T,
        "order_update",
        order_update,
        _update_params,
        UpdateParams,
        mutating=True,
        field="PRICE",
    ),
    _route("GET", _ORDER + "/stats", _R, "order_stats", order_stats, _stats_params, StatsParams),
)


def find(
    routes: tuple[Route, ...], http: str, segments: list[str]
) -> tuple[Route, dict[str, str]] | None:
    """The route for ``http`` and a path's segments, with its ``{names}`` bound; ``None``."""
    for route in routes:
        if route.http != http or len(route.segments) != len(segments):
            continue
        bound: dict[str, str] = {}
        for want, got in zip(route.segments, segments, strict=True):
            if want.startswith("{"):
                if not got:
                    break
                bound[want[1:-1]] = got
            elif want != got:
                break
        else:
            return route, bound
    return None
