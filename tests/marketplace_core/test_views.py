"""The views: an order's speed is what it receives now (0 the moment it holds no worker or has
ended); its statistics keep the history."""

from __future__ import annotations

from tests.marketplace_core.helpers import SHA, funded, join, make_core, share, standard, worker

PRICE = 200_000_000
ONE_PER_S = int(0.001 * 2**32)  # one share of difficulty 0.001 a second


def test_an_order_that_loses_its_workers_or_ends_shows_no_speed_at_once() -> None:
    core = make_core()
    market, views = core.market, core.views
    funded(core, "buyer")
    first = standard(core, price_msat=PRICE).id
    key = worker(1)
    join(core, key)
    core.rebalance(now_ms=0)
    for i in range(60):
        core.record_share(share(key, difficulty=0.001, time_ms=i * 1000), order_id=first)
    view = views.get_order(account="buyer", order_id=first, now_ms=60_000)
    assert (view.workers, view.accepted_speed_hs) == (1, ONE_PER_S)
    book = views.orderbook(SHA, now_ms=60_000)
    assert [(e.id, e.workers, e.accepted_speed_hs) for e in book.orders] == [(first, 1, ONE_PER_S)]
    assert book.total_speed_hs == ONE_PER_S

    # A better bid takes the worker: the first order, still active, receives nothing now.
    second = standard(core, price_msat=2 * PRICE, now_ms=60_000).id
    core.rebalance(now_ms=60_000)
    view = views.get_order(account="buyer", order_id=first, now_ms=60_000)
    assert (view.workers, view.accepted_speed_hs) == (0, 0)
    book = views.orderbook(SHA, now_ms=60_000)
    assert [(e.id, e.workers, e.accepted_speed_hs) for e in book.orders] == [
        (second, 1, 0),
        (first, 0, 0),
    ]
    assert book.total_speed_hs == 0
    # The history still has the minute it was served.
    (point, *_) = views.order_stats(account="buyer", order_id=first, since_ms=None, now_ms=60_000)
    assert point.accepted_speed_hs == ONE_PER_S

    # The second order works, then is cancelled: no speed at once, before any rebalance.
    for i in range(10):
        core.record_share(share(key, difficulty=0.001, time_ms=60_000 + i * 1000), order_id=second)
    assert views.get_order(account="buyer", order_id=second, now_ms=70_000).accepted_speed_hs > 0
    market.cancel(account="buyer", order_id=second, now_ms=70_000)
    view = views.get_order(account="buyer", order_id=second, now_ms=70_000)
    assert (view.status, view.workers, view.accepted_speed_hs) == ("cancelled", 0, 0)
    points = views.order_stats(account="buyer", order_id=second, since_ms=None, now_ms=70_000)
    assert sum(p.accepted_shares for p in points) == 10
    assert core.fleet.assignment(key) == second  # the fleet moves it at the next rebalance
    core.check()
