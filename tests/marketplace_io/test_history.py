"""The shared history (``history.py``) in real time on trio's MockClock: a day of a market
left alone, with its periodic settlements and expiry, whose balances the node driven by
``admin.time.advance`` must reproduce (``tests/e2e/test_market_time.py``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .history import LOWERED, STANDARD, run_on_mock_clock


async def test_the_history_in_real_time(autojump_clock: Any) -> None:
    outcome = await run_on_mock_clock()
    assert outcome.fixed_status == "expired"
    assert outcome.standard_price == LOWERED[-1]
    assert outcome.seller_available != "0.00000000"  # settlements paid the seller
    # The standard order still holds what it has not spent; the fixed one gave its back.
    remaining = Decimal(STANDARD["amount"]) - Decimal(outcome.standard_spent)
    # (each wire string is truncated to a whole satoshi on its own)
    assert abs(Decimal(outcome.buyer_escrowed) - remaining) <= Decimal("0.00000001")
