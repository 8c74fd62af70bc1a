"""Shares, charging, completion, settlement, expiry, allocation and replay: the market, its
fleet and their views together."""

from __future__ import annotations

from fractions import Fraction

from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_market
from marketplace.core.market import Market
from marketplace.core.model import Assignment, Balance, LedgerKind, MarketConfig, OrderStatus
from marketplace.core.orders import share_value
from marketplace.core.stats import MINUTE_MS
from marketplace.core.views import MarketViews
from tests.marketplace_core.helpers import (
    BTC,
    MH,
    SHA,
    Core,
    funded,
    join,
    make_core,
    share,
    standard,
    worker,
)

PRICE = 200_000_000  # 0.002 BTC per MH/s per day


def test_share_value_formula() -> None:
    # 1 MH/s for a day at PRICE is exactly PRICE: 86400 * 10**6 hashes.
    day_of_work = Fraction(86_400 * 10**6, 2**32)
    assert (
        share_value(price_msat=PRICE, difficulty=1.0, unit_hs=MH, hashes_per_diff1=2**32)
        * day_of_work
        == PRICE
    )
    assert share_value(
        price_msat=PRICE, difficulty=1.0, unit_hs=MH, hashes_per_diff1=2**32
    ) == Fraction(PRICE * 2**32, MH * 86_400)


def test_fractions_are_carried_not_rounded_away() -> None:
    core = make_core()
    views = core.views
    funded(core, "buyer")
    order = standard(core, price_msat=1_000_000, amount_msat=10**9).id
    key = worker(1)
    join(core, key)
    core.rebalance(SHA, now_ms=0)
    value = share_value(
        price_msat=1_000_000, difficulty=0.00001, unit_hs=MH, hashes_per_diff1=2**32
    )
    assert value.denominator != 1
    assert value < 1
    for i in range(1000):
        core.record_share(share(key, difficulty=0.00001, time_ms=i), order_id=order)
    assert views.get_order(account="buyer", order_id=order).spent_msat == int(1000 * value)
    core.check()


def test_budget_completion_pays_only_what_is_left() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    amount = 100_000_000
    order = standard(core, amount_msat=amount).id
    key = worker(1)
    join(core, key)
    assert core.rebalance(SHA, now_ms=0) == [Assignment(key, order)]
    per_share = share_value(
        price_msat=PRICE, difficulty=1.0, unit_hs=MH, hashes_per_diff1=2**32
    )  # ~9.9M msat
    n = 0
    while views.get_order(account="buyer", order_id=order).status is OrderStatus.ACTIVE:
        core.record_share(share(key, time_ms=1000 + n), order_id=order)
        n += 1
        assert n < 20_000
    assert n == int(amount / per_share) + 1
    view = views.get_order(account="buyer", order_id=order)
    assert (view.spent_msat, view.remaining_msat) == (amount, 0)
    # In-flight shares after completion cost nothing.
    core.record_share(share(key, time_ms=99_999), order_id=order)
    assert views.get_order(account="buyer", order_id=order).spent_msat == amount
    # The next rebalance releases the worker.
    assert core.rebalance(SHA, now_ms=100_000) == [Assignment(key, None)]
    market.settle(now_ms=100_000)
    assert market.balance("buyer") == Balance(available_msat=BTC - amount, escrowed_msat=0)
    assert market.balance("seller").available_msat == amount - amount * 200 // 10_000
    assert market.balance("operator").available_msat == amount * 200 // 10_000
    core.check()


def test_settlement_splits_by_work_across_sellers_and_periods() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    order = standard(core, amount_msat=10**10).id
    a, b = worker(1, "alice"), worker(2, "bob")
    join(core, a)
    join(core, b)
    core.rebalance(SHA, now_ms=0)
    for i in range(30):
        core.record_share(share(a, difficulty=1.0, time_ms=i), order_id=order)
        core.record_share(share(b, difficulty=2.0, time_ms=i), order_id=order)
    # A second username on bob's connection is credited for its own shares.
    core.record_share(share(b, worker_name="rig2", difficulty=3.0, time_ms=31), order_id=order)
    core.record_share(share(a, accepted=False, time_ms=32), order_id=order)
    spent = views.get_order(account="buyer", order_id=order).spent_msat
    market.settle(now_ms=10_000)
    entries = {e.kind: e for e in market.ledger("buyer", limit=1)}
    assert entries[LedgerKind.CHARGE].amount_msat == -spent
    assert entries[LedgerKind.CHARGE].ref == "s-000001/o-000001"
    fee = spent * 200 // 10_000
    pool = spent - fee
    alice = market.balance("alice").available_msat
    bob = market.balance("bob").available_msat
    assert alice + bob + market.balance("operator").available_msat == spent
    assert abs(alice - pool * 30 / 93) <= 1
    assert abs(bob - pool * 63 / 93) <= 1
    bobs = {(v.name): v for v in views.workers_of("bob", now_ms=10_000)}
    assert set(bobs) == {"w2", "rig2"}
    assert bobs["rig2"].earned_msat > 0
    assert bobs["rig2"].order_id is None
    assert bobs["w2"].order_id == order
    assert bobs["w2"].connected
    assert views.workers_of("alice", now_ms=10_000)[0].rejected == {"stale": 1}
    # Nothing new: settling again changes nothing and emits nothing.
    market.drain_events()
    market.settle(now_ms=20_000)
    assert market.drain_events() == []
    core.check()


def test_expiry_releases_and_cancel_keeps_in_flight_spend_for_settlement() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    short = standard(core, duration_s=60, now_ms=0).id
    other = standard(core, price_msat=PRICE - 1000, now_ms=0).id
    key = worker(1)
    join(core, key)
    core.rebalance(SHA, now_ms=0)
    assert core.fleet.assignment(key) == short
    core.record_share(share(key, time_ms=1000), order_id=short)
    assert market.expire(now_ms=59_999) == []
    assert market.expire(now_ms=60_000) == [short]
    view = views.get_order(account="buyer", order_id=short)
    assert (view.status, view.ended_ms) == (OrderStatus.EXPIRED, 60_000)
    # The worker moves to the next order at the next rebalance.
    assert core.rebalance(SHA, now_ms=60_000) == [Assignment(key, other)]
    spent = view.spent_msat
    assert spent > 0
    # Escrow still holds the unsettled spend of the expired order until settlement.
    assert market.balance("buyer").escrowed_msat == 100_000_000 + spent
    core.check()
    market.settle(now_ms=60_001)
    assert market.balance("buyer").escrowed_msat == 100_000_000
    market.cancel(account="buyer", order_id=other, now_ms=60_002)
    assert market.balance("buyer") == Balance(available_msat=BTC - spent, escrowed_msat=0)
    core.check()


def test_a_share_after_the_end_time_is_not_charged_and_the_order_ended_on_time() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    order = standard(core, duration_s=60, now_ms=0).id
    key = worker(1)
    join(core, key)
    core.rebalance(SHA, now_ms=0)
    core.record_share(share(key, time_ms=59_999), order_id=order)
    spent = views.get_order(account="buyer", order_id=order).spent_msat
    assert spent > 0
    # The expiry tick has not run yet, but the order's time is over.
    core.record_share(share(key, time_ms=60_000), order_id=order)
    assert views.get_order(account="buyer", order_id=order).spent_msat == spent
    assert market.expire(now_ms=60_900) == [order]
    view = views.get_order(account="buyer", order_id=order)
    assert (view.status, view.ended_ms, view.spent_msat) == (OrderStatus.EXPIRED, 60_000, spent)
    core.check()


def test_work_that_has_not_made_a_whole_msat_yet_is_paid_with_the_next_spend() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    order = standard(core, price_msat=1_000_000).id  # 0.00001 BTC per MH/s per day
    first, second = worker(1, "alice"), worker(2, "bob")
    join(core, first)
    join(core, second)
    core.rebalance(SHA, now_ms=0)
    # One share at this price and difficulty is worth under one msat.
    core.record_share(share(first, difficulty=0.00001, time_ms=1000), order_id=order)
    assert views.get_order(account="buyer", order_id=order).spent_msat == 0
    market.settle(now_ms=10_000)
    (record,) = market.export_state().orders
    assert [w.account for w in record.order.period_work] == ["alice"]  # kept, not dropped
    core.check()


def test_shares_for_unknown_or_idle_orders_charge_nothing() -> None:
    core = make_core()
    views = core.views
    funded(core, "buyer")
    order = standard(core).id
    key = worker(1)
    join(core, key)
    core.record_share(share(key), order_id=None)
    core.record_share(share(key), order_id="o-424242")
    core.record_share(share(key, accepted=False, reason="duplicate"), order_id=order)
    assert views.get_order(account="buyer", order_id=order).spent_msat == 0
    stats = views.market_stats(SHA, now_ms=2000)
    assert stats.workers == 1
    assert stats.rejected == {"duplicate": 1}
    assert stats.accepted_speed_hs > 0
    core.check()


def test_rebalance_moves_workers_by_price_and_leave() -> None:
    core = make_core()
    views = core.views
    funded(core, "buyer")
    low = standard(core, price_msat=PRICE, limit_hs=0).id
    keys = [worker(i) for i in range(3)]
    for key in keys:
        join(core, key)
    core.rebalance(SHA, now_ms=0)
    assert {core.fleet.assignment(k) for k in keys} == {low}
    assert core.rebalance(SHA, now_ms=1) == []  # nothing changed: no moves
    high = standard(core, price_msat=2 * PRICE, limit_hs=2 * MH).id
    moves = core.rebalance(SHA, now_ms=2)
    # The newest holders of the low order move up first.
    assert moves == [Assignment(keys[2], high), Assignment(keys[1], high)]
    core.fleet.worker_left(worker=keys[1], now_ms=3)
    core.fleet.worker_left(worker=keys[1], now_ms=3)  # idempotent
    assert core.fleet.assignment(keys[1]) is None
    assert core.rebalance(SHA, now_ms=4) == [Assignment(keys[0], high)]
    book = views.orderbook(SHA)
    assert [(e.id, e.workers) for e in book.orders] == [(high, 2), (low, 0)]
    core.check()


def test_order_stats_minutes() -> None:
    core = make_core()
    views = core.views
    funded(core, "buyer")
    order = standard(core, now_ms=0).id
    key = worker(1)
    join(core, key)
    core.rebalance(SHA, now_ms=0)
    for i in range(120):
        core.record_share(share(key, difficulty=0.001, time_ms=i * 1000), order_id=order)
    points = views.order_stats(account="buyer", order_id=order, since_ms=None, now_ms=150_000)
    assert [p.time_ms for p in points] == [0, MINUTE_MS, 2 * MINUTE_MS]
    assert [p.accepted_shares for p in points] == [60, 60, 0]
    assert (
        sum(p.spend_msat for p in points)
        == views.get_order(account="buyer", order_id=order).spent_msat
    )
    assert points[0].accepted_speed_hs == int(0.001 * 2**32)  # one share per second
    later = views.order_stats(account="buyer", order_id=order, since_ms=MINUTE_MS, now_ms=150_000)
    assert len(later) == 2


def test_replay_rebuilds_identical_state() -> None:
    config = MarketConfig(faucet=True)
    core = Core(config)
    market, views = core.market, core.views
    funded(core, "buyer")
    a = standard(core, price_msat=PRICE, limit_hs=MH, duration_s=120).id
    b = standard(core, price_msat=PRICE * 2, amount_msat=150_000_000).id
    keys = [worker(i, f"s{i % 2}") for i in range(3)]
    for key in keys:
        join(core, key)
    core.rebalance(SHA, now_ms=0)
    for i in range(200):
        key = keys[i % 3]
        core.record_share(
            share(key, difficulty=0.0037, time_ms=i * 500), order_id=core.fleet.assignment(key)
        )
        if i % 50 == 49:
            market.settle(now_ms=i * 500)
    market.refill(account="buyer", order_id=b, amount_msat=10**6, now_ms=100_000)
    market.expire(now_ms=200_000)
    market.withdraw(account="s0", amount_msat=1, address="x", now_ms=200_001)
    market.settle(now_ms=200_002)
    assert views.get_order(account="buyer", order_id=a).status is OrderStatus.EXPIRED
    # A replica needs no fleet: replay rebuilds the market alone.
    replica = Market(config=config)
    for event in market.drain_events():
        replica.apply(Market.decode_event(Market.encode_event(event)))
    check_market(replica)
    # Its views see nobody connected: no workers, so no speed now; the history is the same.
    replica_views = MarketViews(replica, Fleet(config=config))
    for account in ["buyer", "s0", "s1", "operator"]:
        assert replica.balance(account) == market.balance(account)
        assert replica.ledger(account, limit=10**6) == market.ledger(account, limit=10**6)
        assert replica_views.workers_of(account, now_ms=200_002) == [
            v.__class__(
                **{
                    **{f: getattr(v, f) for f in v.__struct_fields__},
                    "connected": False,
                    "order_id": None,
                }
            )
            for v in views.workers_of(account, now_ms=200_002)
            if v.accepted or v.rejected or v.earned_msat
        ]
    assert replica_views.list_orders(account="buyer", now_ms=200_002) == [
        v.__class__(
            **{
                **{f: getattr(v, f) for f in v.__struct_fields__},
                "workers": 0,
                "accepted_speed_hs": 0,
            }
        )
        for v in views.list_orders(account="buyer", now_ms=200_002)
    ]
    for order_id in (a, b):
        assert replica_views.order_stats(
            account="buyer", order_id=order_id, since_ms=None, now_ms=200_002
        ) == views.order_stats(account="buyer", order_id=order_id, since_ms=None, now_ms=200_002)
    assert (
        replica_views.market_stats(SHA, now_ms=200_002).accepted_speed_hs
        == views.market_stats(SHA, now_ms=200_002).accepted_speed_hs
    )
    # Ids continue from the replayed counters.
    replica_core = Core(config)
    replica_core.market.import_state(replica.export_state())
    assert standard(replica_core).id == standard(core).id == "o-000003"
