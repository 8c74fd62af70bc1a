"""``GET /metrics`` read with prometheus_client's own parser: the share counters are the
shares a miner got accepted and rejected, the market's speed and prices are what the API says
at the same moment, and the hot paths' histograms have observations."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from marketplace.core.work import share_work
from stratum.core.shares import Algorithm
from tests.clocks import T0, ManualClock
from tests.dashboard.helpers import buyer_and_miner
from tests.marketplace_io.miner import StratumError
from tests.marketplace_io.test_assembly import serving, settings

MH = 10**6


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_metrics_agree_with_the_miners_and_the_api(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    config = settings(tmp_path / "m.db", history_interval=0)
    async with (
        serving(config, clock) as node,
        httpx.AsyncClient() as http,
        buyer_and_miner(node, http, clock) as (api, order, miner),
    ):
        got: dict[str, int] = {}
        work = 0
        for round_ in range(12):
            job = miner.latest
            params = ["seller.rig", job.job_id, *miner.solve(job, valid=round_ != 5)]
            for _ in range(2 if round_ % 4 == 0 else 1):  # every 4th share sent twice
                try:
                    result = await miner.call("mining.submit", params)
                except StratumError as error:
                    reason = {22: "duplicate", 23: "low_difficulty"}[error.code]
                    got[reason] = got.get(reason, 0) + 1
                else:
                    assert result is True
                    got["accepted"] = got.get("accepted", 0) + 1
                    work += share_work(job.difficulty, Algorithm.SHA256D)
            clock.advance(500)
        assert got == {"accepted": 11, "duplicate": 3, "low_difficulty": 1}
        refused = await api.call("account.balance", signed_at=clock.wall_ms() - 10**7)
        assert refused["error"]["code"] == 4008
        stats = (await api.call("market.stats", {"algorithm": "sha256d"}))["result"]
        book = (await api.call("market.orderbook", {"algorithm": "sha256d"}))["result"]
        with trio.fail_after(10):
            response = await http.get(f"http://127.0.0.1:{node.api_port}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        found = samples(response.text)
        mine = await api.call("order.get", {"id": order["id"]}, signed_at=clock.wall_ms())
    sha = {"algorithm": "sha256d"}
    for result in ("accepted", "duplicate", "low_difficulty"):
        assert value(found, "hashmarket_shares_total", result=result, **sha) == got[result]
    for result in ("stale", "unauthorized", "other"):
        assert value(found, "hashmarket_shares_total", result=result, **sha) == 0
    assert value(found, "hashmarket_shares_total", algorithm="scrypt", result="accepted") == 0
    speed_hs = Decimal(stats["accepted_speed"]) * MH
    assert value(found, "hashmarket_market_speed_hashes_per_second", **sha) == speed_hs
    assert speed_hs > 0
    assert value(found, "hashmarket_accepted_work_hashes_total", **sha) == work
    assert value(found, "hashmarket_stratum_connections", **sha) == 1
    assert value(found, "hashmarket_workers", state="serving", **sha) == stats["workers"] == 1
    assert value(found, "hashmarket_workers", state="idle", **sha) == 0
    assert value(found, "hashmarket_best_price_btc", **sha) == float(book["orders"][0]["price"])
    assert value(found, "hashmarket_fill_price_btc", **sha) == 1.0
    active = {"type": "standard", "status": "active", **sha}
    assert value(found, "hashmarket_orders", **active) == len(book["orders"]) == 1
    spent = value(found, "hashmarket_spent_btc_total", **sha)
    assert spent == pytest.approx(float(mine["result"]["spent"]), abs=1e-8)
    assert spent > 0
    # The hot paths' histograms: every share acknowledged, commits, API calls by method.
    shares_sent = sum(got.values())
    assert value(found, "hashmarket_share_ack_seconds_count", **sha) == shares_sent
    assert value(found, "hashmarket_share_ack_seconds_sum", **sha) > 0
    assert value(found, "hashmarket_journal_commit_seconds_count") > 0
    assert value(found, "hashmarket_journal_events_total") >= shares_sent
    assert value(found, "hashmarket_api_request_seconds_count", method="market.stats") == 1
    assert value(found, "hashmarket_api_requests_total", method="order.create", code="0") == 1
    assert value(found, "hashmarket_api_requests_total", method="account.balance", code="4008") == 1
