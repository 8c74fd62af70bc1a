"""Authentication of a signed request: which rule failed, and nothing more.

Theory of operation
-------------------
``Authenticator.authenticate`` checks one HTTP request's signing headers in a fixed order,
cheapest and least revealing first, and answers a ``Caller`` or raises the ``RpcError`` of the
first rule that failed:

1. headers present and well formed (``X-Auth`` = ``key_id:hex``, ``X-Time`` digits,
   ``X-Nonce`` and ``X-Request-Id`` tokens, ``X-Organization-Id``) -> 4001 / -32600;
2. the key exists and the signature over the exact body matches (constant time) one of the
   messages the door's layouts allow (``signing.signing_messages``: ``POST /rpc`` has one,
   the NiceHash door three) -> 4001; only a holder of the secret gets past here, so later
   answers reveal nothing to strangers;
3. the key is not revoked or expired and belongs to ``X-Organization-Id`` (a layout without
   the header: the key's own account) -> 4001;
4. ``X-Time`` within the window of the server's wall clock, and not before this process started
   (the nonce store is ephemeral, see ``nonces.py``) -> 4008;
5. the nonce is fresh for this key -> 4009;
6. the key's token bucket has a token per signed call of the request -> 4029.

Only when every rule passed are the nonce and the tokens spent, so a refused request changes
nothing here. A failure of rule 2, 4 or 5 names a key that exists, so it is raised as a
``KeyAuthError`` saying which key and rule: the dispatcher records it in that account's
activity log (rate-limited there), which is how an owner sees someone trying their key.

Scopes are checked per call by the dispatcher, not here. All inputs, the time
included, are passed in, and the two times are kept apart: signing (the window, nonces, the rate
limit) is on wall time, ``wall_ms``, the clock clients sign with; the key's expiry and last use
are on market time, ``now_ms``, like every time the key ring stores (``marketplace.clock``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final, NamedTuple

from marketplace.api.errors import ApiCode, RpcError
from marketplace.api.nonces import NonceStore
from marketplace.api.ratelimit import RateLimiter
from marketplace.api.signing import (
    Layout,
    SignedTarget,
    is_token,
    signing_messages,
    verify,
)
from marketplace.core.key_events import KeyState, Scope
from marketplace.core.keys import KeyRing
from marketplace.core.security_events import AuthRule
from stratum.core.names import ACCOUNT_PATTERN

_TIME: Final = re.compile(rb"[0-9]{1,16}")
_KEY_ID: Final = re.compile(rb"[A-Za-z0-9_-]{1,64}")
_ORG: Final = re.compile(ACCOUNT_PATTERN.encode())
#: ``POST /rpc`` is signed one way only (buyer-api.md).
RPC_LAYOUTS: Final = frozenset({Layout.ORGANIZATION})


class Caller(NamedTuple):
    """Who signed a request."""

    account: str
    key_id: str
    scopes: frozenset[Scope]
    request_id: str | None


def require_scope(caller: Caller, scope: Scope) -> None:
    """Raises 4003 unless ``caller``'s key has ``scope``."""
    if scope not in caller.scopes:
        raise RpcError(ApiCode.FORBIDDEN, "key lacks the scope", {"scope": scope.value})


def _not_authenticated(message: str, **data: str) -> RpcError:
    return RpcError(ApiCode.NOT_AUTHENTICATED, message, dict(data))


class KeyAuthError(RpcError):
    """A refusal of a request signed with an existing key: which account's key, which rule."""

    def __init__(self, error: RpcError, *, account: str, key_id: str, rule: AuthRule) -> None:
        super().__init__(error.code, error.message, error.data)
        self.account = account
        self.key_id = key_id
        self.rule = rule


class Authenticator:
    """Checks signed requests against a ``KeyRing`` (see the module doc)."""

    def __init__(
        self,
        *,
        keyring: KeyRing,
        window_ms: int,
        limiter: RateLimiter,
        not_before_ms: int,
        rate_override: Callable[[], RateLimiter | None] | None = None,
    ) -> None:
        self._keyring = keyring
        self._window_ms = window_ms
        self._limiter = limiter
        # An injected fault's rate limit (control.md), for every key but the operator's.
        self._rate_override = rate_override
        self._nonces = NonceStore(window_ms=window_ms)
        self._not_before_ms = not_before_ms

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    def authenticate(
        self,
        *,
        headers: Mapping[bytes, bytes],
        body: bytes,
        target: SignedTarget,
        now_ms: int,
        wall_ms: int,
        cost: int,
        layouts: frozenset[Layout] = RPC_LAYOUTS,
    ) -> Caller:
        """Check the request's signing headers (lowercase names) against ``target`` (what its
        request line asked for) under ``layouts``, and spend its nonce and ``cost`` tokens;
        ``wall_ms`` is the wall clock (signing), ``now_ms`` market time (the key's expiry and
        last use). Raises ``RpcError`` (4001, 4008, 4009, 4029, -32600) naming the first rule
        that failed; on any failure nothing is spent."""
        auth = headers.get(b"x-auth")
        if auth is None:
            raise _not_authenticated("missing X-Auth header", header="X-Auth")
        key_raw, sep, sig = auth.partition(b":")
        if not sep or _KEY_ID.fullmatch(key_raw) is None:
            raise _not_authenticated("X-Auth must be key_id:signature", header="X-Auth")
        time_raw = headers.get(b"x-time")
        if time_raw is None or _TIME.fullmatch(time_raw) is None:
            raise _not_authenticated("X-Time must be milliseconds since the epoch", header="X-Time")
        nonce = headers.get(b"x-nonce")
        if nonce is None or not is_token(nonce):
            raise _not_authenticated("X-Nonce must be 1-64 of [A-Za-z0-9_-]", header="X-Nonce")
        org_raw = headers.get(b"x-organization-id")
        headless = org_raw is None and Layout.NO_ORGANIZATION in layouts
        if not headless and (org_raw is None or _ORG.fullmatch(org_raw) is None):
            raise _not_authenticated(
                "X-Organization-Id must name the account", header="X-Organization-Id"
            )
        request_raw = headers.get(b"x-request-id")
        if request_raw is not None and not is_token(request_raw):
            raise RpcError(
                ApiCode.INVALID_REQUEST,
                "X-Request-Id must be 1-64 of [A-Za-z0-9_-]",
                {"header": "X-Request-Id"},
            )
        key_id = key_raw.decode()
        key = self._keyring.get(key_id)
        if key is None:
            raise _not_authenticated("unknown key", header="X-Auth")
        messages = signing_messages(
            key_id=key_id,
            time_ms=time_raw.decode(),
            nonce=nonce.decode(),
            org_id=None if org_raw is None else org_raw.decode(),
            target=target,
            body=body or None,
            layouts=layouts,
        )
        secret = self._keyring.secret_of(key_id, key.version)
        # Every candidate is checked, so the time taken says nothing about which one matched.
        matched = [verify(secret, message, sig) for message in messages]
        if not any(matched):
            raise KeyAuthError(
                _not_authenticated("bad signature", header="X-Auth"),
                account=key.account,
                key_id=key_id,
                rule=AuthRule.SIGNATURE,
            )
        state = key.state(now_ms)
        if state is KeyState.REVOKED:
            raise _not_authenticated("key revoked", key_id=key_id)
        if state is KeyState.EXPIRED:
            raise _not_authenticated("key expired", key_id=key_id)
        org = key.account if org_raw is None else org_raw.decode()
        if org != key.account:
            raise _not_authenticated(
                "key does not belong to X-Organization-Id", header="X-Organization-Id"
            )
        request_ms = int(time_raw)
        if abs(wall_ms - request_ms) > self._window_ms or request_ms < self._not_before_ms:
            raise KeyAuthError(
                RpcError(
                    ApiCode.TIME_WINDOW,
                    "X-Time is outside the allowed window; sync with server.time",
                    {"server_time_ms": wall_ms, "window_ms": self._window_ms},
                ),
                account=org,
                key_id=key_id,
                rule=AuthRule.WINDOW,
            )
        if self._nonces.seen(key_id, nonce, now_ms=wall_ms):
            raise KeyAuthError(
                RpcError(ApiCode.REPLAY, "nonce already used", {"header": "X-Nonce"}),
                account=org,
                key_id=key_id,
                rule=AuthRule.REPLAY,
            )
        limiter = self._limiter
        if self._rate_override is not None and Scope.OPERATOR not in key.scopes:
            override = self._rate_override()
            limiter = limiter if override is None else override
        if cost > limiter.burst:
            raise RpcError(
                ApiCode.INVALID_REQUEST,
                "too many signed calls in one batch",
                {"max_signed_calls": limiter.burst},
            )
        retry_after = limiter.take(key_id, now_ms=wall_ms, cost=cost)
        if retry_after:
            raise RpcError(ApiCode.RATE_LIMITED, "rate limited", {"retry_after_ms": retry_after})
        self._nonces.add(key_id, nonce, request_ms=request_ms, now_ms=wall_ms)
        self._keyring.note_used(key_id, now_ms=now_ms)
        return Caller(
            account=org,
            key_id=key_id,
            scopes=frozenset(key.scopes),
            request_id=None if request_raw is None else request_raw.decode(),
        )
