"""Rebuilding a component in place: a ``blank`` twin folds the durable events, and the live
component ``become``s it, so every holder of a reference sees the durable state at once."""

from __future__ import annotations

import itertools

import pytest

from marketplace.core.key_events import Scope
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.market_time import MarketTime
from marketplace.core.security import AccountSecurity, Actor
from marketplace.core.views import MarketViews

from .helpers import BTC, make_core, make_market, standard


def test_a_market_becomes_its_durable_prefix_and_its_holders_see_it() -> None:
    core = make_core()
    market = core.market
    views = MarketViews(market, core.fleet)  # held across the rebuild, as the API holds it
    market.create_account(account="buyer", now_ms=0)
    market.deposit(account="buyer", amount_msat=BTC, now_ms=0)
    durable = [Market.encode_event(e) for e in market.drain_events()]
    order = standard(core, now_ms=1)  # "journaled" in a batch that failed
    market.drain_events()
    assert views.list_orders(account="buyer") == [order]

    twin = market.blank()
    for body in durable:
        twin.apply(Market.decode_event(body))
    market.become(twin)

    assert views.list_orders(account="buyer") == []
    assert market.balance("buyer").available_msat == BTC
    # Ids continue from the durable state: the next order takes the failed one's id.
    assert standard(core, now_ms=2).id == order.id


def test_a_key_ring_becomes_its_durable_prefix() -> None:
    ids = itertools.count(1)
    keys = KeyRing(master_key=b"k" * 32, new_key_id=lambda: f"k-{next(ids)}")
    kept = keys.create_key(
        account="a", label="kept", scopes=[Scope.READ], expires_ms=None, now_ms=1
    )
    durable = [KeyRing.encode_event(e) for e in keys.drain_events()]
    lost = keys.create_key(
        account="a", label="lost", scopes=[Scope.READ], expires_ms=None, now_ms=2
    )
    keys.drain_events()

    twin = keys.blank()
    for body in durable:
        twin.apply(KeyRing.decode_event(body))
    keys.become(twin)

    assert keys.get(kept.key.key_id) is not None
    assert keys.get(lost.key.key_id) is None
    # The same master key: the kept key's secret is the one its owner holds.
    assert keys.secret_of(kept.key.key_id, kept.key.version) == kept.secret


def test_become_refuses_another_class_and_undrained_events() -> None:
    market = make_market()
    with pytest.raises(TypeError):
        market.become(KeyRing(master_key=b"k" * 32, new_key_id=str))  # type: ignore[arg-type]
    market.create_account(account="a", now_ms=0)
    with pytest.raises(RuntimeError, match="not yet drained"):
        market.become(market.blank())
    assert market.has_account("a")


def test_account_security_becomes_its_durable_prefix() -> None:
    security = AccountSecurity(master_key=b"k" * 32, new_id=lambda: "e-1", address_lock_ms=0)
    actor = Actor("k-1", None)
    security.add_address(account="a", address="bc1kept", label="kept", actor=actor, now_ms=1)
    durable = [AccountSecurity.encode_event(e) for e in security.drain_events()]
    security.add_address(account="a", address="bc1lost", label="lost", actor=actor, now_ms=2)
    security.drain_events()

    twin = security.blank()
    for body in durable:
        twin.apply(AccountSecurity.decode_event(body))
    security.become(twin)

    assert [a.address for a in security.addresses("a")] == ["bc1kept"]
    # The same derived key: a second factor enrolled before the rebuild keeps its secret.
    assert security.reveal_enrollment("a", "e-1") == AccountSecurity(
        master_key=b"k" * 32, new_id=str
    ).reveal_enrollment("a", "e-1")


def test_market_time_becomes_its_durable_offset() -> None:
    timeline = MarketTime()
    timeline.advance(offset_ms=1_000, time_ms=5_000)
    durable = [MarketTime.encode_event(e) for e in timeline.drain_events()]
    timeline.advance(offset_ms=9_000, time_ms=20_000)  # an advance whose commit failed
    timeline.drain_events()

    twin = timeline.blank()
    for body in durable:
        twin.apply(MarketTime.decode_event(body))
    timeline.become(twin)

    assert (timeline.offset_ms, timeline.time_ms) == (1_000, 5_000)
