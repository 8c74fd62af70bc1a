from __future__ import annotations

from pathlib import Path

import trio

from marketplace.client import AsyncMarketClient, Credentials
from tests.examples.helpers import account_env, run_example, running_node


async def test_watch_orderbook_prints_book_and_stats_count_times(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_node(tmp_path) as node:
            env = await account_env(node, "buyer")
            creds = Credentials.from_env(env)
            async with AsyncMarketClient(env["HASHMARKET_URL"], credentials=creds) as client:
                await client.deposit("0.10000000")
                order = await client.create_order(
                    algorithm="sha256d",
                    type="standard",
                    price="0.00123400",
                    limit="0.05",
                    amount="0.01000000",
                )
            public_env = {
                k: v for k, v in env.items() if k not in ("HASHMARKET_KEY_ID", "HASHMARKET_SECRET")
            }
            started = trio.current_time()
            out = await run_example(
                "watch_orderbook.py", ["--interval", "0.5", "--count", "3"], public_env
            )
            elapsed = trio.current_time() - started
    lines = out.splitlines()
    rounds = [line for line in lines if line.startswith("=== round")]
    assert [r.split()[2] for r in rounds] == ["1", "2", "3"]
    assert all("sha256d: 1 orders" in r for r in rounds)
    book_lines = [line for line in lines if line.startswith(order.id)]
    assert len(book_lines) == 3
    assert all("0.00123400" in line and "standard" in line for line in book_lines)
    stats = [line for line in lines if line.startswith("stats ")]
    assert len(stats) == 3
    assert all("active_orders=1" in s and "workers=0" in s for s in stats)
    assert elapsed >= 1.0  # two pauses of --interval between three rounds
