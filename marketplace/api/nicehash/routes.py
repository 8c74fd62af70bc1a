"""The NiceHash door's routes: NiceHash's paths, what each takes, and which handler runs it.

Theory of operation
-------------------
A ``Route`` is one NiceHash endpoint: HTTP method, path template, how the door turns the
request into params (``build``: the query, the path's ``{names}`` and the JSON body checked in
NiceHash's units and names, ``Request`` in, a ``wire.*Params`` out, or a ``NiceHashError``),
and a ``Method`` of the API's own kind (``methods.Method``: scope, params type, handler,
whether it changes state), which the door runs through the shared API path
(``RpcService.run_method``): the same params decoding, storage-health check, executor,
idempotency record and error mapping as every JSON-RPC call. ``table(handlers)`` binds the
routes to one ``handlers.Handlers``.

NiceHash's permissions map onto our scopes: viewing balances and orders (``VBTD``, ``VHOR``) is
``read``; placing, refilling, cancelling and editing orders and managing pools (``PRCO``,
``ELCO``, ``MAPO``) is ``trade``.
"""

from __future__ import annotations

import decimal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from marketplace.api.methods import CallContext, Method
from marketplace.api.nicehash import render, units
from marketplace.api.nicehash.errors import generic, invalid_input, malformed
from marketplace.api.nicehash.handlers import OPS, Handlers
from marketplace.api.nicehash.wire import (
    CurrencyParams,
    IdParams,
    MyOrdersParams,
    NoParams,
    OrderBody,
    OrderBookParams,
    OrderParams,
    PageParams,
    PoolBody,
    PoolParams,
    RefillBody,
    RefillParams,
    StatsParams,
    UpdateBody,
    UpdateParams,
    VerifyBody,
    VerifyParams,
)
from marketplace.core.key_events import Scope

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


def _port(value: int | str) -> int:
    """A port sent as an int or a string."""
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise invalid_input("STRATUM_PORT")
        value = int(value)
    return value


def _factor_text(value: decimal.Decimal | None, field: str) -> str | None:
    return None if value is None else units.decimal_text(value, field=field)


# ---------------------------------------------------------------------------------- params


def _no_params(request: Request) -> NoParams:
    return NoParams()


def _id_params(request: Request) -> IdParams:
    return IdParams(id=request.path["id"])


def _currency_params(request: Request) -> CurrencyParams:
    return CurrencyParams(currency=request.path["currency"])


def _page_params(request: Request) -> PageParams:
    return PageParams(
        size=query_int(request, "size", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
        page=query_int(request, "page", default=0, low=0, high=2**31),
    )


def _orderbook_params(request: Request) -> OrderBookParams:
    name = request.query.get("algorithm")
    if name is None:
        raise malformed()
    page = _page_params(request)
    return OrderBookParams(algorithm=units.algorithm(name).value, size=page.size, page=page.page)


def _my_orders_params(request: Request) -> MyOrdersParams:
    query = request.query
    if "market" in query:
        units.market(query["market"])
    op = query.get("op", "LT").upper()
    active = query.get("active")
    status = query.get("status")
    if (
        op not in OPS
        or (active is not None and active.lower() not in ("true", "false"))
        or (status is not None and status.upper() not in render.STATUS_CODES)
    ):
        raise malformed()
    alg = query.get("algorithm")
    return MyOrdersParams(
        algorithm=None if alg is None else units.algorithm(alg).value,
        ts_ms=query_int(request, "ts", default=2**53, low=0, high=2**53),
        op=op,
        limit=query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
        active=None if active is None else active.lower() == "true",
        status=None if status is None else status.upper(),
    )


def _stats_params(request: Request) -> StatsParams:
    return StatsParams(
        id=request.path["id"],
        after_ms=_optional_ms(request, "afterTimestamp"),
        before_ms=_optional_ms(request, "beforeTimestamp"),
    )


def _order_params(request: Request) -> OrderParams:
    body = body_of(request, OrderBody)
    kind = body.type.upper()
    if kind == "FIXED":
        raise generic()  # as NiceHash answers a FIXED order today
    if kind != "STANDARD":
        raise invalid_input("TYPE")
    if body.market is not None:
        units.market(body.market)
    return OrderParams(
        algorithm=units.algorithm(body.algorithm).value,
        price=units.price_in(body.price),
        limit=units.limit_in(body.limit),
        amount=units.amount_in(body.amount),
        pool_id=body.pool_id,
        market_factor=_factor_text(body.market_factor, "MARKET_FACTOR"),
        price_factor=_factor_text(body.price_factor, "PRICE_FACTOR"),
        display_market_factor=body.display_market_factor,
        display_price_factor=body.display_price_factor,
    )


def _refill_params(request: Request) -> RefillParams:
    body = body_of(request, RefillBody)
    return RefillParams(id=request.path["id"], amount=units.amount_in(body.amount))


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


def _pool_params(request: Request) -> PoolParams:
    body = body_of(request, PoolBody)
    return PoolParams(
        id=body.id,
        name=body.name,
        algorithm=units.algorithm(body.algorithm).value,
        host=body.stratum_hostname,
        port=_port(body.stratum_port),
        username=body.username,
        password=body.password,
    )


def _verify_params(request: Request) -> VerifyParams:
    body = body_of(request, VerifyBody)
    return VerifyParams(
        algorithm=units.algorithm(body.mining_algorithm).value,
        host=body.stratum_host,
        port=_port(body.stratum_port),
        username=body.username,
        password=body.password,
    )


# ---------------------------------------------------------------------------------- the table

_R, _T = Scope.READ, Scope.TRADE
_ORDER: Final = "/main/api/v2/hashpower/order/{id}"
_POOL: Final = "/main/api/v2/pool"


def _route(
    http: str,
    template: str,
    scope: Scope | None,
    run: Callable[[CallContext, Any], Any],
    build: Callable[[Request], msgspec.Struct],
    params: type[msgspec.Struct],
    *,
    mutating: bool = False,
    awaited: bool = False,
    field: str | None = None,
) -> Route:
    name = f"nicehash.{run.__name__}"

    def not_sync(ctx: CallContext, p: Any) -> msgspec.Struct:
        raise RuntimeError(f"{name} is awaited, not run")

    method = Method(
        name=name,
        scope=scope,
        params=params,
        run=not_sync if awaited else run,
        mutating=mutating,
        decoder=msgspec.json.Decoder(params),
        awaited=run if awaited else None,
    )
    return Route(http, template, method, build, field)


def table(h: Handlers) -> tuple[Route, ...]:
    """Every route, bound to ``h``'s handlers."""
    awaited: Callable[[CallContext, VerifyParams], Awaitable[Any]] = h.pools_verify
    return (
        _route("GET", "/main/api/v2/mining/algorithms", None, h.algorithms, _no_params, NoParams),
        _route("GET", "/main/api/v2/public/buy/info", None, h.buy_info, _no_params, NoParams),
        _route(
            "GET",
            "/main/api/v2/hashpower/orderBook",
            None,
            h.order_book,
            _orderbook_params,
            OrderBookParams,
        ),
        _route("GET", "/main/api/v2/accounting/accounts2", _R, h.accounts, _no_params, NoParams),
        _route(
            "GET",
            "/main/api/v2/accounting/account2/{currency}",
            _R,
            h.account,
            _currency_params,
            CurrencyParams,
        ),
        _route(
            "POST",
            "/main/api/v2/hashpower/order",
            _T,
            h.order_create,
            _order_params,
            OrderParams,
            mutating=True,
            field="POOL_ID",
        ),
        _route(
            "GET",
            "/main/api/v2/hashpower/myOrders",
            _R,
            h.my_orders,
            _my_orders_params,
            MyOrdersParams,
        ),
        _route("GET", _ORDER, _R, h.order_get, _id_params, IdParams),
        _route("DELETE", _ORDER, _T, h.order_cancel, _id_params, IdParams, mutating=True),
        _route(
            "POST",
            _ORDER + "/refill",
            _T,
            h.order_refill,
            _refill_params,
            RefillParams,
            mutating=True,
            field="AMOUNT",
        ),
        _route(
            "POST",
            _ORDER + "/updatePriceAndLimit",
            _T,
            h.order_update,
            _update_params,
            UpdateParams,
            mutating=True,
            field="PRICE",
        ),
        _route("GET", _ORDER + "/stats", _R, h.order_stats, _stats_params, StatsParams),
        _route("POST", _POOL, _T, h.pool_save, _pool_params, PoolParams, mutating=True, field="ID"),
        _route("GET", _POOL + "/{id}", _T, h.pool_get, _id_params, IdParams),
        _route(
            "DELETE",
            _POOL + "/{id}",
            _T,
            h.pool_delete,
            _id_params,
            IdParams,
            mutating=True,
            field="ID",
        ),
        _route("GET", "/main/api/v2/pools", _T, h.pool_list, _page_params, PageParams),
        _route(
            "POST",
            "/main/api/v2/pools/verify",
            _T,
            awaited,
            _verify_params,
            VerifyParams,
            awaited=True,
        ),
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
