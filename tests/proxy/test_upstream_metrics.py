"""dashboard.md's ``hashmarket_upstream_*`` metrics for an order with a real standalone pool:
the status and the pool's answers on ``/metrics`` are what the order's ``pool`` object says."""

from __future__ import annotations

from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from marketplace.metrics import MetricSources, NodeMetrics

from .helpers import ProxyNode, wait_until
from .test_pool_faults import SECOND_BACKOFF
from .test_standalone_upstream import pool_accepted, standalone_order


def upstream_samples(metrics: NodeMetrics) -> dict[tuple[str, ...], float]:
    """The upstream samples of a scrape: (name, order id[, result]) -> value."""
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name.startswith("hashmarket_upstream_"):
                labels = sample.labels
                key = (sample.name, labels["order_id"], *filter(None, [labels.get("result")]))
                found[key] = sample.value
    return found


def node_metrics(node: ProxyNode) -> NodeMetrics:
    return NodeMetrics(
        MetricSources(
            market=node.core.market,
            views=node.views,
            now_ms=node.core.clock.now_ms,
            connections=dict,
        )
    )


async def test_upstream_metrics_follow_the_orders_pool(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    async with standalone_order(tmp_path, nursery, upstream=SECOND_BACKOFF) as (
        node,
        _server,
        _pool,
        order_id,
    ):
        metrics = node_metrics(node)
        status, shares = "hashmarket_upstream_status", "hashmarket_upstream_shares_total"
        assert upstream_samples(metrics) == {
            (status, order_id): 1,
            (shares, order_id, "accepted"): 0,
            (shares, order_id, "rejected"): 0,
        }
        miner = await node.miner("seller.rig1")
        for _ in range(3):
            assert await miner.submit("seller.rig1") is True
        await wait_until(lambda: pool_accepted(node, order_id) == 3)
        found = upstream_samples(metrics)
        pool = node.order(order_id).pool
        assert pool is not None
        assert found[(shares, order_id, "accepted")] == pool.accepted == 3
        assert found[(shares, order_id, "rejected")] == sum(pool.rejected.values()) == 0
        # A dropped upstream is 0 until its session is alive again.
        node.upstreams.drop_all()
        await wait_until(lambda: not node.upstreams.alive(order_id))
        assert upstream_samples(metrics)[(status, order_id)] == 0
        await wait_until(lambda: node.upstreams.alive(order_id))
        assert upstream_samples(metrics)[(status, order_id)] == 1
