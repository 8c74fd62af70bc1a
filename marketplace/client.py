"""A small typed client for the buyer API, sync (``MarketClient``) and trio
(``AsyncMarketClient``).

Theory of operation
-------------------
Both clients share one sans-I/O core (``_Core``): it builds the JSON-RPC body from the API's
own params Structs (``marketplace.api.wire``), signs it (``marketplace.api.signing``, the
server's code), and decodes the answer into the API's result Structs, raising the one
exception type ``ApiError(code, message, data)`` for every refusal, transport failure or
unexpected HTTP status. The clients only move bytes with httpx.

Time: signed requests carry the server's time as this client believes it, ``local clock +
offset``; the offset is measured with ``server.time`` before the first signed call (and again
once after a 4008 answer, which is then retried). Mutating calls carry an ``X-Request-Id``
(generated unless given), so the one automatic retry after a transport failure can never act
twice: the server answers a repeat with the first answer.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, NamedTuple, TypeVar

import httpx
import msgspec

from marketplace.api import wire
from marketplace.api.signing import sign_headers
from marketplace.core.key_events import Scope
from marketplace.core.model import OrderStatus, OrderType
from stratum.core.shares import Algorithm

T = TypeVar("T")

DEFAULT_URL: Final = "http://127.0.0.1:8645"
#: ``ApiError.code`` when the server could not be reached.
TRANSPORT_ERROR: Final = -32000
#: ``ApiError.code`` for an HTTP status other than 200/204 (``data["status"]``).
HTTP_ERROR: Final = -32001
_TIME_WINDOW: Final = 4008

# The API's objects, under the names a client expects.
Order = wire.OrderOut
Balance = wire.BalanceOut
Ledger = wire.LedgerOut
LedgerEntry = wire.LedgerEntryOut
MoneyMove = wire.MoneyMoveOut
MarketInfo = wire.MarketInfoOut
OrderBook = wire.OrderBookOut
MarketStats = wire.MarketStatsOut
OrderStats = wire.OrderStatsOut
Workers = wire.WorkerListOut
Key = wire.KeyOut


class ApiError(Exception):
    """Every failure of a call: the API's error code, its message and its ``data``."""

    def __init__(self, code: int, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = dict(data or {})


class Credentials(NamedTuple):
    account: str
    key_id: str
    secret: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """``HASHMARKET_ACCOUNT``/``_KEY_ID``/``_SECRET``, or ``None`` if any is missing."""
        env = os.environ if environ is None else environ
        account = env.get("HASHMARKET_ACCOUNT")
        key_id = env.get("HASHMARKET_KEY_ID")
        secret = env.get("HASHMARKET_SECRET")
        if not (account and key_id and secret):
            return None
        return cls(account, key_id, secret)


@dataclass(frozen=True, slots=True)
class _Call(Generic[T]):
    method: str
    params: msgspec.Struct
    result: type[T]
    signed: bool = True
    mutating: bool = False
    request_id: str | None = None


class _ErrorObject(msgspec.Struct, frozen=True):
    code: int
    message: str
    data: dict[str, Any] = {}


class _Reply(msgspec.Struct, frozen=True):
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"")
    error: _ErrorObject | None = None


_reply_decoder: Final = msgspec.json.Decoder(_Reply)
_encoder: Final = msgspec.json.Encoder()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Core:
    """Body, headers and answers of calls; no I/O."""

    def __init__(self, *, credentials: Credentials | None, clock_ms: Any = _wall_ms) -> None:
        self.credentials = credentials
        self._clock_ms = clock_ms
        self.offset_ms = 0
        self.synced = False
        self._next_id = 0

    def request(self, call: _Call[Any]) -> tuple[bytes, dict[str, str]]:
        self._next_id += 1
        body = _encoder.encode(
            {"jsonrpc": "2.0", "id": self._next_id, "method": call.method, "params": call.params}
        )
        headers = {"Content-Type": "application/json"}
        if call.signed:
            creds = self.credentials
            if creds is None:
                raise ApiError(4001, "no credentials: set HASHMARKET_ACCOUNT/KEY_ID/SECRET")
            headers.update(
                sign_headers(
                    key_id=creds.key_id,
                    secret=creds.secret,
                    org_id=creds.account,
                    time_ms=self._clock_ms() + self.offset_ms,
                    nonce=uuid.uuid4().hex,
                    body=body,
                    request_id=call.request_id,
                )
            )
        return body, headers

    def local_ms(self) -> int:
        return int(self._clock_ms())

    def set_offset(self, *, server_ms: int, sent_ms: int, received_ms: int) -> None:
        self.offset_ms = server_ms - (sent_ms + received_ms) // 2
        self.synced = True

    @staticmethod
    def answer(call: _Call[T], status: int, content: bytes) -> T:
        if status != 200:
            text = content[:200].decode("utf-8", "replace").strip()
            raise ApiError(HTTP_ERROR, f"HTTP {status}: {text}", {"status": status})
        try:
            reply = _reply_decoder.decode(content)
            if reply.error is not None:
                raise ApiError(reply.error.code, reply.error.message, reply.error.data)
            if not reply.result:
                raise ApiError(HTTP_ERROR, "answer without result or error")
            return msgspec.json.decode(reply.result, type=call.result)
        except msgspec.DecodeError as exc:
            raise ApiError(HTTP_ERROR, f"undecodable answer: {exc}") from None


def _rid(request_id: str | None) -> str:
    return request_id or uuid.uuid4().hex


# One builder per method, shared by both clients.


def _server_time() -> _Call[wire.TimeOut]:
    return _Call("server.time", wire.NoParams(), wire.TimeOut, signed=False)


def _market_info() -> _Call[wire.MarketInfoOut]:
    return _Call("market.info", wire.NoParams(), wire.MarketInfoOut, signed=False)


def _orderbook(algorithm: Algorithm | str) -> _Call[wire.OrderBookOut]:
    params = wire.AlgorithmParams(algorithm=Algorithm(algorithm))
    return _Call("market.orderbook", params, wire.OrderBookOut, signed=False)


def _market_stats(algorithm: Algorithm | str) -> _Call[wire.MarketStatsOut]:
    params = wire.AlgorithmParams(algorithm=Algorithm(algorithm))
    return _Call("market.stats", params, wire.MarketStatsOut, signed=False)


def _mutating(method: str, params: msgspec.Struct, result: type[T], rid: str | None) -> _Call[T]:
    return _Call(method, params, result, mutating=True, request_id=_rid(rid))


def _create_order(
    *,
    algorithm: Algorithm | str,
    type: OrderType | str,
    limit: str,
    amount: str,
    price: str | None,
    duration_s: int | None,
    request_id: str | None,
) -> _Call[wire.OrderOut]:
    params = wire.OrderCreateParams(
        algorithm=Algorithm(algorithm),
        type=OrderType(type),
        limit=limit,
        amount=amount,
        price=price,
        duration_s=duration_s,
    )
    return _mutating("order.create", params, wire.OrderOut, request_id)


class MarketClient:
    """Synchronous client (httpx.Client). Use as a context manager or call ``close``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = _Core(credentials=credentials)
        try:
            self._http = httpx.Client(base_url=url, timeout=timeout_s, transport=transport)
        except httpx.InvalidURL as exc:
            raise ApiError(TRANSPORT_ERROR, f"bad API URL {url!r}: {exc}") from None

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def clock_offset_ms(self) -> int:
        """Server time minus local time, as last measured."""
        return self._core.offset_ms

    def _post(self, call: _Call[T]) -> T:
        body, headers = self._core.request(call)
        try:
            response = self._http.post("/rpc", content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ApiError(TRANSPORT_ERROR, f"cannot reach the API: {exc}") from None
        return self._core.answer(call, response.status_code, response.content)

    def sync_clock(self) -> int:
        """Measure the offset to the server's clock with ``server.time``; return it."""
        sent = self._core.local_ms()
        server = self._post(_server_time()).time_ms
        self._core.set_offset(server_ms=server, sent_ms=sent, received_ms=self._core.local_ms())
        return self._core.offset_ms

    def call(self, call: _Call[T]) -> T:
        """Run one call: sync the clock first if needed, retry once after a transport
        failure or a 4008 (re-syncing). Raises ``ApiError``."""
        if call.signed and not self._core.synced:
            self.sync_clock()
        try:
            return self._post(call)
        except ApiError as error:
            if error.code == _TIME_WINDOW and call.signed:
                self.sync_clock()
            elif error.code != TRANSPORT_ERROR:
                raise
            return self._post(call)

    # ---------------------------------------------------------------- public
    def server_time(self) -> int:
        return self.call(_server_time()).time_ms

    def market_info(self) -> wire.MarketInfoOut:
        return self.call(_market_info())

    def orderbook(self, algorithm: Algorithm | str) -> wire.OrderBookOut:
        return self.call(_orderbook(algorithm))

    def market_stats(self, algorithm: Algorithm | str) -> wire.MarketStatsOut:
        return self.call(_market_stats(algorithm))

    # ---------------------------------------------------------------- account
    def balance(self) -> wire.BalanceOut:
        return self.call(_Call("account.balance", wire.NoParams(), wire.BalanceOut))

    def ledger(self, *, limit: int = 50, before: int | None = None) -> wire.LedgerOut:
        params = wire.LedgerParams(limit=limit, before=before)
        return self.call(_Call("account.ledger", params, wire.LedgerOut))

    def deposit(self, amount: str, *, request_id: str | None = None) -> wire.MoneyMoveOut:
        params = wire.DepositParams(amount=amount)
        return self.call(_mutating("account.deposit", params, wire.MoneyMoveOut, request_id))

    def withdraw(
        self, amount: str, address: str, *, request_id: str | None = None
    ) -> wire.MoneyMoveOut:
        params = wire.WithdrawParams(amount=amount, address=address)
        return self.call(_mutating("account.withdraw", params, wire.MoneyMoveOut, request_id))

    # ---------------------------------------------------------------- orders
    def create_order(
        self,
        *,
        algorithm: Algorithm | str,
        type: OrderType | str,
        limit: str,
        amount: str,
        price: str | None = None,
        duration_s: int | None = None,
        request_id: str | None = None,
    ) -> wire.OrderOut:
        return self.call(
            _create_order(
                algorithm=algorithm,
                type=type,
                limit=limit,
                amount=amount,
                price=price,
                duration_s=duration_s,
                request_id=request_id,
            )
        )

    def get_order(self, order_id: str) -> wire.OrderOut:
        return self.call(_Call("order.get", wire.OrderIdParams(id=order_id), wire.OrderOut))

    def list_orders(self, status: OrderStatus | str | None = None) -> list[wire.OrderOut]:
        params = wire.OrderListParams(status=None if status is None else OrderStatus(status))
        return self.call(_Call("order.list", params, wire.OrderListOut)).orders

    def set_price(self, order_id: str, price: str, *, request_id: str | None = None) -> Order:
        params = wire.SetPriceParams(id=order_id, price=price)
        return self.call(_mutating("order.set_price", params, wire.OrderOut, request_id))

    def set_limit(self, order_id: str, limit: str, *, request_id: str | None = None) -> Order:
        params = wire.SetLimitParams(id=order_id, limit=limit)
        return self.call(_mutating("order.set_limit", params, wire.OrderOut, request_id))

    def refill(self, order_id: str, amount: str, *, request_id: str | None = None) -> Order:
        params = wire.RefillParams(id=order_id, amount=amount)
        return self.call(_mutating("order.refill", params, wire.OrderOut, request_id))

    def cancel_order(self, order_id: str, *, request_id: str | None = None) -> Order:
        params = wire.OrderIdParams(id=order_id)
        return self.call(_mutating("order.cancel", params, wire.OrderOut, request_id))

    def order_stats(self, order_id: str, *, since_ms: int | None = None) -> wire.OrderStatsOut:
        params = wire.OrderStatsParams(id=order_id, since_ms=since_ms)
        return self.call(_Call("order.stats", params, wire.OrderStatsOut))

    def workers(self) -> wire.WorkerListOut:
        return self.call(_Call("worker.list", wire.NoParams(), wire.WorkerListOut))

    # ---------------------------------------------------------------- keys
    def create_key(
        self,
        label: str,
        scopes: Sequence[Scope | str],
        *,
        expires_in_s: int | None = None,
        request_id: str | None = None,
    ) -> wire.KeyOut:
        params = wire.KeyCreateParams(
            label=label, scopes=[Scope(s) for s in scopes], expires_in_s=expires_in_s
        )
        return self.call(_mutating("apikey.create", params, wire.KeyOut, request_id))

    def list_keys(self) -> list[wire.KeyOut]:
        return self.call(_Call("apikey.list", wire.NoParams(), wire.KeyListOut)).keys

    def revoke_key(self, key_id: str, *, request_id: str | None = None) -> wire.OkOut:
        params = wire.KeyIdParams(key_id=key_id)
        return self.call(_mutating("apikey.revoke", params, wire.OkOut, request_id))

    def rotate_key(
        self, key_id: str, *, grace_s: int = wire.DEFAULT_GRACE_S, request_id: str | None = None
    ) -> wire.KeyOut:
        params = wire.KeyRotateParams(key_id=key_id, grace_s=grace_s)
        return self.call(_mutating("apikey.rotate", params, wire.KeyOut, request_id))


class AsyncMarketClient:
    """The same client for trio (httpx.AsyncClient). ``async with`` or ``await aclose()``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = _Core(credentials=credentials)
        try:
            self._http = httpx.AsyncClient(base_url=url, timeout=timeout_s, transport=transport)
        except httpx.InvalidURL as exc:
            raise ApiError(TRANSPORT_ERROR, f"bad API URL {url!r}: {exc}") from None

    async def __aenter__(self) -> AsyncMarketClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def clock_offset_ms(self) -> int:
        return self._core.offset_ms

    async def _post(self, call: _Call[T]) -> T:
        body, headers = self._core.request(call)
        try:
            response = await self._http.post("/rpc", content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ApiError(TRANSPORT_ERROR, f"cannot reach the API: {exc}") from None
        return self._core.answer(call, response.status_code, response.content)

    async def sync_clock(self) -> int:
        """Measure the offset to the server's clock with ``server.time``; return it."""
        sent = self._core.local_ms()
        server = (await self._post(_server_time())).time_ms
        self._core.set_offset(server_ms=server, sent_ms=sent, received_ms=self._core.local_ms())
        return self._core.offset_ms

    async def call(self, call: _Call[T]) -> T:
        """As ``MarketClient.call``."""
        if call.signed and not self._core.synced:
            await self.sync_clock()
        try:
            return await self._post(call)
        except ApiError as error:
            if error.code == _TIME_WINDOW and call.signed:
                await self.sync_clock()
            elif error.code != TRANSPORT_ERROR:
                raise
            return await self._post(call)

    async def server_time(self) -> int:
        return (await self.call(_server_time())).time_ms

    async def market_info(self) -> wire.MarketInfoOut:
        return await self.call(_market_info())

    async def orderbook(self, algorithm: Algorithm | str) -> wire.OrderBookOut:
        return await self.call(_orderbook(algorithm))

    async def market_stats(self, algorithm: Algorithm | str) -> wire.MarketStatsOut:
        return await self.call(_market_stats(algorithm))

    async def balance(self) -> wire.BalanceOut:
        return await self.call(_Call("account.balance", wire.NoParams(), wire.BalanceOut))

    async def ledger(self, *, limit: int = 50, before: int | None = None) -> wire.LedgerOut:
        params = wire.LedgerParams(limit=limit, before=before)
        return await self.call(_Call("account.ledger", params, wire.LedgerOut))

    async def deposit(self, amount: str, *, request_id: str | None = None) -> wire.MoneyMoveOut:
        params = wire.DepositParams(amount=amount)
        return await self.call(_mutating("account.deposit", params, wire.MoneyMoveOut, request_id))

    async def withdraw(
        self, amount: str, address: str, *, request_id: str | None = None
    ) -> wire.MoneyMoveOut:
        params = wire.WithdrawParams(amount=amount, address=address)
        return await self.call(_mutating("account.withdraw", params, wire.MoneyMoveOut, request_id))

    async def create_order(
        self,
        *,
        algorithm: Algorithm | str,
        type: OrderType | str,
        limit: str,
        amount: str,
        price: str | None = None,
        duration_s: int | None = None,
        request_id: str | None = None,
    ) -> wire.OrderOut:
        return await self.call(
            _create_order(
                algorithm=algorithm,
                type=type,
                limit=limit,
                amount=amount,
                price=price,
                duration_s=duration_s,
                request_id=request_id,
            )
        )

    async def get_order(self, order_id: str) -> wire.OrderOut:
        return await self.call(_Call("order.get", wire.OrderIdParams(id=order_id), wire.OrderOut))

    async def list_orders(self, status: OrderStatus | str | None = None) -> list[wire.OrderOut]:
        params = wire.OrderListParams(status=None if status is None else OrderStatus(status))
        return (await self.call(_Call("order.list", params, wire.OrderListOut))).orders

    async def set_price(
        self, order_id: str, price: str, *, request_id: str | None = None
    ) -> wire.OrderOut:
        params = wire.SetPriceParams(id=order_id, price=price)
        return await self.call(_mutating("order.set_price", params, wire.OrderOut, request_id))

    async def set_limit(
        self, order_id: str, limit: str, *, request_id: str | None = None
    ) -> wire.OrderOut:
        params = wire.SetLimitParams(id=order_id, limit=limit)
        return await self.call(_mutating("order.set_limit", params, wire.OrderOut, request_id))

    async def refill(
        self, order_id: str, amount: str, *, request_id: str | None = None
    ) -> wire.OrderOut:
        params = wire.RefillParams(id=order_id, amount=amount)
        return await self.call(_mutating("order.refill", params, wire.OrderOut, request_id))

    async def cancel_order(self, order_id: str, *, request_id: str | None = None) -> wire.OrderOut:
        params = wire.OrderIdParams(id=order_id)
        return await self.call(_mutating("order.cancel", params, wire.OrderOut, request_id))

    async def order_stats(
        self, order_id: str, *, since_ms: int | None = None
    ) -> wire.OrderStatsOut:
        params = wire.OrderStatsParams(id=order_id, since_ms=since_ms)
        return await self.call(_Call("order.stats", params, wire.OrderStatsOut))

    async def workers(self) -> wire.WorkerListOut:
        return await self.call(_Call("worker.list", wire.NoParams(), wire.WorkerListOut))

    async def create_key(
        self,
        label: str,
        scopes: Sequence[Scope | str],
        *,
        expires_in_s: int | None = None,
        request_id: str | None = None,
    ) -> wire.KeyOut:
        params = wire.KeyCreateParams(
            label=label, scopes=[Scope(s) for s in scopes], expires_in_s=expires_in_s
        )
        return await self.call(_mutating("apikey.create", params, wire.KeyOut, request_id))

    async def list_keys(self) -> list[wire.KeyOut]:
        return (await self.call(_Call("apikey.list", wire.NoParams(), wire.KeyListOut))).keys

    async def revoke_key(self, key_id: str, *, request_id: str | None = None) -> wire.OkOut:
        params = wire.KeyIdParams(key_id=key_id)
        return await self.call(_mutating("apikey.revoke", params, wire.OkOut, request_id))

    async def rotate_key(
        self, key_id: str, *, grace_s: int = wire.DEFAULT_GRACE_S, request_id: str | None = None
    ) -> wire.KeyOut:
        params = wire.KeyRotateParams(key_id=key_id, grace_s=grace_s)
        return await self.call(_mutating("apikey.rotate", params, wire.KeyOut, request_id))
