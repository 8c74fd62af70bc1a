"""The NiceHash door's handlers: each route's work, on the market's own operations.

Theory of operation
-------------------
A handler has the shape of a JSON-RPC handler (``methods.py``): ``(CallContext, params)`` in,
an answer Struct out, synchronous and run by the shared API path (``RpcService.run_method``) in
the executor when it changes state; ``pools_verify`` alone is awaited (it connects to the
pool). The handlers are thin. Each mutation calls the same operation as its JSON-RPC method:
the JSON-RPC handler itself where the arguments are the same (``methods.order_create``,
``order_cancel``, ``order_refill``, ``pool_create``, ``pool_delete``, ``pool_verify``), the
market's or the pool registry's command where NiceHash has what JSON-RPC has not
(``Market.change_order``: price and limit in one step; ``PoolRegistry.edit_pool``). Every rule
therefore lives once, in the market and the registry; the handler then reads the order or the
pool back and renders it (``render.py``). Reads go to the views.

``Handlers`` keeps one thing of its own: which pool settings passed ``pools/verify`` on this
door since the node started (``VerifiedPools``), which is what a pool's ``status`` says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from marketplace.api import methods
from marketplace.api import wire as rpc_wire
from marketplace.api.methods import CallContext
from marketplace.api.nicehash import render, units
from marketplace.api.nicehash.errors import bad_factor, invalid_input
from marketplace.api.nicehash.wire import (
    AccountsOut,
    BalanceOut,
    BookOrderOut,
    BuyInfoOut,
    CurrencyParams,
    EmptyOut,
    IdParams,
    MarketBookOut,
    MiningAlgorithmsOut,
    MyOrdersParams,
    NoParams,
    OrderBookOut,
    OrderBookParams,
    OrderListOut,
    OrderOut,
    OrderParams,
    PageParams,
    PaginationOut,
    PoolListOut,
    PoolOut,
    PoolParams,
    RefillParams,
    StatsOut,
    StatsParams,
    TotalOut,
    UpdateParams,
    VerifyOut,
    VerifyParams,
)
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.model import OrderStatus, OrderType, OrderView
from marketplace.core.money import format_btc
from marketplace.core.pools import PoolView
from stratum.core.shares import Algorithm

#: Pool settings remembered as verified, at most (the oldest are forgotten first).
MAX_VERIFIED: Final = 10_000

Settings = tuple[str, str, str, int, str]

_OPS: Final[dict[str, Callable[[int, int], bool]]] = {
    "LT": lambda created, ts: created < ts,
    "LE": lambda created, ts: created <= ts,
    "GT": lambda created, ts: created > ts,
    "GE": lambda created, ts: created >= ts,
}
#: The ``myOrders`` operators.
OPS: Final = frozenset(_OPS)

_STATS_COLUMNS: Final = (
    "time",
    "accepted_speed",
    "rejected_speed",
    "accepted_shares",
    "rejected_shares",
    "payed_amount",
)


class VerifiedPools:
    """Which pool settings (account, algorithm, host, port, username) passed ``pools/verify``
    on this door since the node started; bounded, oldest forgotten first."""

    def __init__(self, *, limit: int = MAX_VERIFIED) -> None:
        self._seen: dict[Settings, None] = {}
        self._limit = limit

    def add(self, settings: Settings) -> None:
        self._seen.pop(settings, None)
        self._seen[settings] = None
        while len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]

    def __contains__(self, settings: object) -> bool:
        return settings in self._seen


def check_factors(
    alg: Algorithm,
    *,
    market_factor: str | None,
    price_factor: str | None,
    display_market_factor: str | None,
    display_price_factor: str | None,
) -> None:
    """Factors a request sent must be ``alg``'s (none sent is fine; numbers compared as
    numbers, names in any case). Raises ``NiceHashError`` 5068."""
    factor = units.factor(alg)
    for given in (market_factor, price_factor):
        if given is not None and not units.same_number(given, factor):
            raise bad_factor()
    display = units.display_factor(alg).upper()
    for shown in (display_market_factor, display_price_factor):
        if shown is not None and shown.upper() != display:
            raise bad_factor()


def _value(field: str, parse: Callable[[str], int], text: str) -> int:
    """``parse(text)``, a value no market takes refused as ``Invalid input: FIELD`` (the JSON-RPC
    door's parsers name no field: the handler knows which it was)."""
    try:
        return parse(text)
    except InvalidArgument:
        raise invalid_input(field) from None


def _listed(view: OrderView, p: MyOrdersParams, *, status: str) -> bool:
    if p.algorithm is not None and view.algorithm != p.algorithm:
        return False
    if p.active is not None and (view.status is OrderStatus.ACTIVE) != p.active:
        return False
    if p.status is not None and status != p.status:
        return False
    return _OPS[p.op](view.created_ms, p.ts_ms)


class Handlers:
    """Every route's handler (see the module doc)."""

    def __init__(self) -> None:
        self.verified = VerifiedPools()

    # ------------------------------------------------------------------ public

    def algorithms(self, ctx: CallContext, p: NoParams) -> MiningAlgorithmsOut:
        served = ctx.market.algorithms()
        return MiningAlgorithmsOut(
            mining_algorithms=[
                render.mining_algorithm(ctx.market.rules(alg), port=ctx.stratum_ports.get(alg))
                for alg in units.LISTED
                if alg in served
            ]
        )

    def buy_info(self, ctx: CallContext, p: NoParams) -> BuyInfoOut:
        served = ctx.market.algorithms()
        return BuyInfoOut(
            mining_algorithms=[
                render.buy_info(ctx.market.rules(alg)) for alg in units.LISTED if alg in served
            ]
        )

    def order_book(self, ctx: CallContext, p: OrderBookParams) -> OrderBookOut:
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
            pagination=_page(len(book.orders), p.size, p.page),
        )
        return OrderBookOut(stats={market: stats for market in units.MARKETS})

    # ------------------------------------------------------------------ accounts

    def _balance(self, ctx: CallContext) -> BalanceOut:
        balance = ctx.market.balance(ctx.account)
        return BalanceOut(
            active=True,
            currency="BTC",
            total_balance=format_btc(balance.available_msat + balance.escrowed_msat),
            available=format_btc(balance.available_msat),
            debt=format_btc(0),
            pending=format_btc(balance.escrowed_msat),
        )

    def accounts(self, ctx: CallContext, p: NoParams) -> AccountsOut:
        btc = self._balance(ctx)
        total = TotalOut(
            currency=btc.currency,
            total_balance=btc.total_balance,
            available=btc.available,
            debt=btc.debt,
            pending=btc.pending,
        )
        return AccountsOut(total=total, currencies=[btc])

    def account(self, ctx: CallContext, p: CurrencyParams) -> BalanceOut:
        if p.currency.upper() != "BTC":
            raise NotFound("no such currency", {"currency": p.currency[:16]})
        return self._balance(ctx)

    # ------------------------------------------------------------------ orders

    def _pool(self, ctx: CallContext, view: PoolView) -> PoolOut:
        settings = (view.account, view.algorithm.value, view.host, view.port, view.username)
        return render.pool(view, verified=settings in self.verified)

    def _show(self, ctx: CallContext, view: OrderView) -> OrderOut:
        pool = None
        if view.pool_id is not None:
            registry = ctx.pool_registry
            try:
                shown = registry.get_pool(ctx.account, view.pool_id)
            except NotFound:  # deleted since the order ended: the pool as it was then
                shown = registry.former_pool(ctx.account, view.pool_id)
            pool = self._pool(ctx, shown)
        return render.order(view, pool=pool, now_ms=ctx.now_ms)

    def _order(self, ctx: CallContext, order_id: str) -> OrderOut:
        view = ctx.views.get_order(account=ctx.account, order_id=order_id, now_ms=ctx.now_ms)
        return self._show(ctx, view)

    def order_create(self, ctx: CallContext, p: OrderParams) -> OrderOut:
        alg = Algorithm(p.algorithm)
        _value("PRICE", rpc_wire.parse_price, p.price)
        _value("LIMIT", lambda text: rpc_wire.parse_limit(text, alg), p.limit)
        _value("AMOUNT", rpc_wire.parse_amount, p.amount)
        check_factors(
            alg,
            market_factor=p.market_factor,
            price_factor=p.price_factor,
            display_market_factor=p.display_market_factor,
            display_price_factor=p.display_price_factor,
        )
        placed = methods.order_create(
            ctx,
            rpc_wire.OrderCreateParams(
                algorithm=alg,
                type=OrderType.STANDARD,
                price=p.price,
                limit=p.limit,
                amount=p.amount,
                pool_id=p.pool_id,
            ),
        )
        return self._order(ctx, placed.id)

    def my_orders(self, ctx: CallContext, p: MyOrdersParams) -> OrderListOut:
        """The account's orders created before (or after) ``ts``, the ``limit`` nearest to
        it, newest first."""
        views = ctx.views.list_orders(account=ctx.account, now_ms=ctx.now_ms)
        shown = [self._show(ctx, v) for v in views]
        chosen = [
            out
            for view, out in zip(views, shown, strict=True)
            if _listed(view, p, status=out.status.code)
        ]
        # Oldest first here: the nearest to ``ts`` are the last before it, the first after.
        chosen = chosen[-p.limit :] if p.op in ("LT", "LE") else chosen[: p.limit]
        return OrderListOut(list=chosen[::-1])

    def order_get(self, ctx: CallContext, p: IdParams) -> OrderOut:
        return self._order(ctx, p.id)

    def order_cancel(self, ctx: CallContext, p: IdParams) -> OrderOut:
        methods.order_cancel(ctx, rpc_wire.OrderIdParams(id=p.id))
        return self._order(ctx, p.id)

    def order_refill(self, ctx: CallContext, p: RefillParams) -> OrderOut:
        _value("AMOUNT", rpc_wire.parse_amount, p.amount)
        methods.order_refill(ctx, rpc_wire.RefillParams(id=p.id, amount=p.amount))
        return self._order(ctx, p.id)

    def order_update(self, ctx: CallContext, p: UpdateParams) -> OrderOut:
        """NiceHash's updatePriceAndLimit: the price, the limit or both, in one command."""
        current = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
        check_factors(
            current.algorithm,
            market_factor=p.market_factor,
            price_factor=p.price_factor,
            display_market_factor=p.display_market_factor,
            display_price_factor=p.display_price_factor,
        )
        alg = current.algorithm
        ctx.market.change_order(
            account=ctx.account,
            order_id=p.id,
            price_msat=None if p.price is None else _value("PRICE", rpc_wire.parse_price, p.price),
            limit_hs=None
            if p.limit is None
            else _value("LIMIT", lambda text: rpc_wire.parse_limit(text, alg), p.limit),
            now_ms=ctx.now_ms,
        )
        return self._order(ctx, p.id)

    def order_stats(self, ctx: CallContext, p: StatsParams) -> StatsOut:
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

    # ------------------------------------------------------------------ pools

    def pool_save(self, ctx: CallContext, p: PoolParams) -> PoolOut:
        """Create a pool, or with ``id`` give one new settings (refused while an active order
        uses it)."""
        alg = Algorithm(p.algorithm)
        if p.id is None:
            created = methods.pool_create(
                ctx,
                rpc_wire.PoolCreateParams(
                    name=p.name,
                    algorithm=alg,
                    host=p.host,
                    port=p.port,
                    username=p.username,
                    password=p.password,
                ),
            )
            pool_id = created.id
        else:
            ctx.pool_registry.edit_pool(
                account=ctx.account,
                pool_id=p.id,
                name=p.name,
                algorithm=alg,
                host=p.host,
                port=p.port,
                username=p.username,
                password=p.password,
                allow=ctx.pool_allow,
                in_use=ctx.market.orders_using_pool(p.id),
                now_ms=ctx.now_ms,
            )
            pool_id = p.id
        return self._pool(ctx, ctx.pool_registry.get_pool(ctx.account, pool_id))

    def pool_get(self, ctx: CallContext, p: IdParams) -> PoolOut:
        return self._pool(ctx, ctx.pool_registry.get_pool(ctx.account, p.id))

    def pool_delete(self, ctx: CallContext, p: IdParams) -> EmptyOut:
        methods.pool_delete(ctx, rpc_wire.PoolIdParams(id=p.id))
        return EmptyOut()

    def pool_list(self, ctx: CallContext, p: PageParams) -> PoolListOut:
        pools = ctx.pool_registry.list_pools(ctx.account)
        shown = pools[p.page * p.size : (p.page + 1) * p.size]
        return PoolListOut(
            list=[self._pool(ctx, v) for v in shown],
            pagination=_page(len(pools), p.size, p.page),
        )

    async def pools_verify(self, ctx: CallContext, p: VerifyParams) -> VerifyOut:
        """NiceHash's pool verifier: ``pool.verify`` on the settings; its stages as log lines.
        Settings that pass are remembered as verified."""
        found = await methods.pool_verify(
            ctx,
            rpc_wire.PoolVerifyParams(
                algorithm=Algorithm(p.algorithm),
                host=p.host,
                port=p.port,
                username=p.username,
                password=p.password,
            ),
        )
        if found.ok:
            self.verified.add((ctx.account, p.algorithm, p.host, p.port, p.username))
        return VerifyOut(success=found.ok, logs=render.verify_logs(found))


def _page(total: int, size: int, page: int) -> PaginationOut:
    return PaginationOut(size=size, page=page, total_page_count=-(-total // size))
