"""The method table: name -> scope, params type, handler, and whether it changes state.

Theory of operation
-------------------
Every handler is synchronous and pure with respect to I/O: it reads the views (the market and
its fleet) or the key ring, or runs one command on the market or the key ring, and returns a
result Struct (``wire.py``). The dispatcher
(``app.py``) decides how to run it: reads run directly (atomic under trio), mutating ones run
inside the engine's ``execute`` so that their events, and the idempotency record of their
answer, are journaled before anyone hears the answer. A handler refuses by raising a
``MarketError`` (mapped at the edge) or an ``RpcError``; either way it emitted nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from marketplace.api import wire
from marketplace.api.auth import Caller
from marketplace.api.errors import ApiCode, RpcError
from marketplace.core.key_events import Scope
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.model import LedgerEntry, OrderType
from marketplace.core.views import MarketViews
from stratum.core.shares import Algorithm

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)


class CallContext(NamedTuple):
    """What a handler may use. ``caller`` is ``None`` only for public methods."""

    market: Market
    views: MarketViews
    keyring: KeyRing
    #: Market time: every time a handler stamps or compares.
    now_ms: int
    #: The wall clock: only ``server.time`` answers it (clients sync their signing to it).
    wall_ms: int
    caller: Caller | None
    stratum_host: str
    stratum_ports: Mapping[Algorithm, int]

    @property
    def account(self) -> str:
        """The signing account (a bug to ask in a public method)."""
        if self.caller is None:
            raise RuntimeError("public method asked for the caller")
        return self.caller.account


class Method(NamedTuple):
    name: str
    #: ``None``: public (no signature needed).
    scope: Scope | None
    params: type[msgspec.Struct]
    run: Callable[[CallContext, Any], msgspec.Struct]
    mutating: bool
    #: The answer holds a secret: the idempotency record keeps it without (see app).
    secret_bearing: bool = False
    decoder: msgspec.json.Decoder[Any] | None = None


def _method(
    name: str,
    scope: Scope | None,
    params: type[P],
    run: Callable[[CallContext, P], R],
    *,
    mutating: bool = False,
    secret_bearing: bool = False,
) -> Method:
    return Method(
        name=name,
        scope=scope,
        params=params,
        run=run,
        mutating=mutating,
        secret_bearing=secret_bearing,
        decoder=msgspec.json.Decoder(params),
    )


# ---------------------------------------------------------------------------------- public


def server_time(ctx: CallContext, p: wire.NoParams) -> wire.TimeOut:
    return wire.TimeOut(time_ms=ctx.wall_ms)


def market_info(ctx: CallContext, p: wire.NoParams) -> wire.MarketInfoOut:
    return wire.MarketInfoOut(
        markets=[
            wire.market_out(
                ctx.market.rules(alg),
                fixed_price_msat=ctx.market.fixed_quote(alg, fleet=ctx.views.fleet),
                stratum_host=ctx.stratum_host,
                stratum_port=ctx.stratum_ports.get(alg),
            )
            for alg in ctx.market.algorithms()
        ]
    )


def market_orderbook(ctx: CallContext, p: wire.AlgorithmParams) -> wire.OrderBookOut:
    return wire.orderbook_out(ctx.views.orderbook(p.algorithm, now_ms=ctx.now_ms))


def market_stats(ctx: CallContext, p: wire.AlgorithmParams) -> wire.MarketStatsOut:
    return wire.market_stats_out(ctx.views.market_stats(p.algorithm, now_ms=ctx.now_ms))


# ---------------------------------------------------------------------------------- account


def account_balance(ctx: CallContext, p: wire.NoParams) -> wire.BalanceOut:
    return wire.balance_out(ctx.market.balance(ctx.account))


def account_ledger(ctx: CallContext, p: wire.LedgerParams) -> wire.LedgerOut:
    entries = ctx.market.ledger(ctx.account, limit=p.limit, before=p.before)
    return wire.LedgerOut(entries=[wire.ledger_entry_out(e) for e in entries])


def account_deposit(ctx: CallContext, p: wire.DepositParams) -> wire.MoneyMoveOut:
    amount = wire.parse_amount(p.amount)
    entry = ctx.market.deposit(account=ctx.account, amount_msat=amount, now_ms=ctx.now_ms)
    return _money_move(ctx, entry)


def account_withdraw(ctx: CallContext, p: wire.WithdrawParams) -> wire.MoneyMoveOut:
    amount = wire.parse_amount(p.amount)
    entry = ctx.market.withdraw(
        account=ctx.account, amount_msat=amount, address=p.address, now_ms=ctx.now_ms
    )
    return _money_move(ctx, entry)


def _money_move(ctx: CallContext, entry: LedgerEntry) -> wire.MoneyMoveOut:
    balance = wire.balance_out(ctx.market.balance(ctx.account))
    return wire.MoneyMoveOut(entry=wire.ledger_entry_out(entry), balance=balance)


# ---------------------------------------------------------------------------------- orders


def order_create(ctx: CallContext, p: wire.OrderCreateParams) -> wire.OrderOut:
    price = None if p.price is None else wire.parse_price(p.price)
    order_id = ctx.market.create_order(
        account=ctx.account,
        algorithm=p.algorithm,
        type=OrderType(p.type),
        price_msat=price,
        limit_hs=wire.parse_limit(p.limit, p.algorithm),
        amount_msat=wire.parse_amount(p.amount),
        duration_s=p.duration_s,
        now_ms=ctx.now_ms,
        fleet=ctx.views.fleet,
    )
    return _order_out(ctx, order_id)


def _order_out(ctx: CallContext, order_id: str) -> wire.OrderOut:
    view = ctx.views.get_order(account=ctx.account, order_id=order_id, now_ms=ctx.now_ms)
    return wire.order_out(view)


def order_get(ctx: CallContext, p: wire.OrderIdParams) -> wire.OrderOut:
    return _order_out(ctx, p.id)


def order_list(ctx: CallContext, p: wire.OrderListParams) -> wire.OrderListOut:
    views = ctx.views.list_orders(account=ctx.account, status=p.status, now_ms=ctx.now_ms)
    return wire.OrderListOut(orders=[wire.order_out(v) for v in views])


def order_set_price(ctx: CallContext, p: wire.SetPriceParams) -> wire.OrderOut:
    ctx.market.set_price(
        account=ctx.account,
        order_id=p.id,
        price_msat=wire.parse_price(p.price),
        now_ms=ctx.now_ms,
    )
    return _order_out(ctx, p.id)


def order_set_limit(ctx: CallContext, p: wire.SetLimitParams) -> wire.OrderOut:
    current = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    ctx.market.set_limit(
        account=ctx.account,
        order_id=p.id,
        limit_hs=wire.parse_limit(p.limit, current.algorithm),
        now_ms=ctx.now_ms,
    )
    return _order_out(ctx, p.id)


def order_refill(ctx: CallContext, p: wire.RefillParams) -> wire.OrderOut:
    ctx.market.refill(
        account=ctx.account,
        order_id=p.id,
        amount_msat=wire.parse_amount(p.amount),
        now_ms=ctx.now_ms,
    )
    return _order_out(ctx, p.id)


def order_cancel(ctx: CallContext, p: wire.OrderIdParams) -> wire.OrderOut:
    ctx.market.cancel(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    return _order_out(ctx, p.id)


def order_stats(ctx: CallContext, p: wire.OrderStatsParams) -> wire.OrderStatsOut:
    view = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    points = ctx.views.order_stats(
        account=ctx.account, order_id=p.id, since_ms=p.since_ms, now_ms=ctx.now_ms
    )
    return wire.order_stats_out(view, points)


def worker_list(ctx: CallContext, p: wire.NoParams) -> wire.WorkerListOut:
    views = ctx.views.workers_of(ctx.account, now_ms=ctx.now_ms)
    return wire.WorkerListOut(workers=[wire.worker_out(v) for v in views])


# ---------------------------------------------------------------------------------- keys


def apikey_create(ctx: CallContext, p: wire.KeyCreateParams) -> wire.KeyOut:
    assert ctx.caller is not None
    beyond = sorted(set(p.scopes) - ctx.caller.scopes)
    if beyond:
        # A key cannot mint a key more powerful than itself.
        raise RpcError(
            ApiCode.FORBIDDEN,
            "a key can only grant scopes it has",
            {"scopes": [s.value for s in beyond]},
        )
    expires = None if p.expires_in_s is None else ctx.now_ms + p.expires_in_s * 1000
    issued = ctx.keyring.create_key(
        account=ctx.account, label=p.label, scopes=p.scopes, expires_ms=expires, now_ms=ctx.now_ms
    )
    return wire.issued_out(issued)


def apikey_list(ctx: CallContext, p: wire.NoParams) -> wire.KeyListOut:
    keys = ctx.keyring.list_keys(ctx.account, now_ms=ctx.now_ms)
    return wire.KeyListOut(keys=[wire.key_out(k) for k in keys])


def apikey_revoke(ctx: CallContext, p: wire.KeyIdParams) -> wire.OkOut:
    ctx.keyring.revoke_key(account=ctx.account, key_id=p.key_id, now_ms=ctx.now_ms)
    return wire.OkOut(ok=True, key_id=p.key_id)


def apikey_rotate(ctx: CallContext, p: wire.KeyRotateParams) -> wire.KeyOut:
    issued = ctx.keyring.rotate_key(
        account=ctx.account, key_id=p.key_id, grace_ms=p.grace_s * 1000, now_ms=ctx.now_ms
    )
    return wire.issued_out(issued)


_R, _T, _W, _K = Scope.READ, Scope.TRADE, Scope.WITHDRAW, Scope.KEYS

METHODS: Final[dict[str, Method]] = {
    m.name: m
    for m in (
        _method("server.time", None, wire.NoParams, server_time),
        _method("market.info", None, wire.NoParams, market_info),
        _method("market.orderbook", None, wire.AlgorithmParams, market_orderbook),
        _method("market.stats", None, wire.AlgorithmParams, market_stats),
        _method("account.balance", _R, wire.NoParams, account_balance),
        _method("account.ledger", _R, wire.LedgerParams, account_ledger),
        _method("account.deposit", _T, wire.DepositParams, account_deposit, mutating=True),
        _method("account.withdraw", _W, wire.WithdrawParams, account_withdraw, mutating=True),
        _method("order.create", _T, wire.OrderCreateParams, order_create, mutating=True),
        _method("order.get", _R, wire.OrderIdParams, order_get),
        _method("order.list", _R, wire.OrderListParams, order_list),
        _method("order.set_price", _T, wire.SetPriceParams, order_set_price, mutating=True),
        _method("order.set_limit", _T, wire.SetLimitParams, order_set_limit, mutating=True),
        _method("order.refill", _T, wire.RefillParams, order_refill, mutating=True),
        _method("order.cancel", _T, wire.OrderIdParams, order_cancel, mutating=True),
        _method("order.stats", _R, wire.OrderStatsParams, order_stats),
        _method("worker.list", _R, wire.NoParams, worker_list),
        _method(
            "apikey.create",
            _K,
            wire.KeyCreateParams,
            apikey_create,
            mutating=True,
            secret_bearing=True,
        ),
        _method("apikey.list", _K, wire.NoParams, apikey_list),
        _method("apikey.revoke", _K, wire.KeyIdParams, apikey_revoke, mutating=True),
        _method(
            "apikey.rotate",
            _K,
            wire.KeyRotateParams,
            apikey_rotate,
            mutating=True,
            secret_bearing=True,
        ),
    )
}
