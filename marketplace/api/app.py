"""The API's ASGI app: HTTP edge, authentication, dispatch, idempotency.

Theory of operation
-------------------
``ApiApp`` is a small hand-written ASGI app (no framework): ``POST /rpc`` only (404 for other
paths, 405 for other methods), a body of at most ``max_body_bytes`` (413 beyond, checked on
``Content-Length`` and again while reading). Everything else is a JSON-RPC exchange answered
with HTTP 200 (204 when there is nothing to answer: only notifications).

``RpcService.handle`` does the JSON-RPC part for one body:

1. ``rpc.parse_body`` splits it into calls (-32700 / -32600 for bodies that are not requests);
2. if any call needs a signature, the request is authenticated once (``auth.py``), charging
   one rate-limit token per signed call; a failure answers every signed call with that error
   (public calls in the same batch still run);
3. each call in order: method (-32601), scope (4003), params (-32602, msgspec's message in
   ``data.detail``), then the handler (``methods.py``). Reads run directly; mutating calls run
   inside the executor (the ``Engine``), so their events are durable before the answer is sent.
   With an ``X-Request-Id``, a mutating call's first answer is recorded by the same command
   (``KeyRing.remember``) and a repeat within 24 h gets it back without running again;
4. ``MarketError`` becomes its wire code here (``errors.from_market_error``); any other
   exception is a bug: logged with the request's log id, answered -32603 with that id only.

A key's last use is journaled after a request in which at least one of its calls succeeded,
at most once a minute (``KeyRing.persist_used``), so refused calls journal nothing but the
account security's record of their refusal:

- authentication that failed with a known key (bad signature, time window, replayed nonce) or
  a call its key lacks the scope for gets an ``auth.failed`` activity entry, at most one per
  key and rule a minute (``AccountSecurity.note_auth_failure``; the failures between are
  counted), so a flood of bad requests cannot fill the journal;
- a call that needs a second-factor code (``Method.second_factor``) has it checked inside its
  own command, before the handler: a code that passed is used up and a wrong one counted
  whatever the call then does, so a refusal after that is answered once those events are
  durable (security.md);
- unsigned calls (public methods, unknown methods, malformed elements, a body that is no
  request at all) take tokens from a bucket per client address (``public_rate_per_s``,
  ``public_burst``: 4029 beyond), so one peer cannot keep the node busy with 64 KiB batches
  of them.

With ``serve --control`` the service also has an ``Admin`` (``admin.py``): the ``admin.*``
methods, which need the ``operator`` scope; without one they do not exist (-32601 for any
key). It brings the API's injected faults (``ApiFaults``): before a request is handled it may
be held back (latency) or answered HTTP 503 with ``Retry-After`` (changing nothing), and
signed calls may meet a lower rate limit. Requests signed by an operator key are never faulted,
nor is ``server.time``, by which every client (the operator's too) finds the clock.

While the store fails (``marketplace.durability``), a mutating call is refused with 5030
"service unavailable" and ``data.retry_after_ms`` (``StorageUnavailable`` from the engine, the
command not run or its events dropped); reads are answered from memory, which then holds the
journal's state, except in the moments the engine is putting it back (``health.readable`` is
false), when they get 5030 too. A key's last use is not journaled then (the next request does),
nor is an ``auth.failed`` activity entry.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, NamedTuple, Protocol

import msgspec
import structlog
import trio

from marketplace.api import rpc
from marketplace.api.auth import (
    RPC_LAYOUTS,
    Authenticator,
    Caller,
    KeyAuthError,
    require_scope,
)
from marketplace.api.errors import ApiCode, RpcError, from_market_error
from marketplace.api.methods import METHODS, CallContext, Method, ProxyPort
from marketplace.api.nicehash.door import NiceHashDoor
from marketplace.api.nicehash.door import serves as serves_nicehash
from marketplace.api.ratelimit import RateLimiter
from marketplace.api.signing import RPC_PATH, Layout, SignedTarget
from marketplace.clock import Clock
from marketplace.core.errors import MarketError
from marketplace.core.eventsourced import Executor
from marketplace.core.fleet import Fleet
from marketplace.core.idempotency import params_digest
from marketplace.core.key_events import Scope
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.pool_hosts import DEFAULT_POOL_ALLOW, AllowList
from marketplace.core.pools import PoolRegistry
from marketplace.core.security import AccountSecurity
from marketplace.core.security_events import AuthRule
from marketplace.core.views import MarketViews, RelayFacts
from marketplace.durability import StorageHealth, StorageUnavailable
from stratum.core.shares import Algorithm

log = structlog.get_logger("marketplace.api")

#: Public-call buckets kept before the full (idle) ones are dropped.
_MAX_PUBLIC_BUCKETS: Final = 4096


class ApiSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The API's settings (one frozen object; see ``marketplace.config`` for the node's)."""

    #: Clock skew a signed request may have (``--auth-window``).
    auth_window_s: float = 60.0
    rate_per_s: int = 20
    burst: int = 40
    #: Unsigned calls per client address (token bucket).
    public_rate_per_s: int = 50
    public_burst: int = 100
    max_body_bytes: int = 64 * 1024
    #: What ``market.info`` tells miners to connect to.
    stratum_host: str = "127.0.0.1"
    stratum_ports: dict[Algorithm, int] = msgspec.field(default_factory=dict)
    #: A peer that leaves what we sent unread this long is disconnected (``api.server``).
    send_timeout_s: float = 30.0
    #: Where buyers' pools may be (``serve --pool-allow``; proxy.md).
    pool_allow: tuple[str, ...] = DEFAULT_POOL_ALLOW


class _Request(NamedTuple):
    """What every call of one request shares."""

    caller: Caller | None
    #: Why the request's signature was refused (every signed call answers it).
    auth_error: RpcError | None
    #: Why the request's unsigned calls were refused (the client address's bucket).
    public_error: RpcError | None
    remote: str | None
    log_id: str


class ApiFaults(Protocol):
    """An injected API fault in force (``marketplace.control.faults.ApiTarget``)."""

    def delay_s(self) -> float:
        """How long to hold a request back."""
        ...

    def fail(self) -> bool:
        """Whether to answer this request HTTP 503 (changing nothing)."""
        ...

    def rate_limiter(self) -> RateLimiter | None:
        """The rate limit that replaces the default one, if any."""
        ...


class Admin(Protocol):
    """The operator methods of a node serving with ``--control`` (``admin.AdminApi``)."""

    def knows(self, method: str) -> bool:
        """Whether ``method`` is an operator method."""
        ...

    async def call(self, method: str, params: bytes, caller: Caller) -> bytes:
        """Run it for a caller with the ``operator`` scope; its result as JSON. Raises
        ``RpcError`` or ``MarketError``."""
        ...

    def api_faults(self) -> ApiFaults | None:
        """The API fault in force, if any."""
        ...


#: How long a client is told to wait after an injected 503.
RETRY_AFTER_S: Final = 1


class RpcService:
    """JSON-RPC over one body (see the module doc). Independent of HTTP, for tests."""

    def __init__(
        self,
        *,
        market: Market,
        fleet: Fleet,
        keyring: KeyRing,
        security: AccountSecurity,
        executor: Executor,
        settings: ApiSettings | None = None,
        clock: Clock | None = None,
        methods: Mapping[str, Method] = METHODS,
        admin: Admin | None = None,
        health: StorageHealth | None = None,
        pools: PoolRegistry | None = None,
        proxy: ProxyPort | None = None,
        relays: RelayFacts | None = None,
    ) -> None:
        self._market = market
        self._health = health
        self._views = MarketViews(market, fleet, relays)
        self._pools = pools
        self._proxy = proxy
        self._keyring = keyring
        self._security = security
        self._executor = executor
        self._settings = settings or ApiSettings()
        self._clock = clock or Clock()
        self._methods = methods
        self._admin = admin
        #: Called once per call with (method, code, seconds): code 0 for a result, else the
        #: error's; a method not in the table is reported as ``"unknown"``.
        self.call_observer: Callable[[str, int, float], None] | None = None
        self._pool_allow = AllowList(self._settings.pool_allow)
        self._auth = Authenticator(
            keyring=keyring,
            window_ms=int(self._settings.auth_window_s * 1000),
            limiter=RateLimiter(rate_per_s=self._settings.rate_per_s, burst=self._settings.burst),
            not_before_ms=self._clock.wall_ms(),
            rate_override=None if admin is None else self._fault_rate_limit,
        )
        self._public = RateLimiter(
            rate_per_s=self._settings.public_rate_per_s, burst=self._settings.public_burst
        )

    @property
    def settings(self) -> ApiSettings:
        return self._settings

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def market(self) -> Market:
        return self._market

    @property
    def views(self) -> MarketViews:
        return self._views

    def _fault_rate_limit(self) -> RateLimiter | None:
        faults = None if self._admin is None else self._admin.api_faults()
        return None if faults is None else faults.rate_limiter()

    async def injected_failure(self, *, body: bytes, headers: Mapping[bytes, bytes]) -> bool:
        """Apply the API fault in force to one request (see the module doc): hold it back for
        its latency; True when it must be answered 503 instead of being handled."""
        faults = None if self._admin is None else self._admin.api_faults()
        if faults is None or self._exempt(body=body, headers=headers):
            return False
        delay = faults.delay_s()
        if delay > 0:
            await trio.sleep(delay)
        return faults.fail()

    def _exempt(self, *, body: bytes, headers: Mapping[bytes, bytes]) -> bool:
        """Operator requests are never faulted, nor are clock look-ups (module doc)."""
        key_id = headers.get(b"x-auth", b"").partition(b":")[0].decode("latin-1")
        key = self._keyring.get(key_id)
        if key is not None and Scope.OPERATOR in key.scopes:
            return True
        try:
            parsed = rpc.parse_body(body)
        except RpcError:
            return False
        return all(isinstance(c, rpc.Call) and c.method == "server.time" for c in parsed.items)

    async def handle(
        self,
        *,
        body: bytes,
        headers: Mapping[bytes, bytes],
        query: bytes = b"",
        remote: str | None = None,
    ) -> bytes | None:
        """The response body for one request body from the client at ``remote`` (``None``:
        in-process, no per-address limit); ``None``: nothing to answer. Never raises for
        anything a client sends."""
        log_id = uuid.uuid4().hex[:16]
        try:
            parsed = rpc.parse_body(body)
        except RpcError as error:
            # A body that is no request is one unsigned call: junk is limited like the rest.
            return rpc.encode_error(None, self.take_public(1, remote) or error)
        signed = 0
        for item in parsed.items:
            if isinstance(item, rpc.Call):
                method = self._methods.get(item.method)
                admin = self._admin is not None and self._admin.knows(item.method)
                if admin or (method is not None and method.scope is not None):
                    signed += 1
        public_error = self.take_public(len(parsed.items) - signed, remote)
        caller: Caller | None = None
        auth_error: RpcError | None = None
        if signed:
            try:
                caller = await self.authenticate(
                    headers=headers,
                    body=body,
                    target=SignedTarget("POST", RPC_PATH, query.decode("latin-1")),
                    cost=signed,
                    remote=remote,
                )
            except RpcError as error:
                auth_error = error
        request = _Request(caller, auth_error, public_error, remote, log_id)
        answers: list[bytes] = []
        refused: list[int] = []
        succeeded = 0
        with structlog.contextvars.bound_contextvars(log_id=log_id):
            observer = self.call_observer
            for item in parsed.items:
                started = time.perf_counter()
                code = 0
                try:
                    if isinstance(item, rpc.BadCall):
                        raise public_error or item.error
                    result = await self._call(item, request)
                except RpcError as error:
                    code = int(error.code)
                    refused.append(code)
                    answer = rpc.encode_error(item.id, error)
                else:
                    succeeded += 1
                    answer = rpc.encode_result(item.id, result)
                if observer is not None:
                    observer(self._method_label(item), code, time.perf_counter() - started)
                if isinstance(item, rpc.BadCall) or not item.notification:
                    answers.append(answer)
            await self.after_request(
                caller,
                succeeded=bool(succeeded),
                forbidden=ApiCode.FORBIDDEN in refused,
                remote=remote,
            )
            log.info(
                "api.request",
                calls=len(parsed.items),
                ok=succeeded,
                refused=refused or None,
                key_id=None if caller is None else caller.key_id,
            )
        return rpc.join_answers(parsed.batch, answers)

    async def authenticate(
        self,
        *,
        headers: Mapping[bytes, bytes],
        body: bytes,
        target: SignedTarget,
        cost: int,
        remote: str | None,
        layouts: frozenset[Layout] = RPC_LAYOUTS,
    ) -> Caller:
        """Authenticate one request (``auth.py``) for ``cost`` signed calls, signed for
        ``target`` under ``layouts``. Raises the ``RpcError`` of the rule that failed, after
        recording it in the key's account activity when it names an existing key."""
        try:
            return self._auth.authenticate(
                headers=headers,
                body=body,
                target=target,
                now_ms=self._clock.now_ms(),
                wall_ms=self._clock.wall_ms(),
                cost=cost,
                layouts=layouts,
            )
        except KeyAuthError as error:
            await self._note_auth_failure(error.account, error.key_id, error.rule, remote)
            raise

    async def after_request(
        self, caller: Caller | None, *, succeeded: bool, forbidden: bool, remote: str | None
    ) -> None:
        """What a signed request leaves behind (see the module doc): its key's last use when
        a call succeeded, an ``auth.failed`` entry when one was beyond the key's scopes."""
        if caller is None:
            return
        if succeeded:
            await self._persist_use(caller.key_id)
        if forbidden:
            await self._note_auth_failure(caller.account, caller.key_id, AuthRule.SCOPE, remote)

    def take_public(self, cost: int, remote: str | None) -> RpcError | None:
        """Charge ``cost`` unsigned calls to ``remote``'s bucket; the error to answer each of
        them with if the bucket refuses (nothing is taken then)."""
        if not cost or remote is None:
            return None
        limiter = self._public
        if cost > limiter.burst:
            return RpcError(
                ApiCode.INVALID_REQUEST,
                "too many unsigned calls in one batch",
                {"max_unsigned_calls": limiter.burst},
            )
        now = self._clock.wall_ms()
        retry_after = limiter.take(remote, now_ms=now, cost=cost)
        if len(limiter) > _MAX_PUBLIC_BUCKETS:
            limiter.prune(now_ms=now)
        if retry_after:
            return RpcError(ApiCode.RATE_LIMITED, "rate limited", {"retry_after_ms": retry_after})
        return None

    async def _note_auth_failure(
        self, account: str, key_id: str, rule: AuthRule, remote: str | None
    ) -> None:
        security, now = self._security, self._clock.now_ms()
        # While the store fails the failure goes unrecorded: the request is refused anyway.
        with contextlib.suppress(StorageUnavailable):
            await self._executor.execute(
                lambda: security.note_auth_failure(
                    account=account, key_id=key_id, rule=rule, remote=remote, now_ms=now
                )
            )

    def _method_label(self, item: rpc.Call | rpc.BadCall) -> str:
        """A call's method as a metrics label: a name of the tables, else ``"unknown"`` (the
        label's values stay bounded whatever clients send)."""
        if isinstance(item, rpc.Call) and (
            item.method in self._methods
            or (self._admin is not None and self._admin.knows(item.method))
        ):
            return item.method
        return "unknown"

    async def _persist_use(self, key_id: str) -> None:
        keyring = self._keyring
        now = self._clock.now_ms()
        if keyring.use_due(key_id, now_ms=now):
            # While the store fails, a last-used time can wait for a later request.
            with contextlib.suppress(StorageUnavailable):
                await self._executor.execute(lambda: keyring.persist_used(key_id, now_ms=now))

    async def _call(self, call: rpc.Call, request: _Request) -> bytes:
        """Run one call; its result as JSON. Raises ``RpcError`` for every refusal."""
        caller, public_error = request.caller, request.public_error
        method = self._methods.get(call.method)
        if method is None and self._admin is not None and self._admin.knows(call.method):
            operator = self._signed(Scope.OPERATOR, request)
            return await self.guarded(
                lambda: self._admin_call(call, operator), method=call.method, log_id=request.log_id
            )
        if (method is None or method.scope is None) and public_error is not None:
            raise public_error
        if method is None:
            raise RpcError(
                ApiCode.METHOD_NOT_FOUND, "method not found", {"method": call.method[:64]}
            )
        if method.scope is not None:
            caller = self._signed(method.scope, request)
        return await self.run_method(
            method,
            call.params,
            caller=caller,
            remote=request.remote,
            log_id=request.log_id,
            position=call.position,
        )

    async def _admin_call(self, call: rpc.Call, operator: Caller) -> bytes:
        assert self._admin is not None
        return await self._admin.call(call.method, call.params, operator)

    async def guarded(
        self, run: Callable[[], Awaitable[bytes]], *, method: str, log_id: str
    ) -> bytes:
        """``await run()``, with every refusal as an ``RpcError``: a ``MarketError`` mapped
        (``errors.from_market_error``), the store failing as 5030 with ``retry_after_ms``, and
        anything else, a bug, logged under ``log_id`` and answered -32603 with that id only."""
        try:
            return await run()
        except RpcError:
            raise
        except MarketError as exc:
            raise from_market_error(exc) from None
        except StorageUnavailable as exc:
            raise RpcError(
                ApiCode.SERVICE_UNAVAILABLE,
                "service unavailable",
                {"retry_after_ms": exc.retry_after_ms},
            ) from None
        except Exception:
            log.exception("api.internal_error", method=method[:64], log_id=log_id)
            raise RpcError(ApiCode.INTERNAL_ERROR, "internal error", {"log_id": log_id}) from None

    def _signed(self, scope: Scope, request: _Request) -> Caller:
        """The caller of a signed call that needs ``scope``. Raises the request's
        authentication error, or 4003 when the key lacks the scope."""
        if request.auth_error is not None:
            raise request.auth_error
        caller = request.caller
        if caller is None:  # authenticate() either returns a caller or raises
            raise RuntimeError("signed call without a caller")
        require_scope(caller, scope)
        return caller

    async def run_method(
        self,
        method: Method,
        params: bytes,
        *,
        caller: Caller | None,
        remote: str | None,
        log_id: str,
        position: int = 0,
    ) -> bytes:
        """Run one call of ``method`` with its ``params`` (JSON) for ``caller`` (whose scope
        the caller of this checked; ``None`` for a public method), the ``position``-th call of
        its request; the result as JSON. The one path every door's calls take (see the module
        doc): params decoded (-32602), reads answered from memory, mutating calls run in the
        executor with their idempotency record. Raises ``RpcError`` for every refusal
        (``guarded``)."""
        return await self.guarded(
            lambda: self._run(method, params, caller, remote, position),
            method=method.name,
            log_id=log_id,
        )

    async def _run(
        self,
        method: Method,
        params_json: bytes,
        caller: Caller | None,
        remote: str | None,
        position: int,
    ) -> bytes:
        assert method.decoder is not None
        try:
            params = method.decoder.decode(params_json)
        except msgspec.DecodeError as exc:
            raise RpcError(ApiCode.INVALID_PARAMS, "invalid params", {"detail": str(exc)}) from None
        health = self._health
        if health is not None and not health.readable:
            raise health.unavailable()
        settings = self._settings
        ctx = CallContext(
            market=self._market,
            views=self._views,
            keyring=self._keyring,
            now_ms=self._clock.now_ms(),
            wall_ms=self._clock.wall_ms(),
            caller=caller,
            stratum_host=settings.stratum_host,
            stratum_ports=settings.stratum_ports,
            security=self._security,
            remote=remote,
            pools=self._pools,
            pool_allow=self._pool_allow,
            proxy=self._proxy,
        )
        if method.awaited is not None:
            return rpc.encode(await method.awaited(ctx, params))
        if not method.mutating:
            return rpc.encode(method.run(ctx, params))
        if caller is None:
            raise RuntimeError(f"mutating method {method.name} is public")
        record_key = (
            None if caller.request_id is None else (caller.key_id, caller.request_id, position)
        )
        digest = params_digest(method.name, params_json)
        keyring, security = self._keyring, self._security

        def command() -> bytes | RpcError:
            # The look-up runs inside the command, so two concurrent repeats cannot both miss
            # it and both act (the command is atomic under trio).
            if record_key is not None:
                recorded = keyring.recall(record_key, now_ms=ctx.now_ms)
                if recorded is not None:
                    if recorded.method != method.name or recorded.digest != digest:
                        raise RpcError(
                            ApiCode.INVALID_REQUEST,
                            "X-Request-Id was already used for a different call",
                            {"header": "X-Request-Id"},
                        )
                    if method.redaction is None:
                        return recorded.result
                    return method.redaction.reveal(ctx, recorded.result)
            run_ctx = ctx
            against = None if method.second_factor is None else method.second_factor(ctx, params)
            if against is not None:
                check = security.check_code(
                    account=ctx.account,
                    code=getattr(params, "otp", None),
                    against=against,
                    actor=ctx.actor,
                    wall_ms=ctx.wall_ms,
                    now_ms=ctx.now_ms,
                )
                if check.refusal is not None:
                    return from_market_error(check.refusal)
                run_ctx = ctx._replace(passed=check.passed)
            try:
                result = method.run(run_ctx, params)
            except (MarketError, RpcError) as exc:
                if run_ctx.passed is None:
                    raise
                # The code stays used up whatever the call does: answer the refusal after
                # the command, so its CodeUsed event is journaled like any other.
                return exc if isinstance(exc, RpcError) else from_market_error(exc)
            encoded = rpc.encode(result)
            if record_key is not None:
                # The journal must hold no secret: a secret-bearing answer is kept without it
                # and derived again on a repeat (Method.redaction).
                stored = encoded
                if method.redaction is not None:
                    stored = method.redaction.redact(run_ctx, result)
                keyring.remember(
                    record_key, method=method.name, digest=digest, result=stored, now_ms=ctx.now_ms
                )
            return encoded

        answer = await self._executor.execute(command)
        if isinstance(answer, RpcError):
            raise answer
        return answer


# ---------------------------------------------------------------------------------- ASGI

AsgiScope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ApiApp:
    """The ASGI app serving ``RpcService`` at ``POST /rpc`` and, with ``nicehash``, NiceHash's
    REST paths (``marketplace.api.nicehash``) beside it (see the module doc)."""

    def __init__(self, service: RpcService, *, nicehash: bool = False) -> None:
        self.service = service
        self._max_body = service.settings.max_body_bytes
        self.nicehash = NiceHashDoor(service) if nicehash else None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    def serves(self, path: str) -> bool:
        """Whether ``path`` is this app's: ``/rpc``, and NiceHash's paths with ``nicehash``."""
        return path == RPC_PATH or (self.nicehash is not None and serves_nicehash(path))

    async def _http(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if self.nicehash is not None and serves_nicehash(scope["path"]):
            await self._nicehash(self.nicehash, scope, receive, send)
            return
        if scope["path"] != "/rpc":
            await _plain(send, 404, b"not found\n")
            return
        if scope["method"] != "POST":
            await _plain(send, 405, b"method not allowed: POST /rpc only\n", allow=True)
            return
        headers = _headers(scope)
        body = await self._body(headers, receive, send)
        if body is None:
            return
        if await self.service.injected_failure(body=body, headers=headers):
            await _plain(
                send,
                503,
                b"service unavailable (an injected fault); retry later\n",
                retry_after=RETRY_AFTER_S,
            )
            return
        answer = await self.service.handle(
            body=body,
            headers=headers,
            query=bytes(scope.get("query_string", b"")),
            remote=_remote(scope),
        )
        if answer is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await _json(send, 200, answer)

    async def _body(
        self, headers: Mapping[bytes, bytes], receive: Receive, send: Send
    ) -> bytes | None:
        """The request's body, or ``None`` when it was answered 413 or the client left."""
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            await _plain(send, 413, b"body too large: 64 KiB at most\n")
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                await _plain(send, 413, b"body too large: 64 KiB at most\n")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _nicehash(
        self, door: NiceHashDoor, scope: AsgiScope, receive: Receive, send: Send
    ) -> None:
        headers = _headers(scope)
        body = await self._body(headers, receive, send)
        if body is None:
            return
        # The path as it arrived on the request line: what a NiceHash client signed.
        raw_path = scope.get("raw_path") or scope["path"].encode()
        reply = await door.respond(
            http=scope["method"],
            raw_path=bytes(raw_path).partition(b"?")[0],
            query=bytes(scope.get("query_string", b"")),
            headers=headers,
            body=body,
            remote=_remote(scope),
        )
        await _json(send, reply.status, reply.body, retry_after=reply.retry_after_s)


def _headers(scope: AsgiScope) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        headers[bytes(name).lower()] = bytes(value)
    return headers


def _remote(scope: AsgiScope) -> str | None:
    client = scope.get("client")
    return None if not client else str(client[0])


async def _json(send: Send, status: int, body: bytes, *, retry_after: int | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(
    send: Send, status: int, text: bytes, *, allow: bool = False, retry_after: int | None = None
) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]
    if allow:
        headers.append((b"allow", b"POST"))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def build_app(
    *,
    market: Market,
    fleet: Fleet,
    keyring: KeyRing,
    security: AccountSecurity,
    executor: Executor,
    settings: ApiSettings | None = None,
    clock: Clock | None = None,
    admin: Admin | None = None,
    health: StorageHealth | None = None,
    pools: PoolRegistry | None = None,
    proxy: ProxyPort | None = None,
    relays: RelayFacts | None = None,
    nicehash: bool = True,
) -> ApiApp:
    """The ASGI app over a market (with its fleet, for the views), key ring, account security
    and pool registry whose commands ``executor`` runs, on the node's ``clock`` (market time
    for the market, wall time for signing and the second factor); with ``admin``, the operator
    methods and faults of ``serve --control``; ``health`` (the engine's) says when reads must
    wait too; ``proxy`` verifies pools and ``relays`` tells the orders' pool status;
    ``nicehash``: NiceHash's REST paths served too (``serve --nicehash-api``)."""
    return ApiApp(
        RpcService(
            market=market,
            fleet=fleet,
            keyring=keyring,
            security=security,
            executor=executor,
            settings=settings,
            clock=clock,
            admin=admin,
            health=health,
            pools=pools,
            proxy=proxy,
            relays=relays,
        ),
        nicehash=nicehash,
    )
