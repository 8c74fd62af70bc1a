"""Prometheus metrics of a node (dashboard.md), with the official ``prometheus_client``.

Theory of operation
-------------------
Two kinds of figure, kept apart:

- **State** (connections, workers, shares, speeds, prices, orders, money): read at scrape time
  from the same objects the API reads (the market's views, its fleet, the Stratum servers) by
  a custom collector, so ``/metrics`` and ``market.stats`` agree for the same moment and no
  hot path pays anything for them. Share and money counters are the market's all-time totals
  from its durable state: they follow the journal, across restarts too.
- **Latencies** (share acknowledgement, journal commit, API calls): histograms observed where
  they happen, through the observer hooks the drivers expose (``StratumServer
  .share_ack_observer``, ``Journal.commit_observer``, ``RpcService.call_observer``): one
  ``perf_counter`` pair and one ``observe`` per event. The share acknowledgements are one
  observation per batch of a connection's shares (they all waited as long), counted by
  ``_BatchHistogram``: two additions, where a ``Histogram.observe`` per share took two locks.

Each node has its own ``CollectorRegistry``, so several nodes in one process (the tests) do
not collide. A submit refused before subscribe or authorize is no share (there is no worker to
count it for): it is in no share counter, as it is in no API figure.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from marketplace.core.market import Market
from marketplace.core.model import OrderStatus, OrderType
from marketplace.core.money import MSAT_PER_BTC
from marketplace.core.views import MarketViews
from stratum.core.shares import Algorithm

#: The ``result`` label of ``hashmarket_shares_total``; any other reject reason is ``other``.
SHARE_RESULTS: Final = ("accepted", "stale", "duplicate", "low_difficulty", "unauthorized", "other")
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_FAST: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


#: The figures with one value per market: (family, name, help); values from ``_figures``.
_PER_MARKET: Final = (
    (CounterMetricFamily, "hashmarket_accepted_work_hashes", "hashes proven by accepted shares"),
    (
        GaugeMetricFamily,
        "hashmarket_market_speed_hashes_per_second",
        "accepted speed (as market.stats)",
    ),
    (GaugeMetricFamily, "hashmarket_best_price_btc", "highest standard bid (NaN: none)"),
    (GaugeMetricFamily, "hashmarket_fill_price_btc", "cheapest served standard order (NaN: none)"),
    (CounterMetricFamily, "hashmarket_spent_btc", "charged to buyers for accepted shares"),
    (CounterMetricFamily, "hashmarket_fees_btc", "marketplace fees settled"),
)


def _btc(msat: int | None) -> float:
    return float("nan") if msat is None else msat / MSAT_PER_BTC


@dataclass(frozen=True, slots=True)
class MetricSources:
    """What the state figures are read from: the market and its views (with the fleet), the
    node's market time, and the open Stratum connections per algorithm."""

    market: Market
    views: MarketViews
    now_ms: Callable[[], int]
    connections: Callable[[], Mapping[Algorithm, int]]


class _StateCollector(Collector):
    """The state half (see the module doc), read at each scrape."""

    def __init__(self, sources: MetricSources) -> None:
        self._market = sources.market
        self._views = sources.views
        self._now_ms = sources.now_ms
        self._connections = sources.connections

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        market, fleet = self._market, self._views.fleet
        now = self._now_ms()
        connections = GaugeMetricFamily(
            "hashmarket_stratum_connections", "open Stratum connections", labels=["algorithm"]
        )
        for algorithm, count in sorted(self._connections().items()):
            connections.add_metric([algorithm.value], count)
        workers = GaugeMetricFamily(
            "hashmarket_workers",
            "connected workers, serving an order or idle",
            labels=["algorithm", "state"],
        )
        shares = CounterMetricFamily(
            "hashmarket_shares", "shares by result", labels=["algorithm", "result"]
        )
        single = {name: kind(name, text, labels=["algorithm"]) for kind, name, text in _PER_MARKET}
        for algorithm in market.algorithms():
            label = algorithm.value
            idle = len(fleet.inspect(algorithm).idle)
            workers.add_metric([label, "serving"], fleet.connected(algorithm) - idle)
            workers.add_metric([label, "idle"], idle)
            series = market.book.market_stats[algorithm]
            counts = dict.fromkeys(SHARE_RESULTS, 0)
            counts["accepted"] = series.accepted_shares
            for reason, n in series.rejected_shares.items():
                counts[reason if reason in counts else "other"] += n
            for result, n in counts.items():
                shares.add_metric([label, result], n)
            for name, value in self._figures(algorithm, now_ms=now).items():
                single[name].add_metric([label], value)
        yield from (connections, workers, shares, *single.values())
        yield self._orders(market.algorithms())
        yield from self._upstreams(now_ms=now)

    def _figures(self, algorithm: Algorithm, *, now_ms: int) -> dict[str, float]:
        """One market's single-valued figures, by metric name (see ``_PER_MARKET``)."""
        views = self._views
        history = self._market.book.market_history[algorithm]
        best, fill = views.prices(algorithm)
        return {
            "hashmarket_accepted_work_hashes": history.accepted_work_total,
            "hashmarket_market_speed_hashes_per_second": views.market_stats(
                algorithm, now_ms=now_ms
            ).accepted_speed_hs,
            "hashmarket_best_price_btc": _btc(best),
            "hashmarket_fill_price_btc": _btc(fill),
            "hashmarket_spent_btc": _btc(history.spent_msat_total),
            "hashmarket_fees_btc": _btc(history.fees_msat_total),
        }

    def _orders(self, algorithms: list[Algorithm]) -> GaugeMetricFamily:
        orders = GaugeMetricFamily(
            "hashmarket_orders", "orders by type and status", labels=["algorithm", "type", "status"]
        )
        counts = {(a, t, s): 0 for a in algorithms for t in OrderType for s in OrderStatus}
        for order in self._market.book.orders.values():
            key = (order.algorithm, order.type, order.status)
            if key in counts:
                counts[key] += 1
        for (algorithm, kind, status), n in counts.items():
            orders.add_metric([algorithm.value, kind.value, status.value], n)
        return orders

    def _upstreams(self, *, now_ms: int) -> tuple[GaugeMetricFamily, CounterMetricFamily]:
        """The active orders with a pool: their upstream's status and the pool's answers, read
        from the order's ``pool`` object as the API shows it (``rejected`` is the sum of its
        reasons, which are the pool's own words: no label for those)."""
        status = GaugeMetricFamily(
            "hashmarket_upstream_status",
            "upstream session of an order with a pool (1 alive, 0 connecting or dead)",
            labels=["order_id"],
        )
        shares = CounterMetricFamily(
            "hashmarket_upstream_shares",
            "forwarded shares by the pool's answer",
            labels=["order_id", "result"],
        )
        book = self._market.book
        for algorithm in self._market.algorithms():
            for order in book.active[algorithm].values():
                if order.pool_id is None:
                    continue
                pool = self._views.get_order(
                    account=order.account, order_id=order.id, now_ms=now_ms
                ).pool
                if pool is None:
                    continue
                status.add_metric([order.id], 1 if pool.status == "alive" else 0)
                shares.add_metric([order.id, "accepted"], pool.accepted)
                shares.add_metric([order.id, "rejected"], sum(pool.rejected.values()))
        return status, shares


class _BatchHistogram(Collector):
    """A histogram with a label, observed many at a time (``observer``) and exposed at each
    scrape as ``prometheus_client`` exposes its own. Only the trio thread observes and
    collects, so no lock is needed."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._counts: dict[str, list[int]] = {}  # per bucket of ``_FAST``, then +Inf
        self._sums: dict[str, list[float]] = {}

    def observer(self, value: str) -> Callable[[float, int], None]:
        """The function that counts ``count`` observations of ``seconds`` under ``value``."""
        counts = self._counts.setdefault(value, [0] * (len(_FAST) + 1))
        total = self._sums.setdefault(value, [0.0])

        def observe(seconds: float, count: int = 1) -> None:
            counts[bisect.bisect_left(_FAST, seconds)] += count
            total[0] += seconds * count

        return observe

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, counts in sorted(self._counts.items()):
            running, buckets = 0, []
            for bound, count in zip([*map(str, _FAST), "+Inf"], counts, strict=True):
                running += count
                buckets.append((bound, running))
            family.add_metric([value], buckets, self._sums[value][0])
        yield family


class NodeMetrics:
    """A node's registry: the state collector over ``sources`` and the latency histograms
    (see the module doc)."""

    def __init__(self, sources: MetricSources) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StateCollector(sources))
        self.share_ack = _BatchHistogram(
            "hashmarket_share_ack_seconds",
            "mining.submit received to its reply written",
            "algorithm",
        )
        self.registry.register(self.share_ack)
        self.journal_commit = Histogram(
            "hashmarket_journal_commit_seconds",
            "one group commit of the journal",
            buckets=_FAST,
            registry=self.registry,
        )
        self.journal_events = Counter(
            "hashmarket_journal_events", "events committed to the journal", registry=self.registry
        )
        self.api_requests = Counter(
            "hashmarket_api_requests",
            "JSON-RPC calls by method and code (0: a result)",
            ["method", "code"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "hashmarket_api_request_seconds",
            "time to answer one JSON-RPC call",
            ["method"],
            buckets=_FAST,
            registry=self.registry,
        )

    def share_ack_observer(self, algorithm: Algorithm) -> Callable[[float, int], None]:
        """The ``StratumServer.share_ack_observer`` of ``algorithm``'s listener: ``(seconds,
        shares=1)``."""
        return self.share_ack.observer(algorithm.value)

    def observe_commit(self, seconds: float, records: int) -> None:
        """``Journal.commit_observer``: one commit of ``records`` events."""
        self.journal_commit.observe(seconds)
        self.journal_events.inc(records)

    def observe_call(self, method: str, code: int, seconds: float) -> None:
        """``RpcService.call_observer``: one JSON-RPC call."""
        self.api_requests.labels(method, str(code)).inc()
        self.api_seconds.labels(method).observe(seconds)

    def exposition(self) -> bytes:
        """The text exposition of every metric now."""
        return generate_latest(self.registry)
