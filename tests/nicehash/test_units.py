"""The door's pure parts: NiceHash's names, number habits and scales (``units.py``), and the
mapping of every refusal of the shared path onto NiceHash's table (``errors.py``)."""

from __future__ import annotations

import decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.api.errors import ApiCode, RpcError
from marketplace.api.nicehash import units
from marketplace.api.nicehash.errors import NiceHashError, from_rpc_error
from marketplace.core.money import parse_btc
from stratum.core.shares import Algorithm

D = decimal.Decimal


def test_names_in_any_case() -> None:
    assert units.algorithm("sha256") is Algorithm.SHA256D
    assert units.algorithm("SHA256AsicBoost") is Algorithm.SHA256D
    assert units.algorithm("Scrypt") is Algorithm.SCRYPT
    assert units.market("usa_e") == "USA_E"
    for bad, field in (("X16R", "ALGORITHM"), ("", "ALGORITHM")):
        with pytest.raises(NiceHashError, match=f"Invalid input: {field}"):
            units.algorithm(bad)
    with pytest.raises(NiceHashError, match="Invalid input: MARKET"):
        units.market("ASIA")


def test_numbers_and_scales() -> None:
    assert units.price_in(D("1E-4")) == "0.0001"
    assert units.price_in(D("0.01000000")) == "0.01"  # trailing zeros are no decimals
    assert units.price_in(D("12")) == "12"
    assert units.limit_in(D("0")) == "0"
    assert units.amount_in(D("0.005")) == "0.005"
    for bad in ("0.00001", "0.12345"):
        with pytest.raises(NiceHashError, match="PRICE_DATA_SCALE"):
            units.price_in(D(bad))
    with pytest.raises(NiceHashError, match="LIMIT_DATA_SCALE"):
        units.limit_in(D("1.001"))
    for bad in ("-1", "NaN", "Infinity", "1E+40"):
        with pytest.raises(NiceHashError, match=r"Invalid input: AMOUNT$"):
            units.amount_in(D(bad))


@given(st.decimals(min_value=0, max_value=10**6, allow_nan=False, places=8))
def test_amounts_keep_every_digit(value: decimal.Decimal) -> None:
    assert parse_btc(units.amount_in(value)) == int(value * 10**11)


def test_answers() -> None:
    assert units.price_out(10**9) == "0.0100"
    assert units.price_out(123_456_780) == "0.00123456"  # never rounded away
    assert units.limit_out(1_500_000, Algorithm.SHA256D) == "1.50"
    assert units.limit_out(1_234_567, Algorithm.SHA256D) == "1.234567"
    assert units.limit_out(0, Algorithm.SCRYPT) == "0.00"
    assert units.amount_out(5 * 10**8) == "0.00500000"
    assert units.iso(1_796_150_227_123) == "2026-12-01T18:37:07.123000Z"
    assert units.iso(0) == "1970-01-01T00:00:00.000000Z"


def _err(code: ApiCode, **data: object) -> RpcError:
    return RpcError(code, "x", dict(data))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_err(ApiCode.NOT_AUTHENTICATED), (2000, 401, "Invalid session")),
        (_err(ApiCode.TIME_WINDOW), (2000, 401, "Invalid session")),
        (_err(ApiCode.REPLAY), (2000, 401, "Invalid session")),
        (_err(ApiCode.FORBIDDEN), (2000, 403, "Invalid session")),
        (
            _err(ApiCode.INSUFFICIENT_BALANCE),
            (3001, 409, "Insufficient balance in account: (BTC, USER, alice)"),
        ),
        (_err(ApiCode.NOT_FOUND), (404, 404, "Not found")),
        (
            _err(ApiCode.INVALID_STATE, id="o-1", status="cancelled"),
            (5059, 400, "Order not active"),
        ),
        (
            _err(ApiCode.INVALID_STATE, id="o-1", retry_at_ms=10_500),
            (
                5061,
                400,
                "Order price cannot be decreased yet, allowed once per 10 minutes. "
                "Seconds till available: 11",
            ),
        ),
        (
            _err(ApiCode.INVALID_STATE, id="o-1", min="0.1", step_bps=1000),
            (2997, 400, "Invalid input: PRICE"),
        ),
        (
            _err(ApiCode.RULE_VIOLATION, field="price", min="0.01"),
            (5060, 400, "Order price too low"),
        ),
        (
            _err(ApiCode.RULE_VIOLATION, field="amount", min="0.01"),
            (2997, 400, "Invalid input: AMOUNT"),
        ),
        (
            _err(ApiCode.RULE_VIOLATION, field="host"),
            (2997, 400, "Invalid input: STRATUM_HOSTNAME"),
        ),
        (_err(ApiCode.INVALID_PARAMS, field="amount"), (2997, 400, "Invalid input: AMOUNT")),
        (_err(ApiCode.INVALID_PARAMS, detail="junk"), (2997, 400, "Invalid input: PRICE")),
        (_err(ApiCode.INVALID_REQUEST), (60, 400, "Malformed request")),
        (_err(ApiCode.RATE_LIMITED, retry_after_ms=1500), (429, 429, "Too many requests")),
        (_err(ApiCode.SERVICE_UNAVAILABLE, retry_after_ms=200), (503, 503, "Service unavailable")),
        (_err(ApiCode.INTERNAL_ERROR, log_id="x"), (2999, 500, "Generic Server Error")),
    ],
)
def test_table(error: RpcError, expected: tuple[int, int, str]) -> None:
    mapped = from_rpc_error(error, org="alice", field="PRICE", now_ms=0)
    assert (mapped.nicehash_code, mapped.status, mapped.message) == expected


def test_retry_after_headers_and_other_intervals() -> None:
    assert (
        from_rpc_error(_err(ApiCode.RATE_LIMITED, retry_after_ms=1500), org=None).retry_after_s == 2
    )
    assert (
        from_rpc_error(
            _err(ApiCode.SERVICE_UNAVAILABLE, retry_after_ms=200), org=None
        ).retry_after_s
        == 1
    )
    soon = _err(ApiCode.INVALID_STATE, id="o-1", retry_at_ms=29_001)
    assert from_rpc_error(soon, org=None, now_ms=0, price_down_interval_s=30).message == (
        "Order price cannot be decreased yet, allowed once per 30 seconds. "
        "Seconds till available: 30"
    )
    assert (
        "once per 1 minute."
        in from_rpc_error(soon, org=None, now_ms=0, price_down_interval_s=60).message
    )
