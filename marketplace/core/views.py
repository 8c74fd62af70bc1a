"""Read-only views of the marketplace: orders, the order book, statistics, a seller's workers.

Theory of operation
-------------------
A view combines the durable ``Market`` (orders, ledger, statistics rebuilt from the events) with
the ephemeral ``Fleet`` (who serves what right now) into immutable values (``model.py``), so the
API and the dashboard read one consistent picture. Nothing here changes either half, emits an
event or needs ``Engine.execute``: under trio a synchronous read is atomic.

History and now are kept apart. An order's statistics (``order_stats``, the minute points) are
history: they keep the speed it was given until its last share. Its ``accepted_speed_hs`` and
``workers`` are now: the speed it receives is its accepted speed over the recent window while
it is active and holds workers, and 0 the moment it holds none or has ended (a cancelled order
must not show a decaying speed for a minute; the order book shows what is bought now). Times
default to the latest event time (``Market.clock_ms``). An order with a pool shows its
upstream's status now (from the proxy's relays, ``RelayFacts``, ephemeral) beside the pool's
answers over its life (durable).
"""

from __future__ import annotations

from typing import Protocol

from marketplace.core.fleet import Fleet
from marketplace.core.history import History, HistoryPoint
from marketplace.core.market import Market
from marketplace.core.model import (
    MarketStatsView,
    OrderBookEntry,
    OrderBookView,
    OrderStatus,
    OrderType,
    OrderView,
    StatPoint,
    WorkerView,
)
from marketplace.core.order_rules import priority_key
from marketplace.core.orders import Order
from marketplace.core.relay import RelayView
from marketplace.core.stats import Series
from stratum.core.shares import Algorithm


class RelayFacts(Protocol):
    """What the views read of the proxy (``marketplace.upstream`` provides it)."""

    def relay_view(self, order_id: str) -> RelayView | None:
        """The upstream of ``order_id`` now, if its session is running."""
        ...


class MarketViews:
    """The read side of one ``Market`` and its ``Fleet`` (see the module doc)."""

    def __init__(self, market: Market, fleet: Fleet, relays: RelayFacts | None = None) -> None:
        self._market = market
        self._fleet = fleet
        self._relays = relays

    @property
    def fleet(self) -> Fleet:
        """The fleet these views read (what ``Market.fixed_quote`` needs)."""
        return self._fleet

    def _view(self, order: Order, now_ms: int | None) -> OrderView:
        workers = self._fleet.holders(order.algorithm, order.id) if order.active else 0
        speed = 0
        if workers:
            now = self._market.clock_ms if now_ms is None else now_ms
            window = self._market.config.speed_window_ms
            speed = self._market.book.order_stats[order.id].accepted_speed(
                now_ms=now, window_ms=window
            )
        relay = None
        if order.pool_id is not None and self._relays is not None:
            relay = self._relays.relay_view(order.id)
        return order.view(accepted_speed_hs=speed, workers=workers, relay=relay)

    def get_order(self, *, account: str, order_id: str, now_ms: int | None = None) -> OrderView:
        """``account``'s order ``order_id``. Raises ``NotFound`` (also for another account's)."""
        return self._view(self._market.book.owned(account, order_id), now_ms)

    def list_orders(
        self, *, account: str, status: OrderStatus | None = None, now_ms: int | None = None
    ) -> list[OrderView]:
        """``account``'s orders (optionally of one status), oldest first. An unknown account
        has no orders."""
        return [
            self._view(order, now_ms)
            for order in self._market.book.orders_of.get(account, ())
            if status is None or order.status == status
        ]

    def order_stats(
        self, *, account: str, order_id: str, since_ms: int | None, now_ms: int
    ) -> list[StatPoint]:
        """The order's minute points from ``since_ms`` (default and floor: its creation, at
        most 24 h back) to ``now_ms`` (at most its end). Raises ``NotFound``."""
        order = self._market.book.owned(account, order_id)
        start = order.created_ms if since_ms is None else max(since_ms, order.created_ms)
        end = now_ms if order.ended_ms is None else min(now_ms, order.ended_ms)
        series = self._market.book.order_stats[order.id]
        return series.points(since_ms=start, now_ms=max(end, start))

    def orderbook(self, algorithm: Algorithm, *, now_ms: int | None = None) -> OrderBookView:
        """The active orders best first, without owners, and the speed they receive now.
        Raises ``InvalidArgument`` for no such market."""
        self._market.rules(algorithm)
        active = self._market.book.active[algorithm].values()
        entries = []
        for order in sorted(active, key=priority_key):
            view = self._view(order, now_ms)
            entries.append(
                OrderBookEntry(
                    id=view.id,
                    type=view.type,
                    price_msat=view.price_msat,
                    limit_hs=view.limit_hs,
                    accepted_speed_hs=view.accepted_speed_hs,
                    workers=view.workers,
                )
            )
        return OrderBookView(
            algorithm=algorithm,
            total_speed_hs=sum(e.accepted_speed_hs for e in entries),
            orders=entries,
        )

    def market_stats(self, algorithm: Algorithm, *, now_ms: int) -> MarketStatsView:
        """Connected workers, accepted speed, shares/s and rejects of a market. Raises
        ``InvalidArgument`` for no such market."""
        market = self._market
        market.rules(algorithm)
        series = market.book.market_stats[algorithm]
        window = market.config.speed_window_ms
        shares, covered = series.accepted_shares_in(now_ms=now_ms, window_ms=window)
        rejected, _ = series.rejected_shares_in(now_ms=now_ms, window_ms=window)
        return MarketStatsView(
            algorithm=algorithm,
            workers=self._fleet.connected(algorithm),
            accepted_speed_hs=series.accepted_speed(now_ms=now_ms, window_ms=window),
            shares_per_s_milli=shares * 1_000_000 // covered,
            rejected_speed_hs=series.rejected_speed(now_ms=now_ms, window_ms=window),
            rejected_per_s_milli={r: n * 1_000_000 // covered for r, n in rejected.items()},
            rejected=series.rejected_recent(now_ms=now_ms),
            active_orders=len(market.book.active[algorithm]),
            fixed_price_msat=market.fixed_quote(algorithm, fleet=self._fleet),
        )

    def prices(self, algorithm: Algorithm) -> tuple[int | None, int | None]:
        """(best, fill) price of a market now: the highest bid of an active standard order,
        and the price of the cheapest standard order that receives hash power (what a new bid
        must beat to be served, as NiceHash's own bot reads it); ``None`` where there is no
        such order. Raises ``InvalidArgument`` for no such market."""
        self._market.rules(algorithm)
        active = self._market.book.active[algorithm]
        standard = [o for o in active.values() if o.type is OrderType.STANDARD]
        best = max((o.price_msat for o in standard), default=None)
        served = self._market.served_prices(algorithm, fleet=self._fleet)
        return best, min(served, default=None)

    def market_history(
        self, algorithm: Algorithm, *, resolution_s: int, since_ms: int | None, now_ms: int
    ) -> list[HistoryPoint]:
        """A market's history buckets (``History.points``). Raises ``InvalidArgument`` for
        no such market, ``ValueError`` for an unknown resolution."""
        self._market.rules(algorithm)
        history = self._market.book.market_history[algorithm]
        return history.points(resolution_s=resolution_s, since_ms=since_ms, now_ms=now_ms)

    def account_history(
        self, account: str, *, resolution_s: int, since_ms: int | None, now_ms: int
    ) -> list[HistoryPoint]:
        """An account's money per bucket: spent as a buyer, earned as a seller (an account
        with neither has no points). Raises ``ValueError`` for an unknown resolution."""
        history = self._market.book.account_history.get(account) or History()
        return history.points(resolution_s=resolution_s, since_ms=since_ms, now_ms=now_ms)

    def workers_of(self, account: str, *, now_ms: int) -> list[WorkerView]:
        """``account``'s workers as a seller: every (worker name, algorithm) that sent shares
        or is connected, sorted by name then algorithm."""
        stats = self._market.book.seller_stats
        connected = self._fleet.sellers(account)
        sellers = {key for key in stats if key.account == account} | connected.keys()
        window = self._market.config.speed_window_ms
        views = []
        for seller in sorted(sellers):
            series = stats.get(seller) or Series()
            views.append(
                WorkerView(
                    name=seller.worker,
                    algorithm=seller.algorithm,
                    connected=seller in connected,
                    speed_hs=series.accepted_speed(now_ms=now_ms, window_ms=window),
                    difficulty=series.last_difficulty,
                    accepted=series.accepted_shares,
                    rejected=dict(sorted(series.rejected_shares.items())),
                    order_id=connected.get(seller),
                    earned_msat=series.earned_msat,
                )
            )
        return views
