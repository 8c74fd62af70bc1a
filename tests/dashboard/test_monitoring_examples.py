"""examples/prometheus.yml and examples/grafana-dashboard.json are over the names a node's
/metrics exposes, and /metrics has every metric dashboard.md names (but the proxy's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from marketplace.config import NodeConfig
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import MarketConfig
from marketplace.core.views import MarketViews
from marketplace.metrics import MetricSources, NodeMetrics

ROOT = Path(__file__).resolve().parents[2]
#: dashboard.md's metrics.
SPEC = {
    "hashmarket_stratum_connections",
    "hashmarket_workers",
    "hashmarket_shares_total",
    "hashmarket_accepted_work_hashes_total",
    "hashmarket_market_speed_hashes_per_second",
    "hashmarket_best_price_btc",
    "hashmarket_fill_price_btc",
    "hashmarket_orders",
    "hashmarket_spent_btc_total",
    "hashmarket_fees_btc_total",
    "hashmarket_share_ack_seconds",
    "hashmarket_journal_commit_seconds",
    "hashmarket_journal_events_total",
    "hashmarket_api_requests_total",
    "hashmarket_api_request_seconds",
    "hashmarket_upstream_status",
    "hashmarket_upstream_shares_total",
}


def exposed() -> set[str]:
    """Every sample name a node's /metrics has (families and their suffixed samples)."""
    market = Market(config=MarketConfig())
    views = MarketViews(market, Fleet(config=market.config))
    metrics = NodeMetrics(
        MetricSources(market=market, views=views, now_ms=lambda: 0, connections=dict)
    )
    metrics.observe_commit(0.001, 1)
    metrics.observe_call("market.stats", 0, 0.001)
    for algorithm in market.algorithms():
        metrics.share_ack_observer(algorithm)(0.001)
    names = set()
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":  # its samples' name, also while it has none (no pool order)
            names.add(f"{family.name}_total")
    return names


def test_metrics_has_every_metric_the_spec_names() -> None:
    assert exposed() >= SPEC


def test_the_grafana_dashboard_and_the_scrape_config_use_those_names() -> None:
    names = exposed()
    dashboard = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"hashmarket_[a-z_]+", expr)}
    assert used, "the dashboard queries nothing"
    assert used <= names, used - names
    assert {"hashmarket_share_ack_seconds_bucket", "hashmarket_shares_total"} <= used
    scrape = (ROOT / "examples" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in scrape
    assert f'"127.0.0.1:{NodeConfig().api_port}"' in scrape  # the API port's default
