"""Whole-state checks of the marketplace, for tests and benchmarks.

Theory of operation
-------------------
Each check walks one half's whole state and asserts what must hold at every event boundary (the
market) or after every ephemeral change (the fleet); an ``AssertionError`` names the first
broken rule. They are slow (linear in everything) and never run on a live path: the stateful
hypothesis model runs them after every step, the engine tests and benchmarks after their runs.

- ``check_market``: the ledger is consistent and money is conserved; every order's spend, escrow
  and status agree; refunds for pool-rejected shares never exceed what was settled, and the
  ledger's refunds are the orders'; the indexes (active orders, the settlement and refund
  queues) match the orders.
- ``check_fleet``: every connected worker is idle or held by exactly one order, and the last
  rebalance of each market obeys the allocation rule (``allocation.check_allocation``).
- ``check_invariants``: both, plus what ties them: the fleet holds only the market's orders.
"""

from __future__ import annotations

from marketplace.core.allocation import check_allocation
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind, OrderStatus


def check_market(market: Market) -> None:
    """Assert the market's invariants: ledger balances equal the ledger's sums and are never
    negative; money is conserved (balances = deposits - withdrawals, charges = earnings +
    fees); each buyer's escrow is what its orders still hold; no order spent past its amount
    or more than it accrued; statuses agree with spend; the indexes agree with the orders."""
    book = market.book
    book.ledger.check()
    escrow: dict[str, int] = {}
    settled = refunded = 0
    for order in book.orders.values():
        assert 0 <= order.refunded_msat <= min(int(order.refund_accrued), order.settled_msat), (
            f"{order.id}: refunded {order.refunded_msat} of {order.refund_accrued}, settled "
            f"{order.settled_msat}"
        )
        if order.refund_due_msat and order.active:
            assert order.id in book.refunds_due, f"{order.id} has a refund due unqueued"
        refunded += order.refunded_msat
        assert 0 <= order.settled_msat <= order.spent_msat <= order.amount_msat, (
            f"{order.id}: settled {order.settled_msat}, spent {order.spent_msat}, "
            f"amount {order.amount_msat}"
        )
        assert order.spent_msat <= order.accrued, f"{order.id} charged more than it accrued"
        if order.status is OrderStatus.COMPLETED:
            assert order.spent_msat == order.amount_msat, f"{order.id} completed early"
            assert order.released_msat == 0, f"{order.id} completed yet released"
        elif order.status is OrderStatus.ACTIVE:
            assert order.spent_msat < order.amount_msat, f"{order.id} active but spent"
            assert order.id in book.active[order.algorithm], f"{order.id} not indexed"
            assert order.released_msat == 0, f"{order.id} active yet released"
        else:
            assert order.released_msat == order.amount_msat - order.spent_msat, (
                f"{order.id} released {order.released_msat}"
            )
        if not order.active:
            assert order.id not in book.active[order.algorithm], f"{order.id} still indexed"
        if order.unsettled_msat:
            assert order.id in book.unsettled, f"{order.id} has unsettled spend unqueued"
        escrow[order.account] = escrow.get(order.account, 0) + order.escrowed_msat
        settled += order.settled_msat
    for account in book.ledger.accounts():
        held = book.ledger.balance(account).escrowed_msat
        assert held == escrow.get(account, 0), (
            f"{account}: escrow {held} but orders hold {escrow.get(account, 0)}"
        )
    totals = book.ledger.total_by_kind()
    charged = -totals[LedgerKind.CHARGE]
    assert charged == settled, f"ledger charged {charged}, orders settled {settled}"
    assert totals[LedgerKind.REFUND] == refunded, (
        f"ledger refunded {totals[LedgerKind.REFUND]}, orders {refunded}"
    )
    for account in book.ledger.accounts():
        if account != book.config.fee_account:
            assert book.ledger.balance(account).available_msat >= 0, f"{account} overdrawn"


def check_fleet(fleet: Fleet) -> None:
    """Assert the fleet's invariants: each connected worker is idle or held by the one order it
    serves, none is lost between the two, and each market's last rebalance obeys the
    allocation rule."""
    serving = fleet.assignments()
    connected = 0
    for algorithm in fleet.algorithms():
        state = fleet.inspect(algorithm)
        connected += len(state.workers)
        for order_id, workers in state.holdings.items():
            assert workers, f"{algorithm}: {order_id} kept with no workers"
            for worker in workers:
                assert serving.get(worker) == order_id, f"{worker} serving mismatch"
        for worker in state.idle:
            assert serving.get(worker) is None, f"{worker} idle but serving"
        assert len(state.workers) == len(state.idle) + sum(
            len(w) for w in state.holdings.values()
        ), f"{algorithm}: workers lost between idle and holdings"
        if state.last is not None:
            problems = check_allocation(
                queue=state.last.queue,
                held=state.last.held,
                idle=state.last.idle,
                speed=state.last.speed,
            )
            assert not problems, f"{algorithm} allocation: {problems}"
    assert len(serving) == connected, f"{len(serving)} assignments for {connected} workers"


def check_invariants(market: Market, fleet: Fleet) -> None:
    """``check_market`` and ``check_fleet``, and the fleet holds only orders of the market,
    each in its own market."""
    check_market(market)
    check_fleet(fleet)
    orders = market.book.orders
    for algorithm in fleet.algorithms():
        for order_id in fleet.inspect(algorithm).holdings:
            order = orders.get(order_id)
            assert order is not None, f"{algorithm}: workers hold unknown order {order_id}"
            assert order.algorithm is algorithm, f"{order_id} held in the {algorithm} market"
