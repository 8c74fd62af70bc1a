"""The API's error codes and the one mapping from the market's refusals to them.

Every error the API answers is an ``RpcError`` (a code from ``ApiCode``, a human-readable
message and a ``data`` object saying what to fix). ``MarketError`` subclasses are turned into
``RpcError`` here and nowhere else, and so is their ``data``: the market speaks integer msat and
H/s (``available_msat``, ``min_hs``), the wire decimal strings like every other amount and speed
(``available``: BTC with 8 decimals, ``min_limit``... in the market's unit). A minimum that is
not a whole satoshi is shown rounded up, so sending the shown value back satisfies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from marketplace.core.errors import (
    InsufficientBalance,
    InvalidArgument,
    InvalidState,
    Locked,
    MarketError,
    NotFound,
    RuleViolation,
    SecondFactorRefused,
)
from marketplace.core.money import MSAT_PER_SAT, UNIT_HS, format_btc, format_speed

#: What an error's ``data`` may hold: JSON scalars, one level of nesting at most.
ErrorData = dict[str, str | int | list[str]]


class ApiCode(IntEnum):
    """Every error code the API answers (JSON-RPC's own, then the application's)."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    NOT_AUTHENTICATED = 4001
    FORBIDDEN = 4003
    TIME_WINDOW = 4008
    REPLAY = 4009
    SECOND_FACTOR = 4011
    RATE_LIMITED = 4029
    NOT_FOUND = 4040
    INVALID_STATE = 4090
    INSUFFICIENT_BALANCE = 4020
    RULE_VIOLATION = 4220
    SERVICE_UNAVAILABLE = 5030


class RpcError(Exception):
    """A refused call, ready for the wire."""

    def __init__(self, code: ApiCode, message: str, data: ErrorData | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data: ErrorData = dict(data) if data else {}

    def __repr__(self) -> str:
        return f"RpcError({self.code.name}, {self.message!r}, {self.data!r})"


_MARKET_CODES: dict[type[MarketError], ApiCode] = {
    NotFound: ApiCode.NOT_FOUND,
    InvalidState: ApiCode.INVALID_STATE,
    InsufficientBalance: ApiCode.INSUFFICIENT_BALANCE,
    RuleViolation: ApiCode.RULE_VIOLATION,
    InvalidArgument: ApiCode.INVALID_PARAMS,
    SecondFactorRefused: ApiCode.SECOND_FACTOR,
    Locked: ApiCode.RATE_LIMITED,
}


def from_market_error(exc: MarketError) -> RpcError:
    """The wire error for a market refusal. An unknown ``MarketError`` subclass maps by its
    nearest known base; the bare base class is an invalid-state refusal."""
    for cls in type(exc).__mro__:
        code = _MARKET_CODES.get(cls)
        if code is not None:
            return RpcError(code, exc.message, wire_data(exc.data))
    return RpcError(ApiCode.INVALID_STATE, exc.message, wire_data(exc.data))


def wire_data(data: Mapping[str, str | int]) -> ErrorData:
    """A market error's data with msat and H/s integers as the wire's decimal strings (see the
    module doc); speeds need the data's ``algorithm`` for their unit."""
    unit = None
    algorithm = data.get("algorithm")
    for known, unit_hs in UNIT_HS.items():
        if algorithm == known.value:
            unit = unit_hs
    out: ErrorData = {}
    for key, value in data.items():
        if isinstance(value, int) and key.endswith("_msat"):
            if key.startswith("min"):
                value = -(-value // MSAT_PER_SAT) * MSAT_PER_SAT
            out[key.removesuffix("_msat")] = format_btc(value)
        elif isinstance(value, int) and key.endswith("_hs") and unit is not None:
            out[key.removesuffix("_hs")] = format_speed(value, unit_hs=unit)
        else:
            out[key] = value
    return out
