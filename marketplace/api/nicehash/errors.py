"""The NiceHash door's errors: NiceHash's codes, HTTP statuses and messages, mapped once.

Theory of operation
-------------------
Every refusal on this door is answered with NiceHash's error body,
``{"error_id": "<uuid4>", "errors": [{"code", "message"}]}``, and the status of
nicehash-rest.md's table, whose messages are kept verbatim: bots match them with regular
expressions (``5061``, ``Seconds till available:\\s*(\\d+)``).

A refusal reaches here in one of two forms. The door's own checks (NiceHash's units and names,
a body that is not what the route takes) raise a ``NiceHashError`` at once. Everything the
market and the shared API path refuse arrives as the JSON-RPC door's ``RpcError`` (the same
refusal with the same code and data), and ``from_rpc_error`` maps it: by its code, and for the
codes that cover several NiceHash errors (4090, 4220, -32602) by what its ``data`` says (which
field, a price-down retry time). Codes the spec's table leaves out are answered in the same
style: 5030 (the store failing) as HTTP 503 code 503 ``Service unavailable`` with a
``Retry-After``, an internal error as 500 code 2999 ``Generic Server Error``.
"""

from __future__ import annotations

import math
from typing import Final

from marketplace.api.errors import ApiCode, RpcError


class NiceHashError(RpcError):
    """A refusal ready for the wire: NiceHash's ``code``, the HTTP ``status`` and the
    ``message``; ``retry_after_s`` becomes a ``Retry-After`` header. It is an ``RpcError`` so
    that a route's handler may raise it through the shared API path, which passes those on
    untouched (its nominal JSON-RPC code is never answered)."""

    def __init__(
        self, code: int, status: int, message: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(ApiCode.INVALID_PARAMS, message)
        self.nicehash_code = code
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"NiceHashError({self.nicehash_code}, {self.status}, {self.message!r})"


def malformed() -> NiceHashError:
    """A body or query that is not what the route takes (60)."""
    return NiceHashError(60, 400, "Malformed request")


def invalid_input(field: str) -> NiceHashError:
    """A value this door or a market rule refuses (2997), naming NiceHash's field."""
    return NiceHashError(2997, 400, f"Invalid input: {field}")


def not_found() -> NiceHashError:
    """No such order, pool or path (404)."""
    return NiceHashError(404, 404, "Not found")


def bad_factor() -> NiceHashError:
    """Factors that are not the algorithm's (5068)."""
    return NiceHashError(5068, 400, "Invalid order market factor")


def generic() -> NiceHashError:
    """NiceHash's answer to what it does not do (a FIXED order) and to our bugs (2999)."""
    return NiceHashError(2999, 500, "Generic Server Error")


#: Our field names (the market's ``data.field``) as NiceHash's request fields name them.
FIELDS: Final[dict[str, str]] = {
    "price": "PRICE",
    "limit": "LIMIT",
    "amount": "AMOUNT",
    "type": "TYPE",
    "duration_s": "DURATION",
    "pool_id": "POOL_ID",
    "host": "STRATUM_HOSTNAME",
    "port": "STRATUM_PORT",
    "username": "USERNAME",
    "password": "PASSWORD",
    "name": "NAME",
    "algorithm": "ALGORITHM",
}

_SESSION: Final = "Invalid session"


def price_down_too_soon(*, retry_in_ms: int, interval_s: int) -> NiceHashError:
    """5061: a price lowered again within the interval; the seconds until it may be, from
    our rule (at least 1 while refused)."""
    seconds = max(1, math.ceil(retry_in_ms / 1000))
    if interval_s % 60 == 0:
        minutes = interval_s // 60
        every = f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"
    else:
        every = f"{interval_s} seconds"
    return NiceHashError(
        5061,
        400,
        f"Order price cannot be decreased yet, allowed once per {every}. "
        f"Seconds till available: {seconds}",
    )


def _field(error: RpcError, default: str | None) -> str | None:
    field = error.data.get("field")
    if isinstance(field, str):
        return FIELDS.get(field, field.upper())
    return default


def from_rpc_error(
    error: RpcError,
    *,
    org: str | None,
    field: str | None = None,
    now_ms: int = 0,
    price_down_interval_s: int = 600,
) -> NiceHashError:
    """The NiceHash refusal for a refusal of the shared path (see the module doc). ``org`` is
    the calling account (3001 names it), ``field`` the NiceHash field a refusal without one
    concerns; ``now_ms`` and ``price_down_interval_s`` phrase a 5061."""
    if isinstance(error, NiceHashError):
        return error
    code, data = error.code, error.data
    if code in (ApiCode.NOT_AUTHENTICATED, ApiCode.TIME_WINDOW, ApiCode.REPLAY):
        return NiceHashError(2000, 401, _SESSION)
    if code is ApiCode.FORBIDDEN:
        return NiceHashError(2000, 403, _SESSION)
    if code is ApiCode.INSUFFICIENT_BALANCE:
        return NiceHashError(3001, 409, f"Insufficient balance in account: (BTC, USER, {org})")
    if code in (ApiCode.NOT_FOUND, ApiCode.METHOD_NOT_FOUND):
        return not_found()
    if code is ApiCode.RATE_LIMITED:
        retry = data.get("retry_after_ms")
        seconds = math.ceil(retry / 1000) if isinstance(retry, int) else None
        return NiceHashError(429, 429, "Too many requests", retry_after_s=seconds)
    if code is ApiCode.SERVICE_UNAVAILABLE:
        retry = data.get("retry_after_ms")
        seconds = max(1, math.ceil(retry / 1000)) if isinstance(retry, int) else 1
        return NiceHashError(503, 503, "Service unavailable", retry_after_s=seconds)
    if code is ApiCode.INVALID_STATE:
        retry_at = data.get("retry_at_ms")
        if isinstance(retry_at, int):
            return price_down_too_soon(
                retry_in_ms=retry_at - now_ms, interval_s=price_down_interval_s
            )
        if "status" in data:
            return NiceHashError(5059, 400, "Order not active")
        named = _field(error, field)
        return invalid_input(named) if named else generic()
    if code is ApiCode.RULE_VIOLATION:
        named = _field(error, field)
        if named == "PRICE" and "min" in data:
            return NiceHashError(5060, 400, "Order price too low")
        return invalid_input(named or "PARAMS")
    if code is ApiCode.INVALID_PARAMS:
        # A value no market takes (``money`` names no field: the route says which it was).
        named = _field(error, field)
        return invalid_input(named) if named else malformed()
    if code in (ApiCode.INVALID_REQUEST, ApiCode.PARSE_ERROR):
        return malformed()
    return generic()
