"""The wire objects of the market's history and of its live feed (dashboard.md).

Theory of operation
-------------------
``market.history`` and ``account.history`` read the minute and hour buckets the market keeps
in its durable state (``marketplace.core.history``); ``GET /events`` sends one
``MarketEventOut`` per market per second. Like ``wire.py`` (whose helpers it uses), this is
where inside units become strings: BTC with 8 decimals, speeds in the market's unit, a price
that does not exist (no order bids, none is served) as ``null``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from marketplace.api.wire import (
    BookOrderOut,
    MarketStatsOut,
    OrderBookOut,
    TimeMs,
    _Params,
    _Result,
)
from marketplace.core.history import HistoryPoint
from marketplace.core.money import UNIT_HS, UNIT_NAME, format_btc, format_speed
from stratum.core.shares import Algorithm

Resolution = Literal[60, 300, 3600]
AccountName = Annotated[str, Meta(min_length=1, max_length=64)]


class MarketHistoryParams(_Params, frozen=True):
    algorithm: Algorithm
    since_ms: TimeMs | None = None
    resolution_s: Resolution = 60


class AccountHistoryParams(_Params, frozen=True):
    since_ms: TimeMs | None = None
    resolution_s: Resolution = 60


class HistoryPointOut(_Result, frozen=True):
    time_ms: int
    accepted_speed: str
    rejected_speed: str
    shares: int
    workers: int
    best_price: str | None
    fill_price: str | None
    spent: str


class MarketHistoryOut(_Result, frozen=True):
    algorithm: Algorithm
    unit: str
    resolution_s: int
    points: list[HistoryPointOut]


class AccountHistoryPointOut(_Result, frozen=True):
    time_ms: int
    spent: str
    earned: str


class AccountHistoryOut(_Result, frozen=True):
    account: AccountName
    resolution_s: int
    points: list[AccountHistoryPointOut]


class MarketEventOut(_Result, frozen=True):
    """One ``market`` event of ``GET /events``: the market now, as ``market.stats`` and
    ``market.orderbook`` would answer at the same moment."""

    algorithm: Algorithm
    unit: str
    time_ms: int
    accepted_speed: str
    workers: int
    shares_per_s: str
    rejected_per_s: dict[str, str]
    best_price: str | None
    fill_price: str | None
    total_speed: str
    orders: list[BookOrderOut]


def _price(msat: int | None) -> str | None:
    return None if msat is None else format_btc(msat)


def market_history_out(
    algorithm: Algorithm, *, resolution_s: int, points: list[HistoryPoint]
) -> MarketHistoryOut:
    unit_hs = UNIT_HS[algorithm]
    return MarketHistoryOut(
        algorithm=algorithm,
        unit=UNIT_NAME[algorithm],
        resolution_s=resolution_s,
        points=[
            HistoryPointOut(
                time_ms=p.time_ms,
                accepted_speed=format_speed(p.accepted_speed_hs, unit_hs=unit_hs),
                rejected_speed=format_speed(p.rejected_speed_hs, unit_hs=unit_hs),
                shares=p.shares,
                workers=p.workers,
                best_price=_price(p.best_price_msat),
                fill_price=_price(p.fill_price_msat),
                spent=format_btc(p.spent_msat),
            )
            for p in points
        ],
    )


def account_history_out(
    account: str, *, resolution_s: int, points: list[HistoryPoint]
) -> AccountHistoryOut:
    return AccountHistoryOut(
        account=account,
        resolution_s=resolution_s,
        points=[
            AccountHistoryPointOut(
                time_ms=p.time_ms, spent=format_btc(p.spent_msat), earned=format_btc(p.earned_msat)
            )
            for p in points
        ],
    )


def market_event_out(
    *,
    stats: MarketStatsOut,
    book: OrderBookOut,
    best_price_msat: int | None,
    fill_price_msat: int | None,
    time_ms: int,
) -> MarketEventOut:
    """The live event made of what ``market.stats`` and ``market.orderbook`` answer."""
    return MarketEventOut(
        algorithm=stats.algorithm,
        unit=stats.unit,
        time_ms=time_ms,
        accepted_speed=stats.accepted_speed,
        workers=stats.workers,
        shares_per_s=stats.shares_per_s,
        rejected_per_s=dict(stats.rejected_per_s),
        best_price=_price(best_price_msat),
        fill_price=_price(fill_price_msat),
        total_speed=book.total_speed,
        orders=list(book.orders),
    )
