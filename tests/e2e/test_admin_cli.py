"""``hashmarket admin ...`` and ``hashmarket market time``: the real commands against a real
``serve --control``, signed with the operator key from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from marketplace.testing import Market


def admin(market: Market, *args: str, operator: bool = True) -> tuple[int, Any, str]:
    """Run ``hashmarket ARGS --json``; (exit status, the JSON printed, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHMARKET_")}
    env["HASHMARKET_URL"] = market.api_url
    if operator:
        credentials = market.operator_credentials
        env["HASHMARKET_OPERATOR_KEY_ID"] = credentials.key_id
        env["HASHMARKET_OPERATOR_SECRET"] = credentials.secret
    done = subprocess.run(
        [sys.executable, "-m", "marketplace", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout else None, done.stderr


def test_the_operator_commands(hashmarket: Market) -> None:
    before = hashmarket.operator.market_time()
    status, answer, _ = admin(hashmarket, "admin", "time-advance", "3600")
    assert status == 0
    assert answer["market_time_ms"] >= before + 3_600_000
    status, clock, _ = admin(hashmarket, "market", "time", operator=False)
    assert status == 0
    assert clock["market_time_ms"] - clock["time_ms"] >= 3_600_000 - 5_000

    status, answer, _ = admin(
        hashmarket, "admin", "fault", "set", "--target", "stratum", "--stall", "--seed", "3"
    )
    assert status == 0
    assert answer == {"faults": [{"target": "stratum", "seed": 3, "stall": True}]}
    status, answer, err = admin(hashmarket, "admin", "fault", "set", "--target", "api",
                                "--reject-rate", "0.5")  # fmt: skip
    assert status == 1
    assert "-32602" in err
    assert "reject_rate" in err
    status, answer, _ = admin(hashmarket, "admin", "fault", "clear")
    assert (status, answer) == (0, {"faults": []})
    assert hashmarket.operator.list_faults() == []

    status, _, err = admin(hashmarket, "admin", "workers", operator=False)
    assert status == 1
    assert "4001" in err  # no operator key in the environment
