from __future__ import annotations

from pathlib import Path

import trio

from marketplace.core.model import OrderStatus
from tests.examples.helpers import account_env, run_example, running_node

MSAT_PER_BTC = 10**11


async def test_place_order_walks_an_order_through_its_life(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with running_node(tmp_path) as node:
            env = await account_env(node, "buyer")
            account = env["HASHMARKET_ACCOUNT"]
            out = await run_example(
                "place_order.py",
                [
                    "--price", "0.00100000",
                    "--raise-by", "0.00010000",
                    "--limit", "0.05",
                    "--new-limit", "0.10",
                    "--amount", "0.01000000",
                    "--refill", "0.00500000",
                ],
                env,
            )  # fmt: skip
            lines = out.splitlines()
            steps = [line.split()[0] for line in lines]
            assert steps == [
                "balance", "deposit", "placed", "raised", "limit",
                "refilled", "current", "cancel", "balance",
            ]  # fmt: skip
            assert "0.01500000 from the faucet" in lines[1]
            assert "price=0.00110000" in lines[3]
            assert "limit=0.10" in lines[4]
            assert "amount=0.01500000" in lines[5]
            assert "status=cancelled" in lines[7]

            # The market agrees: one order, cancelled, with every change applied.
            (order,) = node.core.views.list_orders(account=account)
            assert order.id in lines[2]
            assert order.status is OrderStatus.CANCELLED
            assert order.price_msat == 110_000_000  # 0.0011 BTC
            assert order.limit_hs == 100_000  # 0.10 MH/s
            assert order.amount_msat == 1_500_000_000  # 0.015 BTC
            balance = node.core.market.balance(account)
            assert balance.escrowed_msat == 0
            assert balance.available_msat == 1_500_000_000 - order.spent_msat
