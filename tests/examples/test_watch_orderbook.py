from __future__ import annotations

import time

from marketplace.testing import Market
from tests.examples.helpers import run_example


def test_watch_orderbook_prints_book_and_stats_count_times(hashmarket: Market) -> None:
    buyer = hashmarket.buyer("buyer", deposit="0.10000000")
    order = buyer.client.create_order(
        algorithm="sha256d", type="standard", price="0.00123400", limit="0.05", amount="0.01"
    )
    public = {
        k: v
        for k, v in buyer.env(hashmarket.api_url).items()
        if k not in ("HASHMARKET_KEY_ID", "HASHMARKET_SECRET")
    }
    started = time.monotonic()
    out = run_example("watch_orderbook.py", ["--interval", "0.5", "--count", "3"], public)
    elapsed = time.monotonic() - started
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
