"""Conversions between the wire's decimal strings and the integers used inside.

Theory of operation
-------------------
Inside the marketplace money is an integer number of millisatoshi (``msat``; 1 BTC = 10**11
msat) and speed an integer number of H/s. The wire speaks decimal strings: BTC with at most 8
decimals, speeds in the market's unit (``MH`` = 10**6 H/s for sha256d, ``kH`` = 10**3 H/s for
scrypt). This module is the only place where one becomes the other, with no binary floating
point anywhere: strings are parsed with a regular expression into integers.

Display of sub-satoshi amounts: ``format_btc`` shows 8 decimals and truncates toward zero, so
``1999`` msat shows as ``"0.00000001"`` and ``-1999`` as ``"-0.00000001"``; a displayed amount
never claims more (in absolute value) than exists. ``format_btc_exact`` shows all 11 decimals
for places (logs, ledgers) that must not lose anything.
"""

from __future__ import annotations

import re
from typing import Final

from marketplace.core.errors import InvalidArgument
from stratum.core.shares import Algorithm

MSAT_PER_BTC: Final = 10**11
MSAT_PER_SAT: Final = 1000
BTC_DECIMALS: Final = 8

#: Speed unit of each market, in H/s, and its name on the wire.
UNIT_HS: Final[dict[Algorithm, int]] = {Algorithm.SHA256D: 10**6, Algorithm.SCRYPT: 10**3}
UNIT_NAME: Final[dict[Algorithm, str]] = {Algorithm.SHA256D: "MH", Algorithm.SCRYPT: "kH"}

_DECIMAL = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?")
# Refuse absurd inputs before turning them into integers (about 10**15 BTC is plenty).
_MAX_DIGITS: Final = 30
#: The largest amount or price the wire accepts: every bitcoin there will ever be. Journal
#: records hold 64-bit integers, so anything bigger could not be journaled.
MAX_MSAT: Final = 21_000_000 * MSAT_PER_BTC
#: The largest speed the wire accepts: 1 EH/s, far above any CPU market (and within 64 bits).
MAX_HS: Final = 10**18


def _parse_decimal(text: object, *, decimals: int, what: str) -> int:
    """``text`` as an integer count of ``10**-decimals``; refuses sign, junk, extra decimals."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be a decimal string", {"value": repr(text)[:64]})
    match = _DECIMAL.fullmatch(text)
    if match is None or len(text) > _MAX_DIGITS:
        raise InvalidArgument(
            f"{what} must be a non-negative decimal string like '0.00150000'",
            {"value": text[:64]},
        )
    frac = match.group("frac") or ""
    if len(frac) > decimals:
        raise InvalidArgument(
            f"{what} has more than {decimals} decimals", {"value": text, "max_decimals": decimals}
        )
    scale: int = 10**decimals
    return int(match.group("int")) * scale + int(frac.ljust(decimals, "0") or "0")


def parse_btc(text: str) -> int:
    """A BTC decimal string (at most 8 decimals, no sign) as msat.

    Raises ``InvalidArgument`` for a negative value, more than 8 decimals, more than
    ``MAX_MSAT``, or anything that is not a plain decimal string (exponents, spaces, ``NaN``...).
    """
    msat = _parse_decimal(text, decimals=BTC_DECIMALS, what="amount") * MSAT_PER_SAT
    if msat > MAX_MSAT:
        raise InvalidArgument(
            "amount must be at most 21000000 BTC", {"value": text[:64], "max": "21000000"}
        )
    return msat


def format_btc(msat: int) -> str:
    """msat as a BTC string with exactly 8 decimals, truncated toward zero (see module doc)."""
    sign = "-" if msat < 0 else ""
    sats = abs(msat) // MSAT_PER_SAT
    if sign and sats == 0:
        sign = ""
    whole, frac = divmod(sats, 10**BTC_DECIMALS)
    return f"{sign}{whole}.{frac:08d}"


def format_btc_exact(msat: int) -> str:
    """msat as a BTC string with all 11 decimals: nothing is lost."""
    sign = "-" if msat < 0 else ""
    whole, frac = divmod(abs(msat), MSAT_PER_BTC)
    return f"{sign}{whole}.{frac:011d}"


def _unit_decimals(unit_hs: int) -> int:
    decimals = len(str(unit_hs)) - 1
    if unit_hs <= 0 or 10**decimals != unit_hs:
        raise ValueError(f"unit must be a power of ten, not {unit_hs}")
    return decimals


def parse_speed(text: str, *, unit_hs: int) -> int:
    """A speed in the market's unit (``"1.5"`` MH/s) as integer H/s.

    At most as many decimals as make whole H/s (6 for MH, 3 for kH). Raises ``InvalidArgument``
    for a negative value, too many decimals, more than ``MAX_HS`` or junk.
    """
    hs = _parse_decimal(text, decimals=_unit_decimals(unit_hs), what="speed")
    if hs > MAX_HS:
        raise InvalidArgument(
            "speed must be at most 1 EH/s",
            {"value": text[:64], "max": format_speed(MAX_HS, unit_hs=unit_hs)},
        )
    return hs


def format_speed(hs: int, *, unit_hs: int) -> str:
    """Integer H/s as an exact decimal string in the unit (``1500000`` -> ``"1.500000"``)."""
    decimals = _unit_decimals(unit_hs)
    sign = "-" if hs < 0 else ""
    whole, frac = divmod(abs(hs), unit_hs)
    if decimals == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{decimals}d}"
