"""What a database must hold after a node was killed under share load: the checks the kill -9
test and the full-disk test share.

Each share was submitted under its own worker name, so a ``ShareRecorded.worker`` names one
submission. After the kill the node is restarted once and takes one share (``AFTER``); then
the database must hold every acknowledged share exactly once and nothing invented, the buyer's
order must be charged for exactly the shares it got, and the balances must reconcile.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import trio

from marketplace.core.events import ShareRecorded
from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_market
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind, MarketConfig
from marketplace.core.views import MarketViews
from marketplace.storage import open_journal

from .miner import RawMiner

#: The worker name of the one share the restarted node takes.
AFTER = "after"


async def share_after_restart(port: int) -> None:
    """The restarted node takes a share again (from a fresh connection)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    miner = RawMiner(stream, timeout=10)
    await miner.login(f"seller.{AFTER}")
    assert await miner.submit(f"seller.{AFTER}") is True
    await stream.aclose()


async def journal_shares(db: str | Path) -> tuple[list[ShareRecorded], Market]:
    """The market as the database holds it (every event replayed, as a restart does), settled
    once more; and its shares."""
    market = Market(config=MarketConfig(faucet=True))
    async with open_journal(db) as journal:
        entries = [e async for e in journal.replay() if e.component == Market.component]
    events = [Market.decode_event(e.body) for e in entries]
    for event in events:
        market.apply(event)
    market.settle(now_ms=max(market.clock_ms, int(time.time() * 1000)))
    market.drain_events()
    return [e for e in events if isinstance(e, ShareRecorded)], market


def check_exactly_once(
    shares: list[ShareRecorded], *, acked: set[str], submitted: set[str]
) -> list[str]:
    """Nothing acknowledged is missing, nothing is there twice, nothing invented; the accepted
    shares' names."""
    names = [s.worker for s in shares if s.accepted]
    assert sorted(set(names)) == sorted(names), "a share was journaled twice"
    assert acked <= set(names), f"lost acknowledged shares: {sorted(acked - set(names))}"
    assert set(names) <= submitted | {AFTER}
    assert AFTER in names
    return names


def check_charges(
    market: Market, shares: list[ShareRecorded], *, buyer: str, order_id: str, value: Fraction
) -> None:
    """``buyer``'s order was charged ``value`` per accepted share it got (fractions carried),
    and what the buyer was charged went to the seller and the fee account."""
    views = MarketViews(market, Fleet(config=market.config))
    order = views.get_order(account=buyer, order_id=order_id)
    charged = [s for s in shares if s.accepted and s.order_id == order_id]
    assert order.spent_msat == int(len(charged) * value)
    check_market(market)
    charges = -total(market, buyer, LedgerKind.CHARGE)
    earned = total(market, "seller", LedgerKind.EARNING)
    fees = total(market, market.config.fee_account, LedgerKind.FEE)
    assert charges == order.spent_msat == earned + fees
    assert earned > 0


def total(market: Market, account: str, kind: LedgerKind) -> int:
    return sum(e.amount_msat for e in market.ledger(account, limit=100_000) if e.kind is kind)
