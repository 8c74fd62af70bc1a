"""The share acknowledgement histogram, observed a batch at a time, exposes what
``prometheus_client``'s own Histogram exposes for the same observations one by one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import MarketConfig
from marketplace.core.views import MarketViews
from marketplace.metrics import _FAST, MetricSources, NodeMetrics
from stratum.core.shares import Algorithm


def samples(text: bytes, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith(name) and not sample.name.endswith("_created"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@settings(max_examples=50, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.sampled_from(list(Algorithm)),
            st.one_of(st.floats(0, 5), st.sampled_from(_FAST)),
            st.integers(1, 50),
        ),
        max_size=20,
    )
)
def test_batches_expose_what_one_observation_per_share_exposes(
    batches: list[tuple[Algorithm, float, int]],
) -> None:
    config = MarketConfig()
    market = Market(config=config)
    views = MarketViews(market=market, fleet=Fleet(config=config))
    metrics = NodeMetrics(MetricSources(market, views, lambda: 0, dict))
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "hashmarket_share_ack_seconds",
        "mining.submit received to its reply written",
        ["algorithm"],
        buckets=_FAST,
        registry=reference_registry,
    )
    observers = {a: metrics.share_ack_observer(a) for a in Algorithm}
    for algorithm in Algorithm:
        reference.labels(algorithm.value)
    for algorithm, seconds, shares in batches:
        observers[algorithm](seconds, shares)
        for _ in range(shares):
            reference.labels(algorithm.value).observe(seconds)
    name = "hashmarket_share_ack_seconds"
    ours = samples(metrics.exposition(), name)
    theirs = samples(generate_latest(reference_registry), name)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-9 * max(1.0, abs(value)), key
