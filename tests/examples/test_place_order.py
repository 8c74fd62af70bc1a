from __future__ import annotations

from decimal import Decimal

from marketplace.testing import Market
from tests.examples.helpers import run_example


def test_place_order_walks_an_order_through_its_life(hashmarket: Market) -> None:
    buyer = hashmarket.buyer("buyer", deposit=None)
    out = run_example(
        "place_order.py",
        [
            "--price", "0.00100000",
            "--raise-by", "0.00010000",
            "--limit", "0.05",
            "--new-limit", "0.10",
            "--amount", "0.01000000",
            "--refill", "0.00500000",
        ],
        buyer.env(hashmarket.api_url),
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
    (order,) = buyer.client.list_orders()
    assert order.id in lines[2]
    assert (order.status, order.price, order.limit) == ("cancelled", "0.00110000", "0.100000")
    assert order.amount == "0.01500000"
    balance = buyer.client.balance()
    assert balance.escrowed == "0.00000000"
    assert Decimal(balance.available) == Decimal("0.015") - Decimal(order.spent)
