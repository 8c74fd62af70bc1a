"""An operator's rule changes: from now on, journaled, replayed and snapshotted."""

from __future__ import annotations

import pytest

from marketplace.core.errors import InvalidArgument, InvalidState, RuleViolation
from marketplace.core.events import RulesChanged
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind
from marketplace.core.rules import RuleChange
from tests.marketplace_core.helpers import RULES, SHA, funded, join, make_core, share
from tests.marketplace_core.helpers import standard as standard_order
from tests.marketplace_core.helpers import worker as worker_key


def test_a_change_applies_from_now_on_and_survives_replay_and_snapshots() -> None:
    core = make_core()
    market = core.market
    funded(core, "buyer")
    old = standard_order(core, price_msat=2_000_000)
    market.change_rules(
        algorithm=SHA,
        change=RuleChange(min_price_msat=5_000_000, price_down_interval_s=60, fee_bps=1000),
        now_ms=1_000,
    )
    rules = market.rules(SHA)
    assert (rules.min_price_msat, rules.price_down_interval_s, rules.fee_bps) == (
        5_000_000,
        60,
        1000,
    )
    assert rules.min_amount_msat == RULES.min_amount_msat  # what the change left alone
    # New orders meet the new minimum; an order placed before keeps its price.
    with pytest.raises(RuleViolation):
        standard_order(core, price_msat=4_000_000, now_ms=2_000)
    assert core.views.get_order(account="buyer", order_id=old.id).price_msat == 2_000_000
    # The next settlement takes the new fee (10%).
    key = worker_key(1)
    join(core, key)
    core.rebalance(now_ms=2_000)
    core.record_share(share(key, difficulty=1.0, time_ms=3_000, source=old.id), order_id=old.id)
    market.settle(now_ms=4_000)
    charge = -sum(e.amount_msat for e in market.ledger("buyer") if e.kind is LedgerKind.CHARGE)
    fee = sum(e.amount_msat for e in market.ledger("operator") if e.kind is LedgerKind.FEE)
    assert charge > 0
    assert fee == charge // 10
    events = market.drain_events()
    replayed = Market(config=market.config)
    for event in events:
        replayed.apply(Market.decode_event(Market.encode_event(event)))
    assert replayed.rules(SHA) == rules
    restored = Market(config=market.config)
    restored.import_state(Market.decode_state(market.encode_state()))
    assert restored.rules(SHA) == rules
    assert restored.export_state() == market.export_state()


def test_the_price_down_rule_in_force_decides_the_next_lowering() -> None:
    core = make_core()
    funded(core, "buyer")
    order = standard_order(core, price_msat=200_000_000)
    core.market.set_price(account="buyer", order_id=order.id, price_msat=180_000_000, now_ms=0)
    with pytest.raises(InvalidState, match="too soon"):
        core.market.set_price(
            account="buyer", order_id=order.id, price_msat=170_000_000, now_ms=60_000
        )
    core.market.change_rules(
        algorithm=SHA, change=RuleChange(price_down_interval_s=30), now_ms=60_000
    )
    core.market.set_price(account="buyer", order_id=order.id, price_msat=170_000_000, now_ms=60_000)
    core.market.change_rules(algorithm=SHA, change=RuleChange(price_down_step_bps=0), now_ms=0)
    with pytest.raises(InvalidState, match="too far"):
        core.market.set_price(
            account="buyer", order_id=order.id, price_msat=169_000_000, now_ms=200_000
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (RuleChange(), "rules"),
        (RuleChange(fee_bps=10_001), "fee_bps"),
        (RuleChange(min_price_msat=0), "min_price_msat"),
        (RuleChange(price_down_step_bps=-1), "price_down_step_bps"),
        (RuleChange(price_down_interval_s=10**9), "price_down_interval_s"),
        (RuleChange(min_limit_hs=True), "min_limit_hs"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_change_is_refused_and_changes_nothing(change: RuleChange, field: str) -> None:
    market = make_core().market
    with pytest.raises(InvalidArgument) as info:
        market.change_rules(algorithm=SHA, change=change, now_ms=0)
    assert info.value.data["field"] == field
    assert market.drain_events() == []
    assert market.rules(SHA) == RULES


def test_the_event_names_only_what_changed() -> None:
    market = make_core().market
    market.change_rules(algorithm=SHA, change=RuleChange(fee_bps=50), now_ms=7)
    (event,) = market.drain_events()
    assert event == RulesChanged(algorithm=SHA, change=RuleChange(fee_bps=50), time_ms=7)
    assert b"min_price_msat" not in Market.encode_event(event)
