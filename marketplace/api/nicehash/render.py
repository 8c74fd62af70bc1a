"""The market's views as NiceHash's objects: orders, balances, the book, the algorithms.

Theory of operation
-------------------
Pure functions from the read side of the market (``marketplace.core.views`` and the market's
rules, in msat and H/s) to the door's answer Structs (``wire.py``), through ``units.py``. An
order is what JSON-RPC's ``order.get`` shows under NiceHash's names: ``payedAmount`` its spend,
``availableAmount`` what is left of its budget, ``rigsCount`` its workers, ``alive`` whether it
can take hash power now; its status is NiceHash's code for ours.
"""

from __future__ import annotations

from typing import Final

from marketplace.api.nicehash import units
from marketplace.api.nicehash.wire import (
    AlgorithmRefOut,
    BuyInfoAlgorithmOut,
    CodeOut,
    MiningAlgorithmOut,
    OrderOut,
    PoolOut,
)
from marketplace.api.wire import PoolVerifyOut
from marketplace.core.model import MarketRules, OrderStatus, OrderType, OrderView
from marketplace.core.money import MAX_HS, MAX_MSAT, MSAT_PER_BTC, UNIT_HS
from marketplace.core.pools import PoolView
from stratum.core.shares import Algorithm

_STATUS: Final[dict[OrderStatus, CodeOut]] = {
    OrderStatus.ACTIVE: CodeOut(code="ACTIVE", description="Active"),
    OrderStatus.COMPLETED: CodeOut(code="COMPLETED", description="Completed"),
    OrderStatus.CANCELLED: CodeOut(code="CANCELLED", description="Cancelled"),
    OrderStatus.EXPIRED: CodeOut(code="EXPIRED", description="Expired"),
}
_TYPE: Final[dict[OrderType, CodeOut]] = {
    OrderType.STANDARD: CodeOut(code="STANDARD", description="Standard"),
    OrderType.FIXED: CodeOut(code="FIXED", description="Fixed"),
}
_DEAD: Final = CodeOut(code="DEAD", description="Dead")
#: The status codes a ``myOrders`` filter may name.
STATUS_CODES: Final = frozenset({*(c.code for c in _STATUS.values()), _DEAD.code})

#: One price tick at this door's scale, as the step a bot may lower by (our own rule is
#: relative: ``price_down_step_bps`` of the price, see the README).
PRICE_DOWN_STEP: Final = "-0.0001"
#: No market here asks a minimum difficulty of a buyer's pool.
MIN_POOL_DIFFICULTY: Final = "0"
_MARKETS_TEXT: Final = ", ".join(units.MARKETS)
_TICK_MSAT: Final = MSAT_PER_BTC // 10**units.PRICE_DECIMALS


def algorithm_ref(alg: Algorithm) -> AlgorithmRefOut:
    """The short algorithm object an order carries."""
    return AlgorithmRefOut(
        algorithm=units.NAME[alg], title=units.TITLE[alg], enabled=True, order=units.NUMBER[alg]
    )


def min_price(rules: MarketRules) -> str:
    """The market's minimum price as the lowest price this door can send that meets it."""
    ticks = -(-rules.min_price_msat // _TICK_MSAT)
    return units.price_out(ticks * _TICK_MSAT)


def mining_algorithm(rules: MarketRules, *, port: int | None) -> MiningAlgorithmOut:
    """One entry of ``/mining/algorithms``: factors, minimums and the Stratum port."""
    alg = rules.algorithm
    factor, display = units.factor(alg), units.display_factor(alg)
    return MiningAlgorithmOut(
        algorithm=units.NAME[alg],
        title=units.TITLE[alg],
        enabled=True,
        order=units.NUMBER[alg],
        display_mining_factor=display,
        mining_factor=factor,
        display_market_factor=display,
        market_factor=factor,
        display_price_factor=display,
        price_factor=factor,
        minimal_order_amount=units.amount_out(rules.min_amount_msat),
        min_speed_limit=units.limit_out(rules.min_limit_hs, alg),
        max_speed_limit=units.limit_out(MAX_HS, alg),
        price_down_step=PRICE_DOWN_STEP,
        minimal_pool_difficulty=MIN_POOL_DIFFICULTY,
        port=port,
        orders_enabled=True,
        enabled_markets=_MARKETS_TEXT,
    )


def buy_info(rules: MarketRules) -> BuyInfoAlgorithmOut:
    """One entry of ``/public/buy/info``."""
    alg = rules.algorithm
    return BuyInfoAlgorithmOut(
        algo=units.NUMBER[alg],
        name=units.TITLE[alg],
        speed_text=units.display_factor(alg),
        multi="1",
        down_step=PRICE_DOWN_STEP,
        min_price=min_price(rules),
        max_price=units.price_out(MAX_MSAT),
        min_limit=units.limit_out(rules.min_limit_hs, alg),
        max_limit=units.limit_out(MAX_HS, alg),
        min_amount=units.amount_out(rules.min_amount_msat),
        min_diff_initial=MIN_POOL_DIFFICULTY,
        min_diff_working=MIN_POOL_DIFFICULTY,
        enabled_hashpower_markets=list(units.MARKETS),
    )


def estimate_s(view: OrderView) -> int:
    """Seconds until the order's budget is spent at the speed it receives now (0: none)."""
    if view.status is not OrderStatus.ACTIVE or not view.accepted_speed_hs or not view.price_msat:
        return 0
    # msat per second = price (msat per unit per day) * speed (H/s) / (unit * 86400)
    per_day = view.price_msat * view.accepted_speed_hs
    return view.remaining_msat * UNIT_HS[view.algorithm] * 86_400 // per_day


def pool(view: PoolView, *, verified: bool) -> PoolOut:
    """A pool as NiceHash shows it (``verified``: its settings passed ``pools/verify``)."""
    return PoolOut(
        id=view.id,
        name=view.name,
        algorithm=units.NAME[view.algorithm],
        stratum_hostname=view.host,
        stratum_port=view.port,
        username=view.username,
        password="",
        status="VERIFIED" if verified else "NOT_VERIFIED",
        updated_ts=units.iso(view.updated_ms or view.created_ms),
        in_moratorium=False,
    )


def verify_logs(found: PoolVerifyOut) -> list[str]:
    """What ``pool.verify`` found, as NiceHash's verifier's log lines."""
    lines = [f"stage: {found.stage}"]
    if found.extranonce1 is not None:
        lines.append(
            f"extranonce1: {found.extranonce1}, extranonce2_size: {found.extranonce2_size}"
        )
    if found.difficulty is not None:
        lines.append(f"difficulty: {found.difficulty:g}")
    if found.version_rolling is not None:
        lines.append(f"version rolling mask: {found.version_rolling}")
    if found.latency_ms is not None:
        lines.append(f"latency: {found.latency_ms} ms")
    lines.append("verification passed" if found.ok else f"verification failed: {found.error}")
    return lines


def order(view: OrderView, *, pool: PoolOut | None, now_ms: int) -> OrderOut:
    """An order as NiceHash shows it (see the module doc); ``pool`` is its pool's object."""
    alg = view.algorithm
    factor, display = units.factor(alg), units.display_factor(alg)
    active = view.status is OrderStatus.ACTIVE
    link = None if view.pool is None else view.pool.status
    status = _DEAD if active and link == "dead" else _STATUS[view.status]
    estimate = estimate_s(view)
    if view.ended_ms is not None:
        end_ms: int | None = view.ended_ms
    elif view.ends_ms is not None:
        end_ms = view.ends_ms
    else:
        end_ms = now_ms + estimate * 1000 if estimate else None
    return OrderOut(
        id=view.id,
        request_id=view.request_id,
        available_amount=units.amount_out(view.remaining_msat),
        payed_amount=units.amount_out(view.spent_msat),
        amount=units.amount_out(view.amount_msat),
        price=units.price_out(view.price_msat),
        limit=units.limit_out(view.limit_hs, alg),
        accepted_current_speed=units.speed_out(view.accepted_speed_hs, alg),
        rigs_count=view.workers,
        alive=active and link in (None, "alive"),
        market=units.ORDER_MARKET,
        algorithm=algorithm_ref(alg),
        type=_TYPE[view.type],
        status=status,
        display_market_factor=display,
        market_factor=factor,
        display_price_factor=display,
        price_factor=factor,
        pool=pool,
        start_ts=units.iso(view.created_ms),
        end_ts=None if end_ms is None else units.iso(end_ms),
        created_ts=units.iso(view.created_ms),
        updated_ts=units.iso(view.updated_ms or view.created_ms),
        estimate_duration_in_seconds=estimate,
    )
