from __future__ import annotations

import re
from collections.abc import Callable

from marketplace.testing import Market
from tests.examples.helpers import run_example


def test_worker_fleet_mines_and_prints_a_summary(hashmarket_factory: Callable[..., Market]) -> None:
    # About a share a second per worker even on a loaded 2-core machine, so both workers of
    # the fleet are sure to have shares within the run.
    market = hashmarket_factory(
        start_difficulty=0.00005,
        min_difficulty=0.00001,
        target_share_interval=1.0,
        rebalance_interval=0.5,
    )
    buyer = market.buyer("buyer", deposit="0.10000000")
    buyer.client.create_order(
        algorithm="sha256d", type="standard", price="0.00100000", limit="0", amount="0.05"
    )
    out = run_example(
        "worker_fleet.py",
        [
            "--url", market.stratum_url("sha256d"),
            "--user", "seller.rig",
            "--fleet", "2",
            "--processes", "1",
            "--duration", "6",
        ],
        buyer.env(market.api_url),
    )  # fmt: skip
    assert "starting 2 workers as seller.rig" in out
    assert "fleet of 2:" in out
    assert re.search(r"^  seller\.rig-1 ", out, re.M)
    assert re.search(r"^  seller\.rig-2 ", out, re.M)
    accepted = re.search(r"^accepted shares: (\d+)$", out, re.M)
    assert accepted is not None
    assert int(accepted.group(1)) > 0
    # The market saw the same workers.
    workers = market.buyer("seller", deposit=None).client.workers().workers
    assert {w.name for w in workers} == {"rig-1", "rig-2"}
    assert sum(w.accepted for w in workers) > 0
