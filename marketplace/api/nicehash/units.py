"""NiceHash's names, units and number habits on this door, in one place.

Theory of operation
-------------------
The door speaks NiceHash's words for our markets and our own units (nicehash-rest.md):

- algorithms ``SHA256`` (and ``SHA256ASICBOOST``, the same market) and ``SCRYPT``; every
  NiceHash market name (``EU``, ``USA``, ``EU_N``, ``USA_E``, ``BTC``) names our one market per
  algorithm, and orders report ``"EU"``; enum values match whatever their case;
- the factors (``marketFactor``/``priceFactor``) are our market's unit, so a ``limit`` is in
  MH/s (sha256d) or kH/s (scrypt) and a ``price`` in BTC per unit per day: the same numbers as
  on the JSON-RPC door;
- requests may send any number as a JSON number or a string; ``decimal_text`` turns either into
  a plain decimal string (``1E-7`` -> ``0.0000001``), and the scale checks refuse a price with
  more than 4 decimals (``PRICE_DATA_SCALE``) and a limit with more than 2
  (``LIMIT_DATA_SCALE``), NiceHash's scales; the value itself is then parsed by
  ``marketplace.core.money`` like any other;
- answers carry decimals as strings, prices with at least 4 decimals and limits with at least 2
  (more only when a JSON-RPC order holds more: nothing is rounded away), amounts with 8, and
  object times as ISO-8601 UTC with microseconds.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Final

from marketplace.api.nicehash.errors import invalid_input
from marketplace.core.money import UNIT_HS, UNIT_NAME, format_btc, format_speed
from stratum.core.shares import Algorithm

#: NiceHash's algorithm names for our markets (``SHA256ASICBOOST`` is accepted as SHA256).
ALGORITHMS: Final[dict[str, Algorithm]] = {
    "SHA256": Algorithm.SHA256D,
    "SHA256ASICBOOST": Algorithm.SHA256D,
    "SCRYPT": Algorithm.SCRYPT,
}
#: The name each market is reported under.
NAME: Final[dict[Algorithm, str]] = {Algorithm.SHA256D: "SHA256", Algorithm.SCRYPT: "SCRYPT"}
TITLE: Final[dict[Algorithm, str]] = {Algorithm.SHA256D: "SHA256", Algorithm.SCRYPT: "Scrypt"}
#: NiceHash's numbering of the algorithms (``order``, buy info's ``algo``): Scrypt 0, SHA256 1.
NUMBER: Final[dict[Algorithm, int]] = {Algorithm.SCRYPT: 0, Algorithm.SHA256D: 1}
#: Listed in NiceHash's order.
LISTED: Final = (Algorithm.SCRYPT, Algorithm.SHA256D)

#: What ``/mining/markets`` lists, and every name a request may use for our one market.
MARKETS: Final = ("EU", "USA")
MARKET_NAMES: Final = frozenset({"EU", "USA", "EU_N", "USA_E", "BTC"})
#: The market every order reports.
ORDER_MARKET: Final = "EU"

PRICE_DECIMALS: Final = 4
LIMIT_DECIMALS: Final = 2


def algorithm(name: str) -> Algorithm:
    """The market of NiceHash algorithm ``name`` (any case). Raises ``NiceHashError`` 2997
    ``Invalid input: ALGORITHM``."""
    found = ALGORITHMS.get(name.upper())
    if found is None:
        raise invalid_input("ALGORITHM")
    return found


def market(name: str) -> str:
    """``name`` checked as a NiceHash market (any case), upper-cased. Raises
    ``NiceHashError`` 2997 ``Invalid input: MARKET``."""
    upper = name.upper()
    if upper not in MARKET_NAMES:
        raise invalid_input("MARKET")
    return upper


def factor(alg: Algorithm) -> str:
    """The market's unit in H/s, as the factors show it (``"1000000"``)."""
    return str(UNIT_HS[alg])


def display_factor(alg: Algorithm) -> str:
    """The unit's name (``"MH"``)."""
    return UNIT_NAME[alg]


def decimal_text(value: decimal.Decimal, *, field: str) -> str:
    """A number a request sent (a JSON number or a string) as a plain decimal string with no
    exponent. Raises ``NiceHashError`` 2997 ``Invalid input: FIELD`` for anything that is no
    finite number at least 0."""
    if not value.is_finite() or value < 0 or abs(value.adjusted()) > 30:
        raise invalid_input(field)
    return format(value, "f")


def same_number(a: str, b: str) -> bool:
    """Whether two decimal strings are the same number (``"1000000"``, ``"1000000.0"``)."""
    return decimal.Decimal(a) == decimal.Decimal(b)


def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def scaled(value: decimal.Decimal, *, field: str, decimals: int) -> str:
    """``decimal_text`` with at most ``decimals`` decimals (trailing zeros do not count).
    Raises ``NiceHashError`` 2997 ``Invalid input: FIELD_DATA_SCALE`` beyond."""
    text = decimal_text(value, field=field)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if _decimals(text) > decimals:
        raise invalid_input(f"{field}_DATA_SCALE")
    return text


def price_in(value: decimal.Decimal) -> str:
    """A request's price as a decimal string (4 decimals at most)."""
    return scaled(value, field="PRICE", decimals=PRICE_DECIMALS)


def limit_in(value: decimal.Decimal) -> str:
    """A request's limit as a decimal string (2 decimals at most)."""
    return scaled(value, field="LIMIT", decimals=LIMIT_DECIMALS)


def amount_in(value: decimal.Decimal) -> str:
    """A request's amount as a decimal string (its 8-decimal rule is ``money``'s)."""
    text = decimal_text(value, field="AMOUNT")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _at_least(text: str, decimals: int) -> str:
    """``text`` (a decimal with trailing zeros) cut to ``decimals`` decimals where only zeros
    go, never losing a digit."""
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(decimals, "0")
    return f"{whole}.{frac}" if frac else whole


def price_out(price_msat: int) -> str:
    """A price: BTC per unit per day with at least 4 decimals (``"0.0100"``)."""
    return _at_least(format_btc(price_msat), PRICE_DECIMALS)


def limit_out(limit_hs: int, alg: Algorithm) -> str:
    """A limit in the market's unit with at least 2 decimals (``"1.50"``)."""
    return _at_least(format_speed(limit_hs, unit_hs=UNIT_HS[alg]), LIMIT_DECIMALS)


def speed_out(speed_hs: int, alg: Algorithm) -> str:
    """A speed in the market's unit, exact (``"1.234567"``)."""
    return format_speed(speed_hs, unit_hs=UNIT_HS[alg])


def amount_out(msat: int) -> str:
    """An amount of BTC with 8 decimals."""
    return format_btc(msat)


def iso(ms: int) -> str:
    """Milliseconds since the epoch as ISO-8601 UTC with microseconds
    (``"2026-11-30T18:50:27.123000Z"``)."""
    moment = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000 * 1000:06d}Z"
