"""Changing a market's rules from now on: what an operator may change, and the checks.

Theory of operation
-------------------
A market starts with the rules of its ``MarketConfig`` (the node's settings). An operator may
change some of them while it runs (``admin.market.rules``, control.md): the minimums a new
order or a new price must meet, the price-down rule and the fee. A ``RuleChange`` names only
the fields it changes; ``Market.change_rules`` checks it here and emits ``RulesChanged``, which
the fold applies on top of the rules in force (``Book.rules``), so the change is journaled,
replayed and snapshotted like any other, and takes effect from the moment it was made: orders
placed before keep their price and limit, the next lowering obeys the new step and interval,
the next settlement takes the new fee. The unit, the start estimate and the fixed premium are
the market's nature, not its rules, and do not change.
"""

from __future__ import annotations

from typing import Final

import msgspec

from marketplace.core.errors import InvalidArgument
from marketplace.core.model import MarketRules
from marketplace.core.money import MAX_HS, MAX_MSAT

BPS: Final = 10_000
#: The longest price-down interval a rule may set (a year).
MAX_INTERVAL_S: Final = 365 * 86_400


class RuleChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The rules an operator changes (``None``: unchanged), in the market's internal units."""

    min_price_msat: int | None = None
    min_limit_hs: int | None = None
    min_amount_msat: int | None = None
    price_down_step_bps: int | None = None
    price_down_interval_s: int | None = None
    fee_bps: int | None = None


#: Each changeable field and the range it must be in.
_BOUNDS: Final = {
    "min_price_msat": (1, MAX_MSAT),
    "min_limit_hs": (1, MAX_HS),
    "min_amount_msat": (1, MAX_MSAT),
    "price_down_step_bps": (0, BPS),
    "price_down_interval_s": (0, MAX_INTERVAL_S),
    "fee_bps": (0, BPS),
}


def check_change(change: RuleChange) -> RuleChange:
    """``change`` if it changes at least one rule, each within its range; otherwise raises
    ``InvalidArgument`` naming the field."""
    given = msgspec.structs.asdict(change)
    if all(value is None for value in given.values()):
        raise InvalidArgument("no rule to change", {"field": "rules"})
    for name, value in given.items():
        if value is None:
            continue
        low, high = _BOUNDS[name]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InvalidArgument(
                f"{name} must be an integer from {low} to {high}", {"field": name}
            )
    return change


def changed(rules: MarketRules, change: RuleChange) -> MarketRules:
    """``rules`` with ``change`` applied (fields it leaves ``None`` kept)."""
    updates = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not None}
    return msgspec.structs.replace(rules, **updates)
