"""``market.history`` and ``account.history`` through a real node: what miners and a buyer did
is in the buckets, and a restart (from the shutdown snapshot, or replaying the whole journal)
answers exactly the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.config import NodeConfig
from tests.clocks import T0, ManualClock
from tests.dashboard.helpers import buyer_and_miner
from tests.marketplace_io.miner import StratumError
from tests.marketplace_io.test_assembly import Api, serving, settings

MINUTE = 60_000


async def _histories(api: Api, clock: ManualClock) -> dict[str, Any]:
    answers = {}
    for resolution in (60, 300, 3600):
        for algorithm in ("sha256d", "scrypt"):
            params = {"algorithm": algorithm, "resolution_s": resolution}
            answers[f"{algorithm}/{resolution}"] = await api.call("market.history", params)
        answers[f"account/{resolution}"] = await api.call(
            "account.history", {"resolution_s": resolution}, signed_at=clock.wall_ms()
        )
    return answers


async def test_history_holds_what_happened_and_a_restart_answers_the_same(tmp_path: Path) -> None:
    clock = ManualClock(T0 // MINUTE * MINUTE)
    config: NodeConfig = settings(tmp_path / "m.db", history_interval=0)
    async with serving(config, clock) as node:
        core = node.core
        async with httpx.AsyncClient() as http:
            async with buyer_and_miner(node, http, clock) as (api, order, miner):
                accepted = 0
                for minute in range(3):
                    assert await core.scheduler.sample() == 2  # both markets: news
                    for _ in range(minute + 2):
                        assert await miner.submit("seller.rig") is True
                        accepted += 1
                    clock.advance(MINUTE)
                job = miner.latest
                params = ["seller.rig", job.job_id, *miner.solve(job)]
                assert await miner.call("mining.submit", params) is True
                with pytest.raises(StratumError) as refused:
                    await miner.call("mining.submit", params)
                assert refused.value.code == 22  # duplicate: a rejected share in the history
                accepted += 1
                await core.scheduler.settle()
            before = await _histories(api, clock)
    points = before["sha256d/60"]["result"]["points"]
    assert [p["shares"] for p in points] == [2, 3, 4, 1]
    # Three sampled minutes, then one without a sample (no price known there).
    assert [p["workers"] for p in points] == [1, 1, 1, 0]
    assert [p["best_price"] for p in points] == ["1.00000000"] * 3 + [None]
    assert [p["fill_price"] for p in points] == ["1.00000000"] * 3 + [None]
    assert [p["rejected_speed"] != "0.000000" for p in points] == [False] * 3 + [True]
    hour = before["sha256d/3600"]["result"]["points"]
    assert sum(p["shares"] for p in hour) == accepted
    assert before["scrypt/60"]["result"]["points"][0]["workers"] == 0
    spent = sum(float(p["spent"]) for p in points)
    account = before["account/60"]["result"]
    assert account["account"] == "buyer"
    assert abs(sum(float(p["spent"]) for p in account["points"]) - spent) < 1e-8
    assert order["id"]
    creds = api.creds
    async with serving(config, clock) as node:
        assert node.core.replayed == 0  # from the shutdown snapshot
        async with httpx.AsyncClient() as http:
            assert await _histories(Api(node, http, creds), clock) == before
    # Without the snapshot: the whole journal replayed gives the same history.
    with sqlite3.connect(config.db) as conn:
        conn.execute("DELETE FROM snapshots")
    async with serving(config, clock) as node:
        assert node.core.replayed > 0
        async with httpx.AsyncClient() as http:
            assert await _histories(Api(node, http, creds), clock) == before
