"""The order rules: what refuses a bad order command, and the allocation queue's order.

Theory of operation
-------------------
The ``check_*`` functions hold the market rules (minimums, price-down step and interval, fixed
orders) and raise a ``MarketError`` before any event exists, so a refused command changes
nothing. ``priority_key`` is the allocation queue's order and ``fixed_quote`` the fixed-order
price (market.md, "Allocation" and "Orders").
"""

from __future__ import annotations

from marketplace.core.errors import InvalidArgument, InvalidState, RuleViolation
from marketplace.core.model import MarketRules, OrderType
from marketplace.core.money import MSAT_PER_SAT
from marketplace.core.orders import BPS, Order


def priority_key(order: Order) -> tuple[int, int, int, int]:
    """Sort key of the allocation queue: fixed by creation, then standard by price descending,
    ties by creation (``seq`` breaks ties of equal creation times)."""
    if order.type is OrderType.FIXED:
        return (0, 0, order.created_ms, order.seq)
    return (1, -order.price_msat, order.created_ms, order.seq)


def fixed_quote(rules: MarketRules, *, served_standard_prices: list[int]) -> int:
    """The fixed-order price: the highest price among standard orders receiving hash power,
    plus the premium (10%), rounded up to a whole satoshi (the wire shows 8 decimals, so the
    quote a buyer sees is the quote, and sending it back is accepted), never under the market
    minimum."""
    best = max(served_standard_prices, default=0)
    quote = -(-best * (BPS + rules.fixed_premium_bps) // (BPS * MSAT_PER_SAT)) * MSAT_PER_SAT
    return max(quote, rules.min_price_msat)


def require_int(name: str, value: object) -> int:
    """``value`` if it is an ``int`` (not a bool); else ``InvalidArgument`` naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer", {"field": name})
    return value


def check_amount(rules: MarketRules, amount_msat: int, *, field: str = "amount") -> None:
    """A new order's budget: positive and at least the market minimum."""
    require_int(field, amount_msat)
    if amount_msat <= 0:
        raise InvalidArgument(f"{field} must be positive", {"field": field})
    if amount_msat < rules.min_amount_msat:
        raise RuleViolation(
            f"{field} is under the market minimum",
            {"field": field, "min_msat": rules.min_amount_msat},
        )


def check_price(rules: MarketRules, price_msat: int) -> None:
    """A standard price: positive and at least the market minimum."""
    require_int("price", price_msat)
    if price_msat <= 0:
        raise InvalidArgument("price must be positive", {"field": "price"})
    if price_msat < rules.min_price_msat:
        raise RuleViolation(
            "price is under the market minimum",
            {"field": "price", "min_msat": rules.min_price_msat},
        )


def check_limit(rules: MarketRules, limit_hs: int, *, type: OrderType) -> None:
    """A limit: 0 (no limit, standard orders only) or at least the market minimum."""
    require_int("limit", limit_hs)
    if limit_hs < 0:
        raise InvalidArgument("limit must not be negative", {"field": "limit"})
    if limit_hs == 0 and type is OrderType.FIXED:
        raise RuleViolation("a fixed order needs a limit", {"field": "limit"})
    if 0 < limit_hs < rules.min_limit_hs:
        raise RuleViolation(
            "limit is under the market minimum",
            {"field": "limit", "min_hs": rules.min_limit_hs, "algorithm": rules.algorithm.value},
        )


def check_duration(duration_s: int | None, *, type: OrderType) -> None:
    """Fixed orders need a duration; a given duration is a positive number of seconds."""
    if duration_s is None:
        if type is OrderType.FIXED:
            raise RuleViolation("a fixed order needs duration_s", {"field": "duration_s"})
        return
    require_int("duration_s", duration_s)
    if duration_s <= 0:
        raise InvalidArgument("duration_s must be positive", {"field": "duration_s"})


def check_new_order(
    rules: MarketRules,
    *,
    type: OrderType,
    price_msat: int | None,
    limit_hs: int,
    amount_msat: int,
    duration_s: int | None,
) -> OrderType:
    """A new order's own values against the market's rules (what the allocation says of a
    fixed order is the market's to check); its type."""
    try:
        order_type = OrderType(type)
    except ValueError:
        raise InvalidArgument("type must be standard or fixed", {"field": "type"}) from None
    if order_type is OrderType.STANDARD:
        if price_msat is None:
            raise InvalidArgument("a standard order needs a price", {"field": "price"})
        check_price(rules, price_msat)
    elif price_msat is not None:
        require_int("price", price_msat)
    check_limit(rules, limit_hs, type=order_type)
    check_amount(rules, amount_msat)
    check_duration(duration_s, type=order_type)
    return order_type


def check_active(order: Order) -> None:
    """Raises ``InvalidState`` unless the order is active."""
    if not order.active:
        raise InvalidState(
            f"order {order.id} is {order.status}", {"id": order.id, "status": str(order.status)}
        )


def check_price_change(order: Order, rules: MarketRules, *, price_msat: int, now_ms: int) -> None:
    """Raise any time; lower by at most ``price_down_step_bps`` of the current price, and only
    once per ``price_down_interval_s``. Fixed orders keep their quoted price."""
    check_active(order)
    if order.type is OrderType.FIXED:
        raise InvalidState("a fixed order's price cannot change", {"id": order.id})
    check_price(rules, price_msat)
    if price_msat >= order.price_msat:
        return
    floor = -(-order.price_msat * (BPS - rules.price_down_step_bps) // BPS)
    if price_msat < floor:
        raise InvalidState(
            "price lowered too far",
            {"id": order.id, "min_msat": floor, "step_bps": rules.price_down_step_bps},
        )
    interval_ms = rules.price_down_interval_s * 1000
    if order.last_lowered_ms is not None and now_ms - order.last_lowered_ms < interval_ms:
        raise InvalidState(
            "price lowered too soon",
            {"id": order.id, "retry_at_ms": order.last_lowered_ms + interval_ms},
        )


def check_limit_change(order: Order, rules: MarketRules, *, limit_hs: int) -> None:
    """Standard orders may change their limit while active; fixed orders keep theirs."""
    check_active(order)
    if order.type is OrderType.FIXED:
        raise InvalidState("a fixed order's limit cannot change", {"id": order.id})
    check_limit(rules, limit_hs, type=order.type)
