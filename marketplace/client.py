"""A small typed client for the buyer API, sync (``MarketClient``) and trio
(``AsyncMarketClient``).

Theory of operation
-------------------
The API's calls are one table (``marketplace.client_calls.ApiCalls``, and the operator's
``marketplace.admin_calls.AdminCalls`` beside it) that both clients inherit: each row builds a
``Request`` from the API's own params Structs (``marketplace.api.wire``) and hands it to the
client's ``call``. Everything else is one
sans-I/O core too (``_Core``): it signs a request (``marketplace.api.signing``, the server's
code), decodes answers into the API's result Structs, raising the one exception type
``ApiError(code, message, data)`` for every refusal, transport failure or unexpected HTTP
status, and runs one call as a generator (``_Core.exchange``) that yields the bodies to post
and receives each answer, so the clock sync and the retry are written once. A client only
moves bytes with httpx: ``MarketClient`` with ``httpx.Client``, ``AsyncMarketClient`` with
``httpx.AsyncClient``. Neither imports the server (no HTTP server, key ring or market).

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
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final, NamedTuple, TypeVar

import httpx
import msgspec

from marketplace.admin_calls import AdminCalls
from marketplace.api import wire
from marketplace.api.signing import sign_headers
from marketplace.client_calls import ApiCalls, Request
from marketplace.core.key_events import OPERATOR_ACCOUNT

T = TypeVar("T")

DEFAULT_URL: Final = "http://127.0.0.1:8645"
#: ``ApiError.code`` when the server could not be reached.
TRANSPORT_ERROR: Final = -32000
#: ``ApiError.code`` for an HTTP status other than 200/204 (``data["status"]``).
HTTP_ERROR: Final = -32001
_TIME_WINDOW: Final = 4008
#: ``ApiError.code`` when the node's store is failing: nothing was done; try again after
#: ``ApiError.retry_after_ms`` (a mutating call with the same ``X-Request-Id`` is safe).
SERVICE_UNAVAILABLE: Final = 5030

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

    @property
    def retry_after_ms(self) -> int | None:
        """How long to wait before trying again, for the refusals that say (4029 rate
        limited, 5030 service unavailable); ``None`` for the others."""
        value = self.data.get("retry_after_ms")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


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

    @classmethod
    def operator_from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """An operator key (account ``operator``) from ``HASHMARKET_OPERATOR_KEY_ID`` and
        ``HASHMARKET_OPERATOR_SECRET``, or ``None`` if either is missing."""
        env = os.environ if environ is None else environ
        key_id = env.get("HASHMARKET_OPERATOR_KEY_ID")
        secret = env.get("HASHMARKET_OPERATOR_SECRET")
        if not (key_id and secret):
            return None
        return cls(OPERATOR_ACCOUNT, key_id, secret)


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

#: A body to post and its headers.
_Post = tuple[bytes, dict[str, str]]
#: What came back: the HTTP status and body, or the transport failure.
_Answer = tuple[int, bytes] | ApiError
_Steps = Generator[_Post, _Answer | None, T]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Exchange:
    """A call in progress (see ``_Core.exchange``): ``send`` each answer, get the next body to
    post or ``None`` once ``result`` is there."""

    def __init__(self, steps: _Steps[Any]) -> None:
        self._steps = steps
        self.result: Any = None

    def send(self, answer: _Answer | None) -> _Post | None:
        try:
            return self._steps.send(answer)
        except StopIteration as done:
            self.result = done.value
            return None


class _Core:
    """Bodies, headers, answers and the order of the posts of a call; no I/O."""

    def __init__(
        self, *, credentials: Credentials | None, clock_ms: Callable[[], int] = _wall_ms
    ) -> None:
        self.credentials = credentials
        self._clock_ms = clock_ms
        self.offset_ms = 0
        self.synced = False
        self._next_id = 0

    def request(self, call: Request[Any]) -> _Post:
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

    @staticmethod
    def answer(call: Request[T], status: int, content: bytes) -> T:
        if status != 200:
            text = content[:200].decode("utf-8", "replace").strip()
            raise ApiError(HTTP_ERROR, f"HTTP {status}: {text}", {"status": status})
        try:
            reply = _reply_decoder.decode(content)
            if reply.error is not None:
                raise ApiError(reply.error.code, reply.error.message, reply.error.data)
            if not reply.result:
                raise ApiError(HTTP_ERROR, "answer without result or error")
            return call.read(reply.result)
        except msgspec.DecodeError as exc:
            raise ApiError(HTTP_ERROR, f"undecodable answer: {exc}") from None

    def _once(self, call: Request[T]) -> _Steps[T]:
        answer = yield self.request(call)
        if answer is None:
            raise RuntimeError("a post without its answer")
        if isinstance(answer, ApiError):
            raise answer
        return self.answer(call, *answer)

    def sync_clock(self) -> _Steps[int]:
        """Measure the offset to the server's clock with ``server.time``; return it."""
        sent_ms = self._clock_ms()
        server_ms = yield from self._once(ApiCalls.server_time.request())
        received_ms = self._clock_ms()
        self.offset_ms = server_ms - (sent_ms + received_ms) // 2
        self.synced = True
        return self.offset_ms

    def exchange(self, call: Request[T]) -> _Steps[T]:
        """One call: sync the clock first if it is signed and the clock was never synced;
        retry once after a transport failure, or after a 4008 (re-syncing first)."""
        if call.signed and not self.synced:
            yield from self.sync_clock()
        try:
            return (yield from self._once(call))
        except ApiError as error:
            if error.code == _TIME_WINDOW and call.signed:
                yield from self.sync_clock()
            elif error.code != TRANSPORT_ERROR:
                raise
            return (yield from self._once(call))


def _unreachable(exc: Exception) -> ApiError:
    return ApiError(TRANSPORT_ERROR, f"cannot reach the API: {exc}")


H = TypeVar("H")


def _http_client(factory: Callable[..., H], url: str, timeout_s: float, transport: Any) -> H:
    try:
        return factory(base_url=url, timeout=timeout_s, transport=transport)
    except httpx.InvalidURL as exc:
        raise ApiError(TRANSPORT_ERROR, f"bad API URL {url!r}: {exc}") from None


class _Client(ApiCalls, AdminCalls):
    """What both clients share besides the call tables (the buyer API's and the operator's):
    the core and its clock offset."""

    def __init__(self, credentials: Credentials | None) -> None:
        self._core = _Core(credentials=credentials)

    @property
    def clock_offset_ms(self) -> int:
        """Server time minus local time, as last measured (0 before the first sync)."""
        return self._core.offset_ms


class MarketClient(_Client):
    """Synchronous client (httpx.Client). Use as a context manager or call ``close``.
    Every API call is a method (see ``ApiCalls``). Raises ``ApiError`` for a bad URL."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(credentials)
        self._http = _http_client(httpx.Client, url, timeout_s, transport)

    def __enter__(self) -> MarketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections. Never raises."""
        self._http.close()

    def _post(self, body: bytes, headers: dict[str, str]) -> _Answer:
        try:
            response = self._http.post("/rpc", content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _unreachable(exc)
        return response.status_code, response.content

    def _run(self, steps: _Steps[T]) -> T:
        exchange, answer = _Exchange(steps), None
        while (post := exchange.send(answer)) is not None:
            answer = self._post(*post)
        result: T = exchange.result
        return result

    def sync_clock(self) -> int:
        """Measure the offset to the server's clock with ``server.time``; return it (ms).
        Raises ``ApiError``."""
        return self._run(self._core.sync_clock())

    def call(self, call: Request[T]) -> T:
        """Run one call: sync the clock first if needed, retry once after a transport
        failure or a 4008 (re-syncing); its result. Raises ``ApiError``."""
        return self._run(self._core.exchange(call))


class AsyncMarketClient(_Client):
    """The same client for trio (httpx.AsyncClient). ``async with`` or ``await aclose()``.
    Every API call is a method to await (see ``ApiCalls``). Raises ``ApiError`` for a bad
    URL."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        credentials: Credentials | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(credentials)
        self._http = _http_client(httpx.AsyncClient, url, timeout_s, transport)

    async def __aenter__(self) -> AsyncMarketClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections. Never raises."""
        await self._http.aclose()

    async def _post(self, body: bytes, headers: dict[str, str]) -> _Answer:
        try:
            response = await self._http.post("/rpc", content=body, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return _unreachable(exc)
        return response.status_code, response.content

    async def _run(self, steps: _Steps[T]) -> T:
        exchange, answer = _Exchange(steps), None
        while (post := exchange.send(answer)) is not None:
            answer = await self._post(*post)
        result: T = exchange.result
        return result

    async def sync_clock(self) -> int:
        """As ``MarketClient.sync_clock``."""
        return await self._run(self._core.sync_clock())

    async def call(self, call: Request[T]) -> T:
        """As ``MarketClient.call``."""
        return await self._run(self._core.exchange(call))
