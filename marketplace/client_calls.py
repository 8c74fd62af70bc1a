"""The buyer API's calls, written once: the table both clients and the CLI read.

Theory of operation
-------------------
``ApiCalls`` is the table. Each row is one decorated method: ``@api_call(...)`` names the
JSON-RPC method, the result Struct the answer decodes into, whether the call is public or
mutating, what the client returns from the result (``pick``) and the CLI command that runs it
(``Cli``); the method itself has the Python signature and docstring clients show, and builds
the call's params Struct (``marketplace.api.wire``, the server's own types).

Both clients (``marketplace.client``) inherit the table. Reading a row from a client gives a
method that builds a ``Request`` and hands it to that client's ``call``: ``MarketClient.call``
returns the result, ``AsyncMarketClient.call`` a coroutine, so one row is a sync and an async
method at once (the descriptor's overloads tell mypy which). The CLI (``client_cli``) walks
the same rows to build its commands. Adding an API call is one row here (and its handler in
``marketplace.api.methods``; a test checks that the two tables agree).

Mutating calls carry an ``X-Request-Id``: their builders take ``request_id`` (checked when the
row is declared), and one is generated when the caller gives none, so a retry never acts twice.
"""

from __future__ import annotations

import inspect
import types
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Concatenate, Final, Generic, ParamSpec, Protocol, TypeVar, overload

import msgspec

from marketplace.api import wire, wire_history
from marketplace.core.key_events import Scope
from marketplace.core.model import OrderStatus, OrderType
from stratum.core.shares import Algorithm

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


def _same(result: Any) -> Any:
    return result


@dataclass(frozen=True, slots=True)
class Request(Generic[T]):
    """One call ready to send: what to post, and how to read the answer's ``result``."""

    method: str
    params: msgspec.Struct
    result: type[Any]
    pick: Callable[[Any], T]
    signed: bool = True
    mutating: bool = False
    request_id: str | None = None

    def read(self, result: bytes) -> T:
        """The JSON ``result`` as this call returns it. Raises ``msgspec.DecodeError``."""
        return self.pick(msgspec.json.decode(result, type=self.result))

    def whole(self) -> Request[Any]:
        """The same call returning the API's whole result Struct (what the CLI prints)."""
        return replace(self, pick=_same)


@dataclass(frozen=True, slots=True)
class Arg:
    """One CLI argument: argparse's flags and options, and the row parameter it feeds
    (``None``: only the command's ``shape`` reads it)."""

    flags: tuple[str, ...]
    param: str | None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """Where argparse stores the value."""
        return str(self.options.get("dest", self.flags[0].lstrip("-").replace("-", "_")))


def arg(*flags: str, to: str | None = None, **options: Any) -> Arg:
    """An ``Arg`` for ``flags`` feeding the parameter ``to`` (default: named like its
    ``dest``). ``options`` go to argparse's ``add_argument``."""
    made = Arg(flags, None, options)
    return replace(made, param=to or made.dest)


@dataclass(frozen=True, slots=True)
class Cli:
    """A row's command, ``hashmarket GROUP NAME ARGS``; ``shape(result, args)`` may trim the
    result before it is printed."""

    group: str
    name: str
    help: str
    args: tuple[Arg, ...] = ()
    shape: Callable[[Any, Any], Any] | None = None


def cli(command: str, help: str, *args: Arg, shape: Callable[[Any, Any], Any] | None = None) -> Cli:
    """The ``Cli`` of ``command`` (``"GROUP NAME"``; a group may have a sub-group:
    ``"account 2fa enable"``)."""
    group, name = command.rsplit(" ", 1)
    return Cli(group, name, help, args, shape)


class SyncCaller(Protocol):
    """A client whose ``call`` returns the result (``MarketClient``)."""

    def call(self, call: Request[T], /) -> T: ...


class AsyncCaller(Protocol):
    """A client whose ``call`` is awaited (``AsyncMarketClient``)."""

    async def call(self, call: Request[T], /) -> T: ...


Builder = Callable[Concatenate[Any, P], msgspec.Struct]
_RAISES: Final = (
    "Raises ``ApiError``: the API's refusal (its code, message and data), ``TRANSPORT_ERROR``"
    " when the server cannot be reached, ``HTTP_ERROR`` for an answer that is not JSON-RPC."
)


@dataclass(eq=False)
class ApiCall(Generic[P, T]):
    """One row of the table (see the module doc). On a client it is a method; on the class
    it is the row itself, for the CLI and tests."""

    build: Builder[P]
    method: str
    result: type[Any]
    pick: Callable[[Any], T]
    public: bool
    mutating: bool
    cli: Cli | None

    def __post_init__(self) -> None:
        build = self.build
        self.__doc__ = build.__doc__
        signature = inspect.signature(build)
        if self.mutating != ("request_id" in signature.parameters):
            raise TypeError(f"{build.__name__}: request_id is for mutating calls, and all of them")

        def run(client: Any, /, *args: Any, **kwargs: Any) -> Any:
            return client.call(self.request(*args, **kwargs))

        run.__name__ = run.__qualname__ = build.__name__
        run.__doc__ = f"{inspect.cleandoc(build.__doc__ or '')}\n\n{_RAISES}"
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            return_annotation=inspect.Signature.empty
        )
        self._run = run

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Request[T]:
        """The ``Request`` for these arguments (raises ``ValueError`` for a bad enum value)."""
        params = self.build(None, *args, **kwargs)
        request_id = None
        if self.mutating:
            given = kwargs.get("request_id")
            request_id = given if isinstance(given, str) and given else uuid.uuid4().hex
        return Request(
            method=self.method,
            params=params,
            result=self.result,
            pick=self.pick,
            signed=not self.public,
            mutating=self.mutating,
            request_id=request_id,
        )

    @overload
    def __get__(self, client: None, owner: type[Any]) -> ApiCall[P, T]: ...
    @overload
    def __get__(self, client: AsyncCaller, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, client: SyncCaller, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        if client is None:
            return self
        return types.MethodType(self._run, client)


@overload
def api_call(
    method: str,
    result: type[R],
    *,
    public: bool = ...,
    mutating: bool = ...,
    cli: Cli | None = ...,
) -> Callable[[Builder[P]], ApiCall[P, R]]: ...
@overload
def api_call(
    method: str,
    result: type[R],
    *,
    pick: Callable[[R], T],
    public: bool = ...,
    mutating: bool = ...,
    cli: Cli | None = ...,
) -> Callable[[Builder[P]], ApiCall[P, T]]: ...
def api_call(
    method: str,
    result: type[Any],
    *,
    pick: Callable[[Any], Any] = _same,
    public: bool = False,
    mutating: bool = False,
    cli: Cli | None = None,
) -> Callable[[Builder[P]], ApiCall[P, Any]]:
    """Declare a row: the decorated method builds the params of JSON-RPC ``method``."""

    def declare(build: Builder[P]) -> ApiCall[P, Any]:
        return ApiCall(build, method, result, pick, public, mutating, cli)

    return declare


def _only_algorithm(info: wire.MarketInfoOut, args: Any) -> wire.MarketInfoOut:
    if args.algorithm is None:
        return info
    return msgspec.structs.replace(
        info, markets=[m for m in info.markets if m.algorithm == args.algorithm]
    )


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_ALGORITHMS: Final = tuple(Algorithm)
_ALGORITHM: Final = arg("--algorithm", choices=_ALGORITHMS, default="sha256d")
_ORDER_ID: Final = arg("id", to="order_id")
_POOL_ID: Final = arg("id", to="pool_id")
_POOL_ARGS: Final = (
    arg("--name", required=True),
    arg("--algorithm", choices=_ALGORITHMS, required=True),
    arg("--host", required=True, help="host name or address the operator allows"),
    arg("--port", type=int, required=True),
    arg("--username", required=True, help="the pool's worker name (often ADDRESS.WORKER)"),
    arg("--password", default="", help="write-only: never shown again"),
)
_KEY_ID: Final = arg("id", to="key_id")
_OTP: Final = arg("--otp", default=None, help="second-factor code (or a recovery code)")


def _order_and(param: str) -> tuple[Arg, Arg]:
    """``ID VALUE``: the order and its new ``param``."""
    return _ORDER_ID, arg("value", to=param, metavar=param.upper())


_NO_PARAMS: Final = wire.NoParams()
_HISTORY_ARGS: Final = (
    arg("--since", to="since_ms", type=int, default=None, help="ms since the epoch"),
    arg("--resolution", to="resolution_s", type=int, choices=(60, 300, 3600), default=60),
)
H = TypeVar("H", bound=msgspec.Struct)


def _history_params(params: type[H], **values: Any) -> H:
    """``params`` built and checked like the server decodes them (a resolution it would
    refuse raises ``msgspec.ValidationError`` here)."""
    return msgspec.convert(values, type=params)


class ApiCalls:
    """Every call of the buyer API (``buyer-api.md``), one row each (see the module doc).
    Every method raises ``ApiError`` for a refusal (the API's code, message and data), a
    transport failure (``TRANSPORT_ERROR``) or an unexpected HTTP answer (``HTTP_ERROR``)."""

    # ------------------------------------------------------------------ public
    @api_call("server.time", wire.TimeOut, pick=lambda r: r.time_ms, public=True)
    def server_time(self) -> wire.NoParams:
        """The server's clock: milliseconds since the epoch (``int``)."""
        return _NO_PARAMS

    @api_call(
        "server.time",
        wire.TimeOut,
        pick=lambda r: r.market_time_ms,
        public=True,
        cli=cli("market time", "the market's clock and the wall clock (ms)"),
    )
    def market_time(self) -> wire.NoParams:
        """The market's clock: milliseconds since the epoch (``int``), ahead of the wall
        clock by what an operator advanced it (control.md). Market rules (order ends,
        price-down intervals) run on it."""
        return _NO_PARAMS

    @api_call(
        "market.info",
        wire.MarketInfoOut,
        public=True,
        cli=cli(
            "market info",
            "markets: units, ports, minimums, quotes",
            # Not a parameter of the call: ``shape`` keeps only that market.
            Arg(("--algorithm",), None, {"choices": _ALGORITHMS, "help": "default: every one"}),
            shape=_only_algorithm,
        ),
    )
    def market_info(self) -> wire.NoParams:
        """Every market's rules, unit, Stratum port and fixed price (``MarketInfoOut``)."""
        return _NO_PARAMS

    @api_call(
        "market.orderbook",
        wire.OrderBookOut,
        public=True,
        cli=cli("market orderbook", "active orders, best first", _ALGORITHM),
    )
    def orderbook(self, algorithm: Algorithm | str) -> wire.AlgorithmParams:
        """``algorithm``'s active orders, best first, and the total speed (``OrderBookOut``).
        Raises ``ValueError`` for an unknown algorithm."""
        return wire.AlgorithmParams(algorithm=Algorithm(algorithm))

    @api_call(
        "market.stats",
        wire.MarketStatsOut,
        public=True,
        cli=cli("market stats", "workers, speed, rejects", _ALGORITHM),
    )
    def market_stats(self, algorithm: Algorithm | str) -> wire.AlgorithmParams:
        """``algorithm``'s workers, accepted speed and rejects (``MarketStatsOut``). Raises
        ``ValueError`` for an unknown algorithm."""
        return wire.AlgorithmParams(algorithm=Algorithm(algorithm))

    @api_call(
        "market.history",
        wire_history.MarketHistoryOut,
        public=True,
        cli=cli(
            "market history",
            "speed, workers, prices and spend per bucket",
            _ALGORITHM,
            *_HISTORY_ARGS,
        ),
    )
    def market_history(
        self, algorithm: Algorithm | str, *, since_ms: int | None = None, resolution_s: int = 60
    ) -> wire_history.MarketHistoryParams:
        """``algorithm``'s history, oldest first, one point per ``resolution_s`` (60, 300 or
        3600) since ``since_ms`` (``MarketHistoryOut``). Raises ``ValueError`` for an unknown
        algorithm, ``msgspec.ValidationError`` for another resolution."""
        return _history_params(
            wire_history.MarketHistoryParams,
            algorithm=Algorithm(algorithm),
            since_ms=since_ms,
            resolution_s=resolution_s,
        )

    # ------------------------------------------------------------------ account
    @api_call(
        "account.history",
        wire_history.AccountHistoryOut,
        cli=cli("account history", "spend and earnings per bucket", *_HISTORY_ARGS),
    )
    def account_history(
        self, *, since_ms: int | None = None, resolution_s: int = 60
    ) -> wire_history.AccountHistoryParams:
        """The account's spend (as a buyer) and earnings (as a seller) per ``resolution_s``
        bucket since ``since_ms`` (``AccountHistoryOut``). Raises
        ``msgspec.ValidationError`` for a resolution other than 60, 300 or 3600."""
        return _history_params(
            wire_history.AccountHistoryParams, since_ms=since_ms, resolution_s=resolution_s
        )

    @api_call(
        "account.balance", wire.BalanceOut, cli=cli("account balance", "available and escrowed")
    )
    def balance(self) -> wire.NoParams:
        """The account's available and escrowed BTC (``BalanceOut``)."""
        return _NO_PARAMS

    @api_call(
        "account.ledger",
        wire.LedgerOut,
        cli=cli(
            "account ledger",
            "ledger entries, newest first",
            arg("--limit", type=int, default=50),
            arg("--before", type=int, default=None, help="entries with ids below this"),
        ),
    )
    def ledger(self, *, limit: int = 50, before: int | None = None) -> wire.LedgerParams:
        """Up to ``limit`` ledger entries with ids below ``before``, newest first
        (``LedgerOut``)."""
        return wire.LedgerParams(limit=limit, before=before)

    @api_call(
        "account.deposit",
        wire.MoneyMoveOut,
        mutating=True,
        cli=cli("account deposit", "faucet (if enabled)", arg("amount", help="BTC, e.g. 0.01")),
    )
    def deposit(self, amount: str, *, request_id: str | None = None) -> wire.DepositParams:
        """Add ``amount`` BTC from the faucet (4030 if the market has none); the ledger entry
        and the new balance (``MoneyMoveOut``)."""
        return wire.DepositParams(amount=amount)

    @api_call(
        "account.withdraw",
        wire.MoneyMoveOut,
        mutating=True,
        cli=cli(
            "account withdraw",
            "record a withdrawal",
            arg("amount", help="BTC"),
            arg("address"),
            _OTP,
        ),
    )
    def withdraw(
        self,
        amount: str,
        address: str,
        *,
        otp: str | None = None,
        request_id: str | None = None,
    ) -> wire.WithdrawParams:
        """Withdraw ``amount`` BTC to ``address`` (with two-factor authentication on, ``otp``
        is a current code or a recovery code; with a withdrawal list, a listed address past
        its lock); the ledger entry and the new balance (``MoneyMoveOut``)."""
        return wire.WithdrawParams(amount=amount, address=address, otp=otp)

    @api_call(
        "worker.list", wire.WorkerListOut, cli=cli("account workers", "your workers as a seller")
    )
    def workers(self) -> wire.NoParams:
        """The account's workers as a seller: speed, shares, earnings (``WorkerListOut``)."""
        return _NO_PARAMS

    # ------------------------------------------------------------------ orders
    @api_call(
        "order.create",
        wire.OrderOut,
        mutating=True,
        cli=cli(
            "order create",
            "place an order",
            arg("--algorithm", choices=_ALGORITHMS, required=True),
            arg("--type", choices=tuple(OrderType), required=True),
            arg("--price", default=None, help="BTC per unit/s per day"),
            arg("--limit", required=True, help="speed in the market's unit; 0 = none"),
            arg("--amount", required=True, help="budget in BTC"),
            arg("--duration", to="duration_s", type=int, default=None, help="seconds"),
            arg("--pool", to="pool_id", default=None, help="mine for your pool (its id)"),
        ),
    )
    def create_order(
        self,
        *,
        algorithm: Algorithm | str,
        type: OrderType | str,
        limit: str,
        amount: str,
        price: str | None = None,
        duration_s: int | None = None,
        pool_id: str | None = None,
        request_id: str | None = None,
    ) -> wire.OrderCreateParams:
        """Place an order, escrowing ``amount``, mining for the pool ``pool_id`` if given;
        the new order (``OrderOut``). Raises ``ValueError`` for an unknown algorithm or
        type."""
        return wire.OrderCreateParams(
            algorithm=Algorithm(algorithm),
            type=OrderType(type),
            limit=limit,
            amount=amount,
            price=price,
            duration_s=duration_s,
            pool_id=pool_id,
        )

    @api_call(
        "order.list",
        wire.OrderListOut,
        pick=lambda r: r.orders,
        cli=cli("order list", "your orders", arg("--status", choices=tuple(OrderStatus))),
    )
    def list_orders(self, status: OrderStatus | str | None = None) -> wire.OrderListParams:
        """The account's orders, only those in ``status`` if given (``list[OrderOut]``).
        Raises ``ValueError`` for an unknown status."""
        return wire.OrderListParams(status=None if status is None else OrderStatus(status))

    @api_call("order.get", wire.OrderOut, cli=cli("order get", "one order", _ORDER_ID))
    def get_order(self, order_id: str) -> wire.OrderIdParams:
        """The account's order ``order_id`` (``OrderOut``; 4040 if it has none such)."""
        return wire.OrderIdParams(id=order_id)

    @api_call(
        "order.cancel",
        wire.OrderOut,
        mutating=True,
        cli=cli("order cancel", "cancel, releasing the budget", _ORDER_ID),
    )
    def cancel_order(self, order_id: str, *, request_id: str | None = None) -> wire.OrderIdParams:
        """Cancel the order, releasing what is left of its budget; the order (``OrderOut``)."""
        return wire.OrderIdParams(id=order_id)

    @api_call(
        "order.stats", wire.OrderStatsOut, cli=cli("order stats", "per-minute history", _ORDER_ID)
    )
    def order_stats(self, order_id: str, *, since_ms: int | None = None) -> wire.OrderStatsParams:
        """The order's per-minute history since ``since_ms`` (``OrderStatsOut``)."""
        return wire.OrderStatsParams(id=order_id, since_ms=since_ms)

    @api_call(
        "order.set_price",
        wire.OrderOut,
        mutating=True,
        cli=cli("order set-price", "change the price", *_order_and("price")),
    )
    def set_price(
        self, order_id: str, price: str, *, request_id: str | None = None
    ) -> wire.SetPriceParams:
        """Change the order's price (lowering it is limited in step and rate); the order
        (``OrderOut``)."""
        return wire.SetPriceParams(id=order_id, price=price)

    @api_call(
        "order.set_limit",
        wire.OrderOut,
        mutating=True,
        cli=cli("order set-limit", "change the limit", *_order_and("limit")),
    )
    def set_limit(
        self, order_id: str, limit: str, *, request_id: str | None = None
    ) -> wire.SetLimitParams:
        """Change the order's speed limit (the market's unit, 0 = none); the order
        (``OrderOut``)."""
        return wire.SetLimitParams(id=order_id, limit=limit)

    @api_call(
        "order.refill",
        wire.OrderOut,
        mutating=True,
        cli=cli("order refill", "add budget (BTC)", *_order_and("amount")),
    )
    def refill(
        self, order_id: str, amount: str, *, request_id: str | None = None
    ) -> wire.RefillParams:
        """Add ``amount`` BTC to the order's budget; the order (``OrderOut``)."""
        return wire.RefillParams(id=order_id, amount=amount)

    @api_call(
        "order.set_pool",
        wire.OrderOut,
        mutating=True,
        cli=cli(
            "order set-pool",
            "mine for another of your pools",
            _ORDER_ID,
            arg("value", to="pool_id", metavar="POOL"),
        ),
    )
    def set_pool(
        self, order_id: str, pool_id: str | None, *, request_id: str | None = None
    ) -> wire.SetPoolParams:
        """Move the active order to the pool ``pool_id`` (``None``: the emulated chain); the
        order (``OrderOut``)."""
        return wire.SetPoolParams(id=order_id, pool_id=pool_id)

    # ------------------------------------------------------------------ pools
    @api_call(
        "pool.create",
        wire.PoolOut,
        mutating=True,
        cli=cli(
            "pool create",
            "save your pool (the password is write-only)",
            *_POOL_ARGS,
        ),
    )
    def create_pool(
        self,
        *,
        name: str,
        algorithm: Algorithm | str,
        host: str,
        port: int,
        username: str,
        password: str = "",
        request_id: str | None = None,
    ) -> wire.PoolCreateParams:
        """Save a pool orders can mine for; the pool, without its password (``PoolOut``;
        4220 ``{"field": "host"}`` for a host the operator does not allow). Raises
        ``ValueError`` for an unknown algorithm."""
        return wire.PoolCreateParams(
            name=name,
            algorithm=Algorithm(algorithm),
            host=host,
            port=port,
            username=username,
            password=password,
        )

    @api_call(
        "pool.list",
        wire.PoolListOut,
        pick=lambda r: r.pools,
        cli=cli("pool list", "your pools"),
    )
    def list_pools(self) -> wire.NoParams:
        """The account's pools (``list[PoolOut]``)."""
        return _NO_PARAMS

    @api_call("pool.get", wire.PoolOut, cli=cli("pool get", "one pool", _POOL_ID))
    def get_pool(self, pool_id: str) -> wire.PoolIdParams:
        """The account's pool ``pool_id`` (``PoolOut``; 4040 if it has none such)."""
        return wire.PoolIdParams(id=pool_id)

    @api_call(
        "pool.delete",
        wire.PoolOut,
        mutating=True,
        cli=cli("pool delete", "delete a pool no active order uses", _POOL_ID),
    )
    def delete_pool(self, pool_id: str, *, request_id: str | None = None) -> wire.PoolIdParams:
        """Delete the pool (4090 while an active order uses it); its last view (``PoolOut``)."""
        return wire.PoolIdParams(id=pool_id)

    @api_call(
        "pool.verify",
        wire.PoolVerifyOut,
        cli=cli(
            "pool verify",
            "connect to a pool as an order would (a saved one, or --host ...)",
            arg("id", to="pool_id", nargs="?", default=None, help="a saved pool's id"),
            *(
                replace(a, options={**a.options, "required": False, "default": None})
                for a in _POOL_ARGS
                if a.param != "password"
            ),
            arg("--password", default=""),
        ),
    )
    def verify_pool(
        self,
        pool_id: str | None = None,
        *,
        name: str | None = None,
        algorithm: Algorithm | str | None = None,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str = "",
    ) -> wire.PoolVerifyParams:
        """Connect to the saved pool ``pool_id`` (or the one the other arguments name) as an
        order would: subscribe, configure, authorize, first job, within 10 s
        (``PoolVerifyOut``: ``ok``, or the ``stage`` reached and the ``error``). Raises
        ``ValueError`` for an unknown algorithm."""
        return wire.PoolVerifyParams(
            id=pool_id,
            name=name,
            algorithm=None if algorithm is None else Algorithm(algorithm),
            host=host,
            port=port,
            username=username,
            password=password,
        )

    # ------------------------------------------------------------------ keys
    @api_call(
        "apikey.create",
        wire.KeyOut,
        mutating=True,
        cli=cli(
            "key create",
            "new key (secret shown once)",
            arg("--label", default="cli"),
            arg("--scopes", type=_comma_list, default="read,trade", help="comma-separated"),
            arg("--expires-in", to="expires_in_s", type=int, default=None, help="seconds"),
            _OTP,
        ),
    )
    def create_key(
        self,
        label: str,
        scopes: Sequence[Scope | str],
        *,
        expires_in_s: int | None = None,
        otp: str | None = None,
        request_id: str | None = None,
    ) -> wire.KeyCreateParams:
        """A new key of this account with ``scopes`` (at most the signing key's; one with
        ``withdraw`` or ``keys`` needs ``otp`` when two-factor authentication is on), its
        secret in this answer only (``KeyOut``). Raises ``ValueError`` for an unknown scope."""
        return wire.KeyCreateParams(
            label=label, scopes=[Scope(s) for s in scopes], expires_in_s=expires_in_s, otp=otp
        )

    @api_call(
        "apikey.list",
        wire.KeyListOut,
        pick=lambda r: r.keys,
        cli=cli("key list", "active keys (no secrets)"),
    )
    def list_keys(self) -> wire.NoParams:
        """The account's keys that still sign, without secrets (``list[KeyOut]``)."""
        return _NO_PARAMS

    @api_call(
        "apikey.revoke", wire.OkOut, mutating=True, cli=cli("key revoke", "end a key now", _KEY_ID)
    )
    def revoke_key(self, key_id: str, *, request_id: str | None = None) -> wire.KeyIdParams:
        """End the key ``key_id`` now (its scopes must be within the signing key's)
        (``OkOut``)."""
        return wire.KeyIdParams(key_id=key_id)

    @api_call(
        "apikey.rotate",
        wire.KeyOut,
        mutating=True,
        cli=cli(
            "key rotate",
            "successor key; the old one expires after the grace",
            _KEY_ID,
            arg(
                "--grace",
                to="grace_s",
                type=int,
                default=wire.DEFAULT_GRACE_S,
                help=f"seconds (default {wire.DEFAULT_GRACE_S})",
            ),
            _OTP,
        ),
    )
    def rotate_key(
        self,
        key_id: str,
        *,
        grace_s: int = wire.DEFAULT_GRACE_S,
        otp: str | None = None,
        request_id: str | None = None,
    ) -> wire.KeyRotateParams:
        """A successor of key ``key_id`` (same label and scopes, which must be within the
        signing key's; ``otp`` for a key with ``withdraw`` or ``keys`` when two-factor
        authentication is on; version + 1, its secret in this answer only); the old key signs
        ``grace_s`` seconds more (``KeyOut``)."""
        return wire.KeyRotateParams(key_id=key_id, grace_s=grace_s, otp=otp)

    # ------------------------------------------------------------------ account security
    @api_call(
        "account.2fa.enable",
        wire.TwoFactorSecretOut,
        mutating=True,
        cli=cli("account 2fa enable", "new TOTP secret for an authenticator app (shown once)"),
    )
    def enable_two_factor(self, *, request_id: str | None = None) -> wire.NoParams:
        """Start two-factor authentication: a new TOTP secret and its ``otpauth://`` URI for
        an authenticator app, shown once; it is on once confirmed (``TwoFactorSecretOut``)."""
        return _NO_PARAMS

    @api_call(
        "account.2fa.confirm",
        wire.TwoFactorConfirmOut,
        mutating=True,
        cli=cli(
            "account 2fa confirm",
            "turn 2FA on with a code of the new secret; prints recovery codes (once)",
            arg("--otp", required=True, help="the authenticator app's current code"),
        ),
    )
    def confirm_two_factor(self, otp: str, *, request_id: str | None = None) -> wire.OtpParams:
        """Turn two-factor authentication on with a current code ``otp`` of the secret
        ``enable_two_factor`` gave; the ten recovery codes, shown once
        (``TwoFactorConfirmOut``)."""
        return wire.OtpParams(otp=otp)

    @api_call(
        "account.2fa.disable",
        wire.TwoFactorOffOut,
        mutating=True,
        cli=cli("account 2fa disable", "turn 2FA off", _OTP),
    )
    def disable_two_factor(
        self, otp: str | None = None, *, request_id: str | None = None
    ) -> wire.OptionalOtpParams:
        """Turn two-factor authentication off, with a current code or a recovery code
        ``otp`` (``TwoFactorOffOut``)."""
        return wire.OptionalOtpParams(otp=otp)

    @api_call(
        "account.2fa.status",
        wire.TwoFactorStatusOut,
        cli=cli("account 2fa status", "whether 2FA is on (or awaiting its first code)"),
    )
    def two_factor_status(self) -> wire.NoParams:
        """Whether two-factor authentication is on, and whether a new secret awaits
        confirmation (``TwoFactorStatusOut``)."""
        return _NO_PARAMS

    @api_call(
        "account.address.add",
        wire.AddressOut,
        mutating=True,
        cli=cli(
            "account address add",
            "add a withdrawal address (usable after the lock period)",
            arg("address"),
            arg("--label", default=""),
            _OTP,
        ),
    )
    def add_address(
        self,
        address: str,
        *,
        label: str = "",
        otp: str | None = None,
        request_id: str | None = None,
    ) -> wire.AddressAddParams:
        """Put ``address`` on the account's withdrawal list; withdrawals then go only to
        listed addresses past their lock, this one from ``usable_from_ms`` (``AddressOut``)."""
        return wire.AddressAddParams(address=address, label=label, otp=otp)

    @api_call(
        "account.address.list",
        wire.AddressListOut,
        pick=lambda r: r.addresses,
        cli=cli("account address list", "the withdrawal list"),
    )
    def list_addresses(self) -> wire.NoParams:
        """The account's withdrawal addresses (``list[AddressOut]``)."""
        return _NO_PARAMS

    @api_call(
        "account.address.remove",
        wire.AddressRemovedOut,
        mutating=True,
        cli=cli("account address remove", "take an address off the list", arg("address")),
    )
    def remove_address(self, address: str, *, request_id: str | None = None) -> wire.AddressParams:
        """Take ``address`` off the withdrawal list (``AddressRemovedOut``)."""
        return wire.AddressParams(address=address)

    @api_call(
        "account.activity",
        wire.ActivityOut,
        pick=lambda r: r.events,
        cli=cli(
            "account activity",
            "security events, newest first",
            arg("--limit", type=int, default=100),
            arg("--before", type=int, default=None, help="events with ids below this"),
        ),
    )
    def activity(self, *, limit: int = 100, before: int | None = None) -> wire.ActivityParams:
        """Up to ``limit`` (1-500) of the account's security events (keys, sign-in failures,
        2FA, addresses, withdrawals) with ids below ``before``, newest first
        (``list[ActivityEntryOut]``)."""
        return wire.ActivityParams(limit=limit, before=before)


def rows() -> list[ApiCall[Any, Any]]:
    """The table's rows in declaration order."""
    return [row for row in vars(ApiCalls).values() if isinstance(row, ApiCall)]
