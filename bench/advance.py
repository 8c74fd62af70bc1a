"""How long an operator's advance of market time takes (``admin.time.advance``).

A real node (the assembly, with ``--control``, on a temporary database) with ORDERS standard
orders of distinct durations, each holding a share's worth of spend to settle; then one advance
of 400 days, which steps through every order's end, settles, and catches the bridges up, all
journaled with FULL synchronous commits. Prints the wall time of the advance and of a second
advance of a day over the ended market.

    python bench/advance.py [--orders 1000]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import trio

from marketplace.assembly import Node, run_node
from marketplace.config import NodeConfig
from marketplace.core.model import OrderType
from stratum.core.shares import Algorithm

DAY_S = 86_400


async def bench(orders: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = NodeConfig(
            db=str(Path(tmp) / "m.db"),
            api_port=0,
            sha256d_port=0,
            scrypt_port=0,
            faucet=True,
            control=True,
            log_format="json",
            log_level="warning",
        )
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(run_node, config)
            core, control = node.core, node.control
            assert control is not None
            market, now = core.market, core.clock.now_ms

            def place() -> None:
                market.create_account(account="buyer", now_ms=now())
                market.deposit(account="buyer", amount_msat=10**15, now_ms=now())
                for n in range(orders):
                    market.create_order(
                        account="buyer",
                        algorithm=Algorithm.SHA256D,
                        type=OrderType.STANDARD,
                        price_msat=10**8,
                        limit_hs=0,
                        amount_msat=10**9,
                        duration_s=60 * (n + 1),
                        now_ms=now(),
                        fleet=core.fleet,
                    )

            await core.engine.execute(place)
            started = time.perf_counter()
            await control.time.advance(400 * DAY_S)
            long_s = time.perf_counter() - started
            started = time.perf_counter()
            await control.time.advance(DAY_S)
            day_s = time.perf_counter() - started
            ended = sum(1 for o in core.views.list_orders(account="buyer") if o.ends_ms)
            node.stop(reason="bench over")
    print(
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.machine()}"
    )
    print(f"advance of 400 days over {orders} orders ({ended} ended): {long_s * 1000:.1f} ms")
    print(f"advance of a day over the ended market: {day_s * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    args = parser.parse_args()
    trio.run(bench, args.orders)


if __name__ == "__main__":
    main()
