from __future__ import annotations

import re
from pathlib import Path

import trio

from marketplace.client import AsyncMarketClient, Credentials
from stratum.core.shares import Algorithm
from tests.examples.helpers import account_env, run_example, running_node


async def test_worker_fleet_mines_and_prints_a_summary(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with running_node(
            tmp_path,
            # About a share a second per worker even on a loaded 2-core machine, so both
            # workers of the fleet are sure to have shares within the run.
            start_difficulty=0.00005,
            min_difficulty=0.00001,
            target_share_interval=1.0,
            rebalance_interval=0.5,
        ) as node:
            env = await account_env(node, "buyer")
            creds = Credentials.from_env(env)
            async with AsyncMarketClient(env["HASHMARKET_URL"], credentials=creds) as client:
                await client.deposit("0.10000000")
                await client.create_order(
                    algorithm="sha256d",
                    type="standard",
                    price="0.00100000",
                    limit="0",
                    amount="0.05000000",
                )
            port = node.stratum_ports[Algorithm.SHA256D]
            out = await run_example(
                "worker_fleet.py",
                [
                    "--url", f"stratum+tcp://127.0.0.1:{port}",
                    "--user", "seller.rig",
                    "--fleet", "2",
                    "--processes", "1",
                    "--duration", "6",
                ],
                env,
            )  # fmt: skip
            # The market saw the same workers.
            workers = node.core.views.workers_of("seller", now_ms=node.core.clock.now_ms())
    assert "starting 2 workers as seller.rig" in out
    assert "fleet of 2:" in out
    assert re.search(r"^  seller\.rig-1 ", out, re.M)
    assert re.search(r"^  seller\.rig-2 ", out, re.M)
    accepted = int(re.search(r"^accepted shares: (\d+)$", out, re.M).group(1))
    assert accepted > 0
    assert {w.name for w in workers} == {"rig-1", "rig-2"}
    assert sum(w.accepted for w in workers) > 0
