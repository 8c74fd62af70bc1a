"""The market's snapshot: its durable state as one Struct, and the format that names its shape.

Theory of operation
-------------------
A snapshot is a cache of the fold, never the truth (see ``eventsourced.py``): ``export_book``
copies a ``Book`` into a ``MarketState`` that shares nothing with it, and ``import_book``
builds the ``Book`` that exported it, rebuilding the indexes (accounts' orders, active orders
per market) from the orders themselves. Only durable state is here; connections and the
allocation (``fleet.py``) are not, as they are not in the events.

``SNAPSHOT_FORMAT`` names the shape of ``MarketState`` and every Struct inside it. Change the
shape and bump it: the engine then ignores older snapshots and replays the whole journal, which
gives the same state, only slower.
"""

from __future__ import annotations

from typing import Final

import msgspec

from marketplace.core.book import Book
from marketplace.core.history import HistoryState, export_history, import_history
from marketplace.core.ledger import Ledger, LedgerState
from marketplace.core.model import MarketConfig, MarketRules, SellerKey
from marketplace.core.orders import Order, OrderState
from marketplace.core.stats import Series, SeriesState
from stratum.core.shares import Algorithm

#: Version of ``MarketState``'s shape (see the module doc).
#: 2: the market's and the accounts' history (``history.py``) joined the state.
#: 3: orders with a pool, refunds.
SNAPSHOT_FORMAT: Final = 3


class OrderRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One order and its statistics in a snapshot."""

    order: OrderState
    stats: SeriesState


class SellerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One seller worker's statistics in a snapshot."""

    account: str
    worker: str
    algorithm: Algorithm
    stats: SeriesState


class MarketState(msgspec.Struct, frozen=True, kw_only=True):
    """The market's durable state (what its events rebuild), for snapshots."""

    ledger: LedgerState
    orders: list[OrderRecord]  # in creation order
    unsettled: list[str]  # order ids, in the order the next settlement takes them
    refunds_due: list[str]  # order ids with refunds for the next settlement
    sellers: list[SellerRecord]
    market_stats: dict[Algorithm, SeriesState]
    market_history: dict[Algorithm, HistoryState]
    account_history: dict[str, HistoryState]
    order_seq: int
    withdrawal_seq: int
    settlement_seq: int
    clock_ms: int
    last_settle_ms: int | None
    #: The rules in force, where an operator changed them (absent in older snapshots, which
    #: predate rule changes: the config's rules).
    rules: list[MarketRules] = []


def export_book(book: Book) -> MarketState:
    """A copy of ``book``'s whole state."""
    return MarketState(
        ledger=book.ledger.export_state(),
        orders=[
            OrderRecord(order=order.export_state(), stats=book.order_stats[oid].export_state())
            for oid, order in book.orders.items()
        ],
        unsettled=list(book.unsettled),
        refunds_due=list(book.refunds_due),
        sellers=[
            SellerRecord(
                account=key.account,
                worker=key.worker,
                algorithm=key.algorithm,
                stats=series.export_state(),
            )
            for key, series in book.seller_stats.items()
        ],
        market_stats={a: series.export_state() for a, series in book.market_stats.items()},
        market_history={a: export_history(h) for a, h in book.market_history.items()},
        account_history={a: export_history(h) for a, h in book.account_history.items()},
        order_seq=book.order_seq,
        withdrawal_seq=book.withdrawal_seq,
        settlement_seq=book.settlement_seq,
        clock_ms=book.clock_ms,
        last_settle_ms=book.last_settle_ms,
        rules=[r for a, r in book.rules.items() if r != book.config.markets[a]],
    )


def import_book(state: MarketState, *, config: MarketConfig) -> Book:
    """The ``Book`` that exported ``state``, for a market built with ``config``.

    Raises ``ValueError`` for a state that does not hold together (an unknown order in the
    settlement queue, an order in a market this config does not run), ``ZeroDivisionError``
    for a fraction with a zero denominator.
    """
    book = Book(config=config)
    for record in state.orders:
        order = Order.from_state(record.order)
        if order.algorithm not in book.active:
            raise ValueError(f"order {order.id} is in a market this config does not run")
        book.orders[order.id] = order
        book.orders_of.setdefault(order.account, []).append(order)
        if order.active:
            book.active[order.algorithm][order.id] = order
        book.order_stats[order.id] = Series.from_state(record.stats)
    unknown = [oid for oid in (*state.unsettled, *state.refunds_due) if oid not in book.orders]
    if unknown:
        raise ValueError(f"unsettled orders {unknown[:3]} are not in the snapshot")
    book.ledger = Ledger.from_state(state.ledger, overdraft=(config.fee_account,))
    book.ledger.open(config.fee_account, overdraft=True)
    book.unsettled = {oid: book.orders[oid] for oid in state.unsettled}
    book.refunds_due = {oid: book.orders[oid] for oid in state.refunds_due}
    book.seller_stats = {
        SellerKey(r.account, r.worker, r.algorithm): Series.from_state(r.stats)
        for r in state.sellers
    }
    for algorithm, saved in state.market_stats.items():
        if algorithm in book.market_stats:
            book.market_stats[algorithm] = Series.from_state(saved)
    for algorithm, saved_history in state.market_history.items():
        if algorithm in book.market_history:
            book.market_history[algorithm] = import_history(saved_history)
    book.account_history = {a: import_history(h) for a, h in state.account_history.items()}
    book.order_seq = state.order_seq
    book.withdrawal_seq = state.withdrawal_seq
    book.settlement_seq = state.settlement_seq
    book.clock_ms = state.clock_ms
    book.last_settle_ms = state.last_settle_ms
    for rules in state.rules:
        if rules.algorithm not in book.rules:
            raise ValueError(
                f"rules of {rules.algorithm} are for a market this config does not run"
            )
        book.rules[rules.algorithm] = rules
    return book
