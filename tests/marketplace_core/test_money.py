from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.errors import InvalidArgument
from marketplace.core.money import (
    MAX_HS,
    MAX_MSAT,
    format_btc,
    format_btc_exact,
    format_speed,
    parse_btc,
    parse_speed,
)
from tests.marketplace_core.helpers import funded, make_core


@pytest.mark.parametrize(
    ("text", "msat"),
    [
        ("0", 0),
        ("1", 10**11),
        ("0.00150000", 150_000_000),
        ("0.0015", 150_000_000),
        ("0.00000001", 1000),
        ("21000000.00000000", 21_000_000 * 10**11),
        ("007.5", 750_000_000_000),
    ],
)
def test_parse_btc(text: str, msat: int) -> None:
    assert parse_btc(text) == msat


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "+1",
        "0.000000001",
        "1e-3",
        "1.",
        ".5",
        " 1",
        "1 ",
        "NaN",
        "inf",
        "0x10",
        "1,5",
        "1" * 31,
        "١",
    ],
)
def test_parse_btc_refuses_junk(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_btc(text)


def test_amounts_and_speeds_are_bounded_to_what_the_journal_holds() -> None:
    assert parse_btc("21000000") == MAX_MSAT < 2**63
    with pytest.raises(InvalidArgument, match="at most 21000000 BTC"):
        parse_btc("21000000.00000001")
    assert parse_speed("1000000000000", unit_hs=10**6) == MAX_HS < 2**63
    with pytest.raises(InvalidArgument, match="at most 1 EH/s"):
        parse_speed("1000000000000.000001", unit_hs=10**6)
    with pytest.raises(InvalidArgument, match="at most 1 EH/s"):
        parse_speed("1000000000000001", unit_hs=10**3)


def test_an_event_the_journal_cannot_hold_changes_nothing() -> None:
    # Below the wire's bounds, a command given an absurd integer directly (a caller's bug)
    # fails before its event is applied.
    core = make_core()
    market = core.market
    funded(core, "a", amount_msat=1000)
    market.drain_events()
    with pytest.raises(OverflowError):
        market.deposit(account="a", amount_msat=2**64, now_ms=1)
    assert market.balance("a").available_msat == 1000
    assert market.drain_events() == []
    core.check()


def test_parse_btc_refuses_non_strings() -> None:
    with pytest.raises(InvalidArgument):
        parse_btc(0.1)  # type: ignore[arg-type]


def test_format_btc_truncates_sub_satoshi_toward_zero() -> None:
    assert format_btc(150_000_000) == "0.00150000"
    assert format_btc(0) == "0.00000000"
    assert format_btc(1999) == "0.00000001"
    assert format_btc(999) == "0.00000000"
    assert format_btc(-1999) == "-0.00000001"
    assert format_btc(-999) == "0.00000000"
    assert format_btc(12 * 10**11 + 5) == "12.00000000"
    assert format_btc_exact(1999) == "0.00000001999"
    assert format_btc_exact(-(10**11) - 1) == "-1.00000000001"


@given(st.integers(min_value=0, max_value=MAX_MSAT // 1000))
def test_btc_round_trip_on_whole_satoshis(sats: int) -> None:
    assert parse_btc(format_btc(sats * 1000)) == sats * 1000


@given(st.integers(min_value=-MAX_MSAT, max_value=MAX_MSAT))
def test_format_never_claims_more_than_exists(msat: int) -> None:
    shown = parse_btc(format_btc(abs(msat)))
    assert shown <= abs(msat) < shown + 1000


def test_speeds() -> None:
    assert parse_speed("1.5", unit_hs=10**6) == 1_500_000
    assert parse_speed("0.000001", unit_hs=10**6) == 1
    assert parse_speed("2", unit_hs=10**3) == 2000
    assert format_speed(1_500_000, unit_hs=10**6) == "1.500000"
    assert format_speed(2500, unit_hs=10**3) == "2.500"
    assert format_speed(7, unit_hs=1) == "7"
    for bad in ["0.0000001", "-1", "x", "1e6"]:
        with pytest.raises(InvalidArgument):
            parse_speed(bad, unit_hs=10**6)
    with pytest.raises(ValueError, match="power of ten"):
        format_speed(1, unit_hs=1500)


@given(st.integers(min_value=0, max_value=10**18), st.sampled_from([1, 10**3, 10**6]))
def test_speed_round_trip(hs: int, unit: int) -> None:
    assert parse_speed(format_speed(hs, unit_hs=unit), unit_hs=unit) == hs
