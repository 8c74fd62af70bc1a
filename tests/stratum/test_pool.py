"""The standalone pool: jobs every job_interval, clean_jobs on emulated blocks; config loading."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from stratum.config import StratumConfig, load_config
from stratum.core.shares import Algorithm

from .helpers import TEST_CONFIG, connect, start_pool


async def test_jobs_every_interval_and_clean_on_blocks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    config = msgspec.structs.replace(TEST_CONFIG, job_interval_s=30.0, block_interval_s=100.0)
    _, pool, listeners = await start_pool(nursery, config)
    miner = await connect(listeners)
    miner.timeout = 100.0
    await miner.login()
    start = trio.current_time()
    arrivals = []
    for _ in range(12):
        notify = await miner.read_until("mining.notify")
        arrivals.append((round(trio.current_time() - start, 3), notify["params"][8]))
    gaps = [b[0] - a[0] for a, b in zip([(0.0, True), *arrivals], arrivals, strict=False)]
    assert max(gaps) <= 30.0 + 1e-6  # never longer than job_interval
    assert [t for t, clean in arrivals if clean] == [100.0, 200.0, 300.0]
    assert pool.stats.blocks == 3
    # Shares of the current job are accepted after a block.
    assert (await miner.submit(miner.share()))["result"] is True


def test_config_defaults_and_validation() -> None:
    config = StratumConfig()
    assert config.idle_timeout_s == 600
    assert config.subscribe_timeout_s == 30
    assert config.job_interval_s == 30
    assert config.block_interval_s == 600
    assert config.target_share_interval_s == 10
    assert config.max_consecutive_rejects == 50
    assert config.stale_grace_s == 0
    bounds = config.difficulty_bounds()
    assert bounds.start == 0.001
    assert StratumConfig(algorithm=Algorithm.SCRYPT).difficulty_bounds().start == 0.05
    with pytest.raises(ValueError, match="min_difficulty"):
        StratumConfig(start_difficulty=1.0, max_difficulty=0.5)
    with pytest.raises(ValueError, match="120"):
        StratumConfig(job_interval_s=150)


def test_load_config_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "stratum.toml"
    toml.write_text('[stratum]\nport = 4000\njob_interval_s = 20.0\nalgorithm = "scrypt"\n')
    environ = {"HASHMARKET_STRATUM_PORT": "5000", "HASHMARKET_STRATUM_IDLE_TIMEOUT_S": "60"}
    config = load_config(
        cli={"job_interval_s": 15.0, "host": None}, toml_path=toml, environ=environ
    )
    assert config.port == 4000  # TOML over environment
    assert config.job_interval_s == 15.0  # flags over TOML
    assert config.idle_timeout_s == 60.0  # environment over defaults
    assert config.algorithm is Algorithm.SCRYPT
    assert config.host == "127.0.0.1"
    with pytest.raises(msgspec.ValidationError):
        load_config(cli={"no_such_knob": 1})
