"""An order keeps the request id it was placed with and when its settings or status last
changed (NiceHash's ``requestId`` and ``updatedTs``): price, limit, budget and end move it, its
charges do not; replay and snapshots keep both; ``change_order`` takes price and limit in one
step or neither."""

from __future__ import annotations

import pytest

from marketplace.core.errors import RuleViolation
from marketplace.core.market import Market

from .helpers import funded, join, make_core, share, standard, worker


def test_request_id_and_updated_time() -> None:
    core = make_core()
    funded(core, "buyer")
    market = core.market
    order_id = standard(core, now_ms=1_000, request_id="req-1").id

    def seen() -> tuple[str | None, int]:
        view = core.views.get_order(account="buyer", order_id=order_id)
        return view.request_id, view.updated_ms

    assert seen() == ("req-1", 1_000)
    market.change_order(account="buyer", order_id=order_id, price_msat=300_000_000, now_ms=2_000)
    assert seen() == ("req-1", 2_000)
    join(core, worker(1))
    core.record_share(share(worker(1), time_ms=3_000), order_id=order_id)
    assert seen() == ("req-1", 2_000)  # a charge is no change of the order
    market.refill(account="buyer", order_id=order_id, amount_msat=100_000_000, now_ms=4_000)
    assert seen() == ("req-1", 4_000)
    market.change_order(account="buyer", order_id=order_id, limit_hs=2_000_000, now_ms=5_000)
    assert seen() == ("req-1", 5_000)
    market.cancel(account="buyer", order_id=order_id, now_ms=6_000)
    assert seen() == ("req-1", 6_000)
    replayed = Market(config=market.config)
    for event in market.drain_events():
        replayed.apply(market.decode_event(market.encode_event(event)))
    assert replayed.export_state() == market.export_state()
    restored = Market(config=market.config)
    restored.import_state(market.decode_state(market.encode_state()))
    assert restored.export_state() == market.export_state()


def test_change_order_takes_both_or_neither() -> None:
    core = make_core()
    funded(core, "buyer")
    market = core.market
    order_id = standard(core).id
    market.drain_events()
    before = market.export_state()
    with pytest.raises(RuleViolation):  # a good price, a limit under the minimum
        market.change_order(
            account="buyer", order_id=order_id, price_msat=300_000_000, limit_hs=1, now_ms=1
        )
    assert market.export_state() == before
    assert market.drain_events() == []
    market.change_order(
        account="buyer", order_id=order_id, price_msat=300_000_000, limit_hs=10**6, now_ms=2
    )
    view = core.views.get_order(account="buyer", order_id=order_id)
    assert (view.price_msat, view.limit_hs, view.updated_ms) == (300_000_000, 10**6, 2)
