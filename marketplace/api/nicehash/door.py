"""The NiceHash door: one HTTP request on a NiceHash path in, NiceHash's answer out.

Theory of operation
-------------------
``NiceHashDoor.respond`` takes what the ASGI app read of a request on ``/api/v2/...`` or
``/main/api/v2/...`` (the method, the path and query exactly as they arrived on the request
line, the headers, the raw body, the client's address) and answers it the way NiceHash's own
servers do (nicehash-rest.md):

1. the route (``routes.py``): the path with or without one trailing ``/``; the query split on
   ``&`` with an empty query, a bare ``?`` and empty values counting as absent (a name given
   twice is malformed); a path and method NiceHash has but this door does not is 404;
2. an API fault injected by the operator (control.md) holds the request or answers 503, as on
   ``POST /rpc``; ``/api/v2/time`` is never faulted nor rate-limited, since every client
   finds the clock through it;
3. public routes take a token from the client address's bucket (the JSON-RPC door's); signed
   ones are authenticated by the JSON-RPC door's authenticator for this method, path and query
   under NiceHash's three layouts (``signing.py``), one token from the key's bucket, then the
   route's scope;
4. the route builds its params (NiceHash's names and units checked, ``NiceHashError``
   otherwise) and the shared API path runs its method (``run_method``): the same executor,
   idempotency by ``X-Request-Id``, storage-health refusals and error mapping as JSON-RPC;
5. success is HTTP 200 with the JSON answer, whatever the method (DELETE too); a refusal is
   NiceHash's error body with the status of ``errors.py``'s table.

One ``api.nicehash`` event is logged per request (method, route, status, NiceHash's code).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import unquote, unquote_plus

import msgspec
import structlog

from marketplace.api.auth import Caller, require_scope
from marketplace.api.errors import ApiCode, RpcError
from marketplace.api.nicehash import units
from marketplace.api.nicehash.errors import (
    NiceHashError,
    from_rpc_error,
    generic,
    malformed,
    not_found,
)
from marketplace.api.nicehash.handlers import Handlers
from marketplace.api.nicehash.routes import Request, Route, find, table
from marketplace.api.nicehash.wire import (
    CurrenciesOut,
    CurrencyInfoOut,
    ErrorItem,
    ErrorOut,
    TimeOut,
)
from marketplace.api.signing import Layout, SignedTarget
from marketplace.core.errors import NotFound

if TYPE_CHECKING:  # the door is built by the app, which imports it
    from marketplace.api.app import RpcService

log = structlog.get_logger("marketplace.api")

#: Where NiceHash's API lives on a host.
PREFIXES: Final = ("/api/v2/", "/main/api/v2/")
#: Every layout NiceHash's servers accept.
LAYOUTS: Final = frozenset(Layout)

_TIME: Final = ("GET", "api/v2/time")
#: What the metrics call the answers the door gives without a route.
_LABELS: Final = {
    _TIME: "nicehash.time",
    ("GET", "main/api/v2/mining/markets"): "nicehash.markets",
    ("GET", "main/api/v2/public/currencies"): "nicehash.currencies",
}
_encoder: Final = msgspec.json.Encoder()
#: Answers that depend on nothing: NiceHash's markets and currencies.
_STATIC: Final[dict[tuple[str, str], bytes]] = {
    ("GET", "main/api/v2/mining/markets"): _encoder.encode(list(units.MARKETS)),
    ("GET", "main/api/v2/public/currencies"): _encoder.encode(
        CurrenciesOut(
            currencies=[
                CurrencyInfoOut(
                    symbol="BTC",
                    name="Bitcoin",
                    transaction_info_url="",
                    address_info_url="",
                    wallet_version=1,
                    withdrawal_fee="0",
                    min_withdrawal_amount="0",
                    decimals=8,
                )
            ]
        )
    ),
}


class Reply(NamedTuple):
    """An HTTP answer: status, JSON body, and the seconds of a ``Retry-After`` header."""

    status: int
    body: bytes
    retry_after_s: int | None = None


def serves(path: str) -> bool:
    """Whether ``path`` is one of NiceHash's (the door answers every such path, 404 included)."""
    return path.startswith(PREFIXES)


def parse_query(raw: str) -> dict[str, str]:
    """A query string as names and values, percent-decoded; empty pieces and empty values are
    left out. Raises ``NiceHashError`` 60 for a name given twice."""
    query: dict[str, str] = {}
    for piece in raw.split("&"):
        name, _, value = piece.partition("=")
        name, value = unquote_plus(name), unquote_plus(value)
        if not name or not value:
            continue
        if name in query:
            raise malformed()
        query[name] = value
    return query


def error_body(error: NiceHashError) -> bytes:
    """NiceHash's error body for ``error``, with a fresh ``error_id``."""
    item = ErrorItem(code=error.nicehash_code, message=error.message)
    return _encoder.encode(ErrorOut(error_id=str(uuid.uuid4()), errors=[item]))


class NiceHashDoor:
    """NiceHash's REST API v2 over an ``RpcService`` (see the module doc)."""

    def __init__(self, service: RpcService) -> None:
        self._service = service
        self.handlers = Handlers()
        self._routes = table(self.handlers)

    async def respond(
        self,
        *,
        http: str,
        raw_path: bytes,
        query: bytes,
        headers: Mapping[bytes, bytes],
        body: bytes,
        remote: str | None,
    ) -> Reply:
        """The answer to one request on a NiceHash path (see the module doc). Never raises
        for anything a client sends."""
        started = time.perf_counter()
        path = raw_path.decode("latin-1")
        trimmed = path[:-1] if path.endswith("/") else path
        segments = [unquote(s) for s in trimmed.removeprefix("/").split("/")]
        key = (http, "/".join(segments))
        found = find(self._routes, http, segments)
        route = None if found is None else found[0]
        callers: list[Caller] = []
        log_id = uuid.uuid4().hex[:16]
        try:
            answer = await self._answer(
                key,
                found,
                target=SignedTarget(http, path, query.decode("latin-1")),
                headers=headers,
                body=body,
                remote=remote,
                log_id=log_id,
                callers=callers,
            )
            reply, code, forbidden = Reply(200, answer), 0, False
        except Exception as error:
            if isinstance(error, RpcError):
                refusal = self._nicehash(error, callers[0] if callers else None, route)
            else:
                # A bug of ours, not the client's: logged, answered as NiceHash answers one.
                log.exception("api.internal_error", route=key[1][:100], log_id=log_id)
                refusal = generic()
            forbidden = isinstance(error, RpcError) and error.code is ApiCode.FORBIDDEN
            reply = Reply(refusal.status, error_body(refusal), refusal.retry_after_s)
            code = refusal.nicehash_code
        caller = callers[0] if callers else None
        await self._service.after_request(
            caller, succeeded=code == 0, forbidden=forbidden, remote=remote
        )
        label = route.method.name if route is not None else _LABELS.get(key, "nicehash.unknown")
        observer = self._service.call_observer
        if observer is not None:
            observer(label, code, time.perf_counter() - started)
        log.info(
            "api.nicehash",
            http=http,
            route=route.template if route is not None else "/" + key[1][:100],
            status=reply.status,
            code=code or None,
            key_id=None if caller is None else caller.key_id,
            log_id=log_id,
        )
        return reply

    async def _answer(
        self,
        key: tuple[str, str],
        found: tuple[Route, dict[str, str]] | None,
        *,
        target: SignedTarget,
        headers: Mapping[bytes, bytes],
        body: bytes,
        remote: str | None,
        log_id: str,
        callers: list[Caller],
    ) -> bytes:
        """Steps 2 to 4 of the module doc: the answer's body. Raises ``RpcError`` (a
        ``NiceHashError`` among them) for every refusal; ``callers`` gets the caller as soon as
        the request is authenticated."""
        if key == _TIME:
            # The clock every client signs with: never faulted, never rate-limited.
            return _encoder.encode(TimeOut(server_time=self._service.clock.wall_ms()))
        if await self._service.injected_failure(body=b"", headers=headers):
            raise NiceHashError(503, 503, "Service unavailable", retry_after_s=1)
        static = _STATIC.get(key)
        if static is not None:
            self._take_public(remote)
            return static
        if found is None:
            raise not_found()
        route, bound = found
        scope = route.method.scope
        caller = None
        if scope is None:
            self._take_public(remote)
        else:
            caller = await self._service.authenticate(
                headers=headers,
                body=body,
                target=target,
                cost=1,
                remote=remote,
                layouts=LAYOUTS,
            )
            callers.append(caller)
            require_scope(caller, scope)
        params = route.build(Request(bound, parse_query(target.query), body))
        return await self._service.run_method(
            route.method, _encoder.encode(params), caller=caller, remote=remote, log_id=log_id
        )

    def _take_public(self, remote: str | None) -> None:
        refused = self._service.take_public(1, remote)
        if refused is not None:
            raise refused

    def _nicehash(
        self, error: RpcError, caller: Caller | None, route: Route | None
    ) -> NiceHashError:
        """The NiceHash refusal for ``error``; a 5061 says how long our rule makes one wait."""
        interval_s = 600
        order_id = error.data.get("id")
        if caller is not None and isinstance(order_id, str) and "retry_at_ms" in error.data:
            try:
                view = self._service.views.get_order(account=caller.account, order_id=order_id)
                interval_s = self._service.market.rules(view.algorithm).price_down_interval_s
            except NotFound:
                pass
        return from_rpc_error(
            error,
            org=None if caller is None else caller.account,
            field=None if route is None else route.field,
            now_ms=self._service.clock.now_ms(),
            price_down_interval_s=interval_s,
        )
