"""The method table: name -> scope, params type, handler, and whether it changes state.

Theory of operation
-------------------
Every handler but one is synchronous and pure with respect to I/O: it reads the views (the
market and its fleet) or the key ring, or runs one command on the market, the key ring or the
pool registry, and returns a result Struct (``wire.py``). The exception is ``pool.verify``,
which connects to the pool (through the node's proxy, ``ProxyPort``) and is awaited. The
dispatcher
(``app.py``) decides how to run it: reads run directly (atomic under trio), mutating ones run
inside the engine's ``execute`` so that their events, and the idempotency record of their
answer, are journaled before anyone hears the answer. A handler refuses by raising a
``MarketError`` (mapped at the edge) or an ``RpcError``; either way it emitted nothing.

Account security (security.md) is declared here too. A handler that changes a key, a second
factor, an address list or moves money out records its one activity entry in the same command
(``CallContext.actor``: who did it). A method whose calls may need a second-factor code names
``second_factor``: given the call, which of the account's secrets its ``otp`` param must be a
code of (``None``: this call needs none, as ``apikey.create`` of a read-only key). The
dispatcher checks the code in the call's own command before the handler runs and hands the
proof on (``CallContext.passed``). Key scopes: a key grants, rotates and revokes only keys
whose scopes are within its own (``_within_caller``).

Answers that hold a secret (a new key's, a TOTP secret, recovery codes) declare a
``Redaction``: what the idempotency record keeps instead (ids only) and how a retry's answer
is derived again from it, so the journal never holds the secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import msgspec

from marketplace.api import rpc, wire, wire_history
from marketplace.api.auth import Caller
from marketplace.api.errors import ApiCode, RpcError
from marketplace.core.key_events import Scope
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.model import LedgerEntry, OrderType
from marketplace.core.pool_hosts import AllowList
from marketplace.core.pools import PoolAccess, PoolRegistry, check_pool_params
from marketplace.core.second_factor import Against
from marketplace.core.security import AccountSecurity, Actor, Passed
from marketplace.core.security_events import ActivityKind, Detail
from marketplace.core.views import MarketViews
from stratum.core.shares import Algorithm

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)


class ProxyPort(Protocol):
    """What the API asks of the node's proxy (``marketplace.upstream``)."""

    async def verify(self, access: PoolAccess) -> wire.PoolVerifyOut:
        """Connect to the pool as an order would, within 10 s, and say how far it got."""
        ...


class CallContext(NamedTuple):
    """What a handler may use. ``caller`` is ``None`` only for public methods."""

    market: Market
    views: MarketViews
    keyring: KeyRing
    #: Market time: every time a handler stamps or compares.
    now_ms: int
    #: The wall clock: only ``server.time`` answers it (clients sync their signing to it), as
    #: ``time_ms`` beside the market's ``market_time_ms``.
    wall_ms: int
    caller: Caller | None
    stratum_host: str
    stratum_ports: Mapping[Algorithm, int]
    security: AccountSecurity
    #: The client's address (``None`` in-process), for activity entries.
    remote: str | None = None
    #: A second-factor code that passed in this call's command (set by the dispatcher).
    passed: Passed | None = None
    #: The buyers' pools and which hosts they may be on (``None``: this node has none).
    pools: PoolRegistry | None = None
    pool_allow: AllowList = AllowList()
    proxy: ProxyPort | None = None

    @property
    def pool_registry(self) -> PoolRegistry:
        """The pool registry; ``RpcError`` when this node runs none."""
        if self.pools is None:
            raise RpcError(ApiCode.INVALID_STATE, "this node keeps no pools", {"pools": "off"})
        return self.pools

    @property
    def account(self) -> str:
        """The signing account (a bug to ask in a public method)."""
        if self.caller is None:
            raise RuntimeError("public method asked for the caller")
        return self.caller.account

    @property
    def actor(self) -> Actor:
        """Who makes this call, for its activity entry."""
        return Actor(None if self.caller is None else self.caller.key_id, self.remote)

    def record(self, kind: ActivityKind, detail: Detail) -> None:
        """Add this call's entry to the account's activity log (in the call's command)."""
        self.security.record(
            account=self.account, kind=kind, actor=self.actor, detail=detail, now_ms=self.now_ms
        )


#: Which secret a call's ``otp`` must be a code of (``None``: the call needs no code).
SecondFactor = Callable[[CallContext, Any], Against | None]


class Redaction(NamedTuple):
    """How a secret-bearing answer is recorded for retries: ``redact(ctx, result)`` gives the
    bytes to keep (no secret), ``reveal(ctx, kept)`` the answer again."""

    redact: Callable[[CallContext, Any], bytes]
    reveal: Callable[[CallContext, bytes], bytes]


class Method(NamedTuple):
    name: str
    #: ``None``: public (no signature needed).
    scope: Scope | None
    params: type[msgspec.Struct]
    run: Callable[[CallContext, Any], msgspec.Struct]
    mutating: bool
    decoder: msgspec.json.Decoder[Any] | None = None
    #: The answer holds a secret: what the idempotency record keeps instead (see app).
    redaction: Redaction | None = None
    #: Whether (and against which secret) a call needs a second-factor code.
    second_factor: SecondFactor | None = None
    #: A handler to await instead of ``run`` (only reads may be: mutating calls run inside
    #: ``execute``, synchronously).
    awaited: Callable[[CallContext, Any], Awaitable[msgspec.Struct]] | None = None


def _method(
    name: str,
    scope: Scope | None,
    params: type[P],
    run: Callable[[CallContext, P], R],
    *,
    mutating: bool = False,
    redaction: Redaction | None = None,
    second_factor: Callable[[CallContext, P], Against | None] | None = None,
) -> Method:
    return Method(
        name=name,
        scope=scope,
        params=params,
        run=run,
        mutating=mutating,
        decoder=msgspec.json.Decoder(params),
        redaction=redaction,
        second_factor=second_factor,
    )


def _awaited(
    name: str,
    scope: Scope,
    params: type[P],
    run: Callable[[CallContext, P], Awaitable[R]],
) -> Method:
    def not_sync(ctx: CallContext, p: P) -> msgspec.Struct:
        raise RuntimeError(f"{name} is awaited, not run")

    return Method(
        name=name,
        scope=scope,
        params=params,
        run=not_sync,
        mutating=False,
        decoder=msgspec.json.Decoder(params),
        awaited=run,
    )


# ---------------------------------------------------------------------------------- public


def server_time(ctx: CallContext, p: wire.NoParams) -> wire.TimeOut:
    return wire.TimeOut(time_ms=ctx.wall_ms, market_time_ms=ctx.now_ms)


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


def market_history(
    ctx: CallContext, p: wire_history.MarketHistoryParams
) -> wire_history.MarketHistoryOut:
    points = ctx.views.market_history(
        p.algorithm, resolution_s=p.resolution_s, since_ms=p.since_ms, now_ms=ctx.now_ms
    )
    return wire_history.market_history_out(p.algorithm, resolution_s=p.resolution_s, points=points)


# ---------------------------------------------------------------------------------- account


def account_history(
    ctx: CallContext, p: wire_history.AccountHistoryParams
) -> wire_history.AccountHistoryOut:
    points = ctx.views.account_history(
        ctx.account, resolution_s=p.resolution_s, since_ms=p.since_ms, now_ms=ctx.now_ms
    )
    return wire_history.account_history_out(ctx.account, resolution_s=p.resolution_s, points=points)


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
    ctx.security.check_withdrawal(ctx.account, address=p.address, now_ms=ctx.now_ms)
    entry = ctx.market.withdraw(
        account=ctx.account, amount_msat=amount, address=p.address, now_ms=ctx.now_ms
    )
    detail: Detail = {"ledger_id": entry.id, "amount_msat": amount, "address": p.address}
    ctx.record(ActivityKind.WITHDRAWAL, detail)
    return _money_move(ctx, entry)


def _money_move(ctx: CallContext, entry: LedgerEntry) -> wire.MoneyMoveOut:
    balance = wire.balance_out(ctx.market.balance(ctx.account))
    return wire.MoneyMoveOut(entry=wire.ledger_entry_out(entry), balance=balance)


# ---------------------------------------------------------------------------------- orders


def order_create(ctx: CallContext, p: wire.OrderCreateParams) -> wire.OrderOut:
    price = None if p.price is None else wire.parse_price(p.price)
    if p.pool_id is not None:
        ctx.pool_registry.usable(ctx.account, p.pool_id, p.algorithm)
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
        pool_id=p.pool_id,
        request_id=None if ctx.caller is None else ctx.caller.request_id,
    )
    return _order_out(ctx, order_id)


def order_set_pool(ctx: CallContext, p: wire.SetPoolParams) -> wire.OrderOut:
    current = ctx.views.get_order(account=ctx.account, order_id=p.id, now_ms=ctx.now_ms)
    if p.pool_id is not None:
        ctx.pool_registry.usable(ctx.account, p.pool_id, current.algorithm)
    ctx.market.set_order_pool(
        account=ctx.account, order_id=p.id, pool_id=p.pool_id, now_ms=ctx.now_ms
    )
    return _order_out(ctx, p.id)


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


# ---------------------------------------------------------------------------------- pools


def pool_create(ctx: CallContext, p: wire.PoolCreateParams) -> wire.PoolOut:
    view = ctx.pool_registry.create_pool(
        account=ctx.account,
        name=p.name,
        algorithm=p.algorithm,
        host=p.host,
        port=p.port,
        username=p.username,
        password=p.password,
        allow=ctx.pool_allow,
        now_ms=ctx.now_ms,
    )
    return wire.pool_out(view)


def pool_list(ctx: CallContext, p: wire.NoParams) -> wire.PoolListOut:
    return wire.PoolListOut(
        pools=[wire.pool_out(v) for v in ctx.pool_registry.list_pools(ctx.account)]
    )


def pool_get(ctx: CallContext, p: wire.PoolIdParams) -> wire.PoolOut:
    return wire.pool_out(ctx.pool_registry.get_pool(ctx.account, p.id))


def pool_delete(ctx: CallContext, p: wire.PoolIdParams) -> wire.PoolOut:
    registry = ctx.pool_registry
    registry.get_pool(ctx.account, p.id)  # NotFound before anything else
    view = registry.delete_pool(
        account=ctx.account,
        pool_id=p.id,
        in_use=ctx.market.orders_using_pool(p.id),
        now_ms=ctx.now_ms,
    )
    return wire.pool_out(view)


async def pool_verify(ctx: CallContext, p: wire.PoolVerifyParams) -> wire.PoolVerifyOut:
    registry = ctx.pool_registry
    if p.id is not None:
        registry.get_pool(ctx.account, p.id)  # the caller's own pool, or NotFound
        access = registry.access(p.id)
    else:
        algorithm, host, port, username = p.algorithm, p.host, p.port, p.username
        if algorithm is None or host is None or port is None or username is None:
            missing = [
                f for f in ("algorithm", "host", "port", "username") if getattr(p, f) is None
            ]
            raise RpcError(
                ApiCode.INVALID_PARAMS,
                "pool.verify needs an id or the create params",
                {"missing": missing},
            )
        # The same checks as pool.create, host allow list included: no connection otherwise.
        check_pool_params(
            name=p.name or "verify",
            host=host,
            port=port,
            username=username,
            password=p.password,
            allow=ctx.pool_allow,
        )
        access = PoolAccess(
            pool_id="",
            algorithm=algorithm,
            host=host,
            port=port,
            username=username,
            password=p.password,
        )
    if ctx.proxy is None:
        raise RpcError(ApiCode.INVALID_STATE, "this node cannot verify pools", {"proxy": "off"})
    return await ctx.proxy.verify(access)


def worker_list(ctx: CallContext, p: wire.NoParams) -> wire.WorkerListOut:
    views = ctx.views.workers_of(ctx.account, now_ms=ctx.now_ms)
    return wire.WorkerListOut(workers=[wire.worker_out(v) for v in views])


# ---------------------------------------------------------------------------------- keys

#: Scopes whose keys need the second factor to be made (they move money or make keys).
_GUARDED: Final = frozenset({Scope.WITHDRAW, Scope.KEYS})


def _within_caller(ctx: CallContext, scopes: Iterable[Scope], message: str) -> None:
    """Raise 4003 unless ``scopes`` are all the calling key's: a key cannot make, rotate or
    end a key more powerful than itself."""
    assert ctx.caller is not None
    beyond = sorted(set(scopes) - ctx.caller.scopes)
    if beyond:
        raise RpcError(ApiCode.FORBIDDEN, message, {"scopes": [s.value for s in beyond]})


def _own_key_scopes(ctx: CallContext, key_id: str) -> tuple[Scope, ...]:
    """The scopes of the account's key ``key_id`` (none for another account's or no key:
    the key ring answers those "no such key")."""
    key = ctx.keyring.get(key_id)
    return () if key is None or key.account != ctx.account else key.scopes


def apikey_create(ctx: CallContext, p: wire.KeyCreateParams) -> wire.KeyOut:
    _within_caller(ctx, p.scopes, "a key can only grant scopes it has")
    expires = None if p.expires_in_s is None else ctx.now_ms + p.expires_in_s * 1000
    issued = ctx.keyring.create_key(
        account=ctx.account, label=p.label, scopes=p.scopes, expires_ms=expires, now_ms=ctx.now_ms
    )
    scopes = ",".join(issued.key.scopes)
    ctx.record(ActivityKind.KEY_CREATED, {"key_id": issued.key.key_id, "scopes": scopes})
    return wire.issued_out(issued)


def apikey_list(ctx: CallContext, p: wire.NoParams) -> wire.KeyListOut:
    keys = ctx.keyring.list_keys(ctx.account, now_ms=ctx.now_ms)
    return wire.KeyListOut(keys=[wire.key_out(k) for k in keys])


def apikey_revoke(ctx: CallContext, p: wire.KeyIdParams) -> wire.OkOut:
    scopes = _own_key_scopes(ctx, p.key_id)
    _within_caller(ctx, scopes, "a key can only revoke keys within its own scopes")
    ctx.keyring.revoke_key(account=ctx.account, key_id=p.key_id, now_ms=ctx.now_ms)
    ctx.record(ActivityKind.KEY_REVOKED, {"key_id": p.key_id})
    return wire.OkOut(ok=True, key_id=p.key_id)


def apikey_rotate(ctx: CallContext, p: wire.KeyRotateParams) -> wire.KeyOut:
    scopes = _own_key_scopes(ctx, p.key_id)
    _within_caller(ctx, scopes, "a key can only rotate keys within its own scopes")
    issued = ctx.keyring.rotate_key(
        account=ctx.account, key_id=p.key_id, grace_ms=p.grace_s * 1000, now_ms=ctx.now_ms
    )
    detail: Detail = {"key_id": p.key_id, "new_key_id": issued.key.key_id, "grace_s": p.grace_s}
    ctx.record(ActivityKind.KEY_ROTATED, detail)
    return wire.issued_out(issued)


def _key_guarded(scopes: Iterable[Scope]) -> Against | None:
    return Against.ACTIVE if _GUARDED.intersection(scopes) else None


def _create_needs_code(ctx: CallContext, p: wire.KeyCreateParams) -> Against | None:
    return _key_guarded(p.scopes)


def _rotate_needs_code(ctx: CallContext, p: wire.KeyRotateParams) -> Against | None:
    return _key_guarded(_own_key_scopes(ctx, p.key_id))


def _redact_key(ctx: CallContext, result: wire.KeyOut) -> bytes:
    # Keep the answer without the secret; a retry derives it again (_reveal_key).
    return rpc.encode(msgspec.structs.replace(result, secret=msgspec.UNSET))


def _reveal_key(ctx: CallContext, kept: bytes) -> bytes:
    key = _key_out_decoder.decode(kept)
    view = ctx.keyring.get(key.key_id)
    if view is None:
        raise RuntimeError(f"recorded key {key.key_id} unknown")
    secret = ctx.keyring.secret_of(view.key_id, view.version)
    return rpc.encode(msgspec.structs.replace(key, secret=secret))


_key_out_decoder: Final = msgspec.json.Decoder(wire.KeyOut)
_KEY_SECRET: Final = Redaction(_redact_key, _reveal_key)


# ---------------------------------------------------------------------------------- security


class _EnrollmentRecord(msgspec.Struct, frozen=True):
    """What an idempotency record keeps of a 2FA answer: the enrollment's id, no secret."""

    enrollment: str


_enrollment_decoder: Final = msgspec.json.Decoder(_EnrollmentRecord)


def _recorded_enrollment(ctx: CallContext, against: Against) -> bytes:
    enrollment = ctx.security.enrollment(ctx.account, against)
    if enrollment is None:
        raise RuntimeError("a 2FA answer without an enrollment")
    return rpc.encode(_EnrollmentRecord(enrollment))


def _reveal_secret(ctx: CallContext, kept: bytes) -> bytes:
    enrollment = _enrollment_decoder.decode(kept).enrollment
    secret, uri = ctx.security.reveal_enrollment(ctx.account, enrollment)
    return rpc.encode(wire.TwoFactorSecretOut(secret=secret, otpauth_uri=uri))


def _reveal_codes(ctx: CallContext, kept: bytes) -> bytes:
    enrollment = _enrollment_decoder.decode(kept).enrollment
    codes = ctx.security.reveal_recovery_codes(ctx.account, enrollment)
    return rpc.encode(wire.TwoFactorConfirmOut(enabled=True, recovery_codes=codes))


_TOTP_SECRET: Final = Redaction(
    lambda ctx, result: _recorded_enrollment(ctx, Against.PENDING), _reveal_secret
)
_RECOVERY_CODES: Final = Redaction(
    lambda ctx, result: _recorded_enrollment(ctx, Against.ACTIVE), _reveal_codes
)


def two_factor_enable(ctx: CallContext, p: wire.NoParams) -> wire.TwoFactorSecretOut:
    made = ctx.security.enable_2fa(account=ctx.account, actor=ctx.actor, now_ms=ctx.now_ms)
    return wire.TwoFactorSecretOut(secret=made.secret, otpauth_uri=made.otpauth_uri)


def two_factor_confirm(ctx: CallContext, p: wire.OtpParams) -> wire.TwoFactorConfirmOut:
    codes = ctx.security.confirm_2fa(
        account=ctx.account, passed=ctx.passed, actor=ctx.actor, now_ms=ctx.now_ms
    )
    return wire.TwoFactorConfirmOut(enabled=True, recovery_codes=codes)


def two_factor_disable(ctx: CallContext, p: wire.OptionalOtpParams) -> wire.TwoFactorOffOut:
    ctx.security.disable_2fa(
        account=ctx.account, passed=ctx.passed, actor=ctx.actor, now_ms=ctx.now_ms
    )
    return wire.TwoFactorOffOut(enabled=False)


def two_factor_status(ctx: CallContext, p: wire.NoParams) -> wire.TwoFactorStatusOut:
    status = ctx.security.status(ctx.account)
    return wire.TwoFactorStatusOut(enabled=status.enabled, pending=status.pending)


def address_add(ctx: CallContext, p: wire.AddressAddParams) -> wire.AddressOut:
    view = ctx.security.add_address(
        account=ctx.account, address=p.address, label=p.label, actor=ctx.actor, now_ms=ctx.now_ms
    )
    return wire.address_out(view)


def address_list(ctx: CallContext, p: wire.NoParams) -> wire.AddressListOut:
    views = ctx.security.addresses(ctx.account)
    return wire.AddressListOut(addresses=[wire.address_out(v) for v in views])


def address_remove(ctx: CallContext, p: wire.AddressParams) -> wire.AddressRemovedOut:
    ctx.security.remove_address(
        account=ctx.account, address=p.address, actor=ctx.actor, now_ms=ctx.now_ms
    )
    return wire.AddressRemovedOut(ok=True, address=p.address)


def account_activity(ctx: CallContext, p: wire.ActivityParams) -> wire.ActivityOut:
    entries = ctx.security.activity(ctx.account, limit=p.limit, before=p.before)
    return wire.ActivityOut(events=[wire.activity_entry_out(e) for e in entries])


def _always(ctx: CallContext, p: Any) -> Against:
    return Against.ACTIVE


def _pending(ctx: CallContext, p: Any) -> Against:
    return Against.PENDING


_R, _T, _W, _K = Scope.READ, Scope.TRADE, Scope.WITHDRAW, Scope.KEYS

METHODS: Final[dict[str, Method]] = {
    m.name: m
    for m in (
        _method("server.time", None, wire.NoParams, server_time),
        _method("market.info", None, wire.NoParams, market_info),
        _method("market.orderbook", None, wire.AlgorithmParams, market_orderbook),
        _method("market.stats", None, wire.AlgorithmParams, market_stats),
        _method("market.history", None, wire_history.MarketHistoryParams, market_history),
        _method("account.balance", _R, wire.NoParams, account_balance),
        _method("account.ledger", _R, wire.LedgerParams, account_ledger),
        _method("account.history", _R, wire_history.AccountHistoryParams, account_history),
        _method("account.deposit", _T, wire.DepositParams, account_deposit, mutating=True),
        _method(
            "account.withdraw",
            _W,
            wire.WithdrawParams,
            account_withdraw,
            mutating=True,
            second_factor=_always,
        ),
        _method("order.create", _T, wire.OrderCreateParams, order_create, mutating=True),
        _method("order.get", _R, wire.OrderIdParams, order_get),
        _method("order.list", _R, wire.OrderListParams, order_list),
        _method("order.set_price", _T, wire.SetPriceParams, order_set_price, mutating=True),
        _method("order.set_limit", _T, wire.SetLimitParams, order_set_limit, mutating=True),
        _method("order.refill", _T, wire.RefillParams, order_refill, mutating=True),
        _method("order.cancel", _T, wire.OrderIdParams, order_cancel, mutating=True),
        _method("order.stats", _R, wire.OrderStatsParams, order_stats),
        _method("order.set_pool", _T, wire.SetPoolParams, order_set_pool, mutating=True),
        _method("pool.create", _T, wire.PoolCreateParams, pool_create, mutating=True),
        _method("pool.list", _T, wire.NoParams, pool_list),
        _method("pool.get", _T, wire.PoolIdParams, pool_get),
        _method("pool.delete", _T, wire.PoolIdParams, pool_delete, mutating=True),
        _awaited("pool.verify", _T, wire.PoolVerifyParams, pool_verify),
        _method("worker.list", _R, wire.NoParams, worker_list),
        _method(
            "apikey.create",
            _K,
            wire.KeyCreateParams,
            apikey_create,
            mutating=True,
            redaction=_KEY_SECRET,
            second_factor=_create_needs_code,
        ),
        _method("apikey.list", _K, wire.NoParams, apikey_list),
        _method("apikey.revoke", _K, wire.KeyIdParams, apikey_revoke, mutating=True),
        _method(
            "apikey.rotate",
            _K,
            wire.KeyRotateParams,
            apikey_rotate,
            mutating=True,
            redaction=_KEY_SECRET,
            second_factor=_rotate_needs_code,
        ),
        _method(
            "account.2fa.enable",
            _K,
            wire.NoParams,
            two_factor_enable,
            mutating=True,
            redaction=_TOTP_SECRET,
        ),
        _method(
            "account.2fa.confirm",
            _K,
            wire.OtpParams,
            two_factor_confirm,
            mutating=True,
            redaction=_RECOVERY_CODES,
            second_factor=_pending,
        ),
        _method(
            "account.2fa.disable",
            _K,
            wire.OptionalOtpParams,
            two_factor_disable,
            mutating=True,
            second_factor=_always,
        ),
        _method("account.2fa.status", _R, wire.NoParams, two_factor_status),
        _method(
            "account.address.add",
            _W,
            wire.AddressAddParams,
            address_add,
            mutating=True,
            second_factor=_always,
        ),
        _method("account.address.list", _R, wire.NoParams, address_list),
        _method("account.address.remove", _W, wire.AddressParams, address_remove, mutating=True),
        _method("account.activity", _R, wire.ActivityParams, account_activity),
    )
}
