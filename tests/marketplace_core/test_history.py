"""The market's history: buckets at 60/300/3600 s, bounded rings, samples, money, prices,
and the state it leaves in a snapshot."""

from __future__ import annotations

import msgspec
import pytest

from marketplace.core.events import MarketSampled
from marketplace.core.history import (
    HOUR_MS,
    KEEP_HOURS,
    KEEP_MINUTES,
    MINUTE_MS,
    History,
    export_history,
    import_history,
)
from marketplace.core.market import Market
from marketplace.core.model import OrderType
from marketplace.core.work import share_work

from .helpers import BTC, MH, SHA, funded, join, make_core, share, standard, worker

T = 1_700_000_000_000 // HOUR_MS * HOUR_MS  # an hour's start, so buckets line up
DIFF = 1 / 2**12  # 2**20 hashes a share


def sample(time_ms: int, workers: int, best: int | None, fill: int | None) -> MarketSampled:
    return MarketSampled(
        algorithm=SHA,
        workers=workers,
        best_price_msat=best,
        fill_price_msat=fill,
        time_ms=time_ms,
    )


def test_points_at_each_resolution_sum_the_same_work_and_money() -> None:
    history = History()
    work = share_work(DIFF, SHA)
    for minute in range(10):  # minute m holds m + 1 accepted shares and one rejected
        at = T + minute * MINUTE_MS + 5_000
        for _ in range(minute + 1):
            history.add_share(time_ms=at, work=work, accepted=True)
        history.add_share(time_ms=at, work=work, accepted=False)
        history.add_money(time_ms=at, spent_msat=1_000 * (minute + 1))
    now = T + 10 * MINUTE_MS - 1
    minutes = history.points(resolution_s=60, since_ms=None, now_ms=now)
    assert [p.time_ms for p in minutes] == [T + m * MINUTE_MS for m in range(10)]
    assert [p.shares for p in minutes] == list(range(1, 11))
    assert [p.accepted_speed_hs for p in minutes[:-1]] == [
        (m + 1) * work * 1000 // MINUTE_MS for m in range(9)
    ]
    assert {p.rejected_speed_hs for p in minutes[:-1]} == {work * 1000 // MINUTE_MS}
    five = history.points(resolution_s=300, since_ms=None, now_ms=now)
    assert [p.time_ms for p in five] == [T, T + 5 * MINUTE_MS]
    assert [p.shares for p in five] == [15, 40]
    hours = history.points(resolution_s=3600, since_ms=None, now_ms=now)
    assert [(p.time_ms, p.shares, p.spent_msat) for p in hours] == [(T, 55, 55_000)]
    # The current bucket's speed is over its elapsed part only.
    assert hours[0].accepted_speed_hs == 55 * work * 1000 // (now - T)
    assert sum(p.spent_msat for p in minutes) == sum(p.spent_msat for p in five) == 55_000
    assert history.accepted_work_total == 55 * work
    # since_ms trims; a resolution the spec does not name is refused.
    assert [
        p.time_ms for p in history.points(resolution_s=60, since_ms=T + 8 * MINUTE_MS, now_ms=now)
    ] == [T + 8 * MINUTE_MS, T + 9 * MINUTE_MS]
    with pytest.raises(ValueError, match="resolution_s"):
        history.points(resolution_s=120, since_ms=None, now_ms=now)
    assert History().points(resolution_s=60, since_ms=None, now_ms=now) == []


def test_the_rings_keep_a_day_of_minutes_and_a_month_of_hours() -> None:
    history = History()
    step = 7 * MINUTE_MS
    end = T + 40 * 86_400_000
    for at in range(T, end, step):
        history.add_share(time_ms=at, work=1, accepted=True)
    assert len(history._minutes.slots) <= KEEP_MINUTES
    assert len(history._hours.slots) <= KEEP_HOURS
    minutes = history.points(resolution_s=60, since_ms=None, now_ms=end)
    hours = history.points(resolution_s=3600, since_ms=None, now_ms=end)
    assert len(minutes) == KEEP_MINUTES + 1  # a day back, the current minute included
    assert minutes[0].time_ms == (end - KEEP_MINUTES * MINUTE_MS) // MINUTE_MS * MINUTE_MS
    assert len(hours) == KEEP_HOURS + 1
    # Every hour of the month is there with all its shares (8 or 9 of them, 7 minutes apart).
    assert {p.shares for p in hours[1:-1]} <= {8, 9}
    # A fact older than the rings counts in the totals only.
    history.add_share(time_ms=T, work=5, accepted=True)
    assert history.accepted_work_total == len(range(T, end, step)) + 5
    assert len(history._minutes.slots) <= KEEP_MINUTES


def test_a_bucket_keeps_the_most_workers_sampled_and_the_latest_prices() -> None:
    history = History()
    history.add_sample(sample(T + 1_000, 3, 500, 400))
    history.add_sample(sample(T + 20_000, 1, 600, None))
    assert not history.sample_is_news(sample(T + 30_000, 1, 600, None))
    assert history.sample_is_news(sample(T + 30_000, 4, 600, None))
    assert history.sample_is_news(sample(T + 30_000, 1, 600, 450))
    assert history.sample_is_news(sample(T + MINUTE_MS, 1, 600, None))  # a new minute
    history.add_sample(sample(T + 6 * MINUTE_MS, 2, 700, 700))
    points = history.points(resolution_s=60, since_ms=None, now_ms=T + 6 * MINUTE_MS + 1)
    assert [(p.workers, p.best_price_msat, p.fill_price_msat) for p in points] == [
        (3, 600, None),
        *[(0, None, None)] * 5,  # no sample: the node was not running
        (2, 700, 700),
    ]
    five = history.points(resolution_s=300, since_ms=None, now_ms=T + 6 * MINUTE_MS + 1)
    assert [(p.workers, p.best_price_msat) for p in five] == [(3, 600), (2, 700)]


def test_a_snapshot_of_the_history_reads_back_the_same_points() -> None:
    history = History()
    for i in range(500):
        at = T + i * 13_000
        history.add_share(time_ms=at, work=i, accepted=i % 5 != 0)
        history.add_money(time_ms=at, spent_msat=i, earned_msat=2 * i, fees_msat=1)
        history.add_sample(sample(at, i % 4, 10 * i, None if i % 3 else i))
    state = export_history(history)
    again = import_history(msgspec.json.decode(msgspec.json.encode(state), type=type(state)))
    assert export_history(again) == state
    now = T + 500 * 13_000
    for resolution in (60, 300, 3600):
        assert again.points(resolution_s=resolution, since_ms=None, now_ms=now) == (
            history.points(resolution_s=resolution, since_ms=None, now_ms=now)
        )


def test_the_market_folds_shares_money_and_samples_into_its_history() -> None:
    core = make_core()
    funded(core, "buyer", 10 * BTC, now_ms=T)
    cheap = standard(core, price_msat=BTC, limit_hs=0, amount_msat=BTC, now_ms=T)
    dear = standard(core, price_msat=2 * BTC, limit_hs=MH, amount_msat=BTC, now_ms=T)
    a, b = worker(1), worker(2)
    join(core, a, now_ms=T)
    join(core, b, now_ms=T)
    core.rebalance(now_ms=T)
    assert core.views.prices(SHA) == (2 * BTC, BTC)  # both served: the fill is the cheaper
    served = {core.fleet.assignment(a), core.fleet.assignment(b)}
    assert served == {cheap.id, dear.id}
    market = core.market
    assert market.record_sample(
        SHA, workers=2, best_price_msat=2 * BTC, fill_price_msat=BTC, now_ms=T + 1
    )
    # Nothing new within the minute: nothing journaled.
    assert not market.record_sample(
        SHA, workers=2, best_price_msat=2 * BTC, fill_price_msat=BTC, now_ms=T + 2
    )
    for key in (a, b):
        core.record_share(
            share(key, difficulty=DIFF, time_ms=T + 1_000), order_id=core.fleet.assignment(key)
        )
    core.record_share(share(a, difficulty=DIFF, time_ms=T + 2_000, accepted=False), order_id=None)
    market.settle(now_ms=T + 10_000)
    spent = sum(o.spent_msat for o in core.views.list_orders(account="buyer"))
    assert spent > 0
    point = core.views.market_history(SHA, resolution_s=60, since_ms=None, now_ms=T + 30_000)[0]
    assert (point.shares, point.workers, point.best_price_msat, point.fill_price_msat) == (
        2,
        2,
        2 * BTC,
        BTC,
    )
    assert point.spent_msat == spent
    assert point.accepted_speed_hs == 2 * share_work(DIFF, SHA) * 1000 // 30_000
    buyer = core.views.account_history("buyer", resolution_s=3600, since_ms=None, now_ms=T + 30_000)
    seller = core.views.account_history("seller", resolution_s=60, since_ms=None, now_ms=T + 30_000)
    assert [(p.spent_msat, p.earned_msat) for p in buyer] == [(spent, 0)]
    fees = market.book.market_history[SHA].fees_msat_total
    assert [(p.spent_msat, p.earned_msat) for p in seller] == [(0, spent - fees)]
    assert core.views.account_history("nobody", resolution_s=60, since_ms=None, now_ms=T) == []
    # The whole history is in the market's state: a replica from the events has it too.
    replica = Market(config=market.config)
    for event in market.drain_events():
        replica.apply(event)
    assert replica.encode_state() == market.encode_state()
    with pytest.raises(Exception, match="no market"):
        market.record_sample("x11", workers=0, best_price_msat=None, fill_price_msat=None, now_ms=T)  # type: ignore[arg-type]


def test_the_fill_price_is_none_until_an_order_is_served_and_fixed_orders_do_not_count() -> None:
    core = make_core()
    funded(core, "buyer", 10 * BTC, now_ms=T)
    assert core.views.prices(SHA) == (None, None)
    order = standard(core, price_msat=BTC, amount_msat=BTC, now_ms=T)
    assert core.views.prices(SHA) == (BTC, None)
    join(core, worker(1), speed_hs=10 * MH, now_ms=T)
    core.rebalance(now_ms=T)
    assert core.views.prices(SHA) == (BTC, BTC)
    fixed = core.market.create_order(
        account="buyer",
        algorithm=SHA,
        type=OrderType.FIXED,
        price_msat=None,
        limit_hs=MH,
        amount_msat=BTC,
        duration_s=600,
        now_ms=T,
        fleet=core.fleet,
    )
    core.rebalance(now_ms=T)
    # The fixed order took the one worker: no standard order is served, so no fill price.
    assert core.fleet.holders(SHA, fixed) == 1
    assert core.views.prices(SHA) == (BTC, None)
    core.market.cancel(account="buyer", order_id=order.id, now_ms=T)
    assert core.views.prices(SHA) == (None, None)
