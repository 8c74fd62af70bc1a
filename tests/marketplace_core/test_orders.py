"""Every order rule and every refusal, through the facade. A refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from marketplace.core.errors import (
    InsufficientBalance,
    InvalidArgument,
    InvalidState,
    MarketError,
    NotFound,
    RuleViolation,
)
from marketplace.core.market import Market
from marketplace.core.model import Balance, OrderStatus, OrderType, OrderView
from tests.marketplace_core.helpers import (
    BTC,
    MH,
    RULES,
    SHA,
    funded,
    join,
    make_market,
    standard,
    worker,
)


@pytest.fixture
def market() -> Market:
    market = make_market()
    funded(market, "buyer")
    market.drain_events()
    return market


def refused(market: Market, error: type[MarketError], call: Callable[[], object]) -> MarketError:
    market.drain_events()
    before = market.balance("buyer")
    with pytest.raises(error) as info:
        call()
    assert market.drain_events() == []
    assert market.balance("buyer") == before
    market.check_invariants()
    return info.value


def test_create_escrows_and_views(market: Market) -> None:
    view = standard(market, amount_msat=150_000_000, limit_hs=2 * MH, duration_s=60, now_ms=5)
    assert view.id == "o-000001"
    assert (view.status, view.type, view.price_msat) == (
        OrderStatus.ACTIVE,
        "standard",
        200_000_000,
    )
    assert (view.amount_msat, view.spent_msat, view.remaining_msat) == (150_000_000, 0, 150_000_000)
    assert (view.created_ms, view.ends_ms, view.workers) == (5, 60_005, 0)
    assert market.balance("buyer") == Balance(
        available_msat=BTC - 150_000_000, escrowed_msat=150_000_000
    )
    assert standard(market).id == "o-000002"
    assert [o.id for o in market.list_orders(account="buyer")] == ["o-000001", "o-000002"]
    assert market.list_orders(account="buyer", status=OrderStatus.CANCELLED) == []
    market.check_invariants()


@pytest.mark.parametrize(
    ("error", "kwargs"),
    [
        (RuleViolation, {"price_msat": RULES.min_price_msat - 1}),
        (RuleViolation, {"limit_hs": RULES.min_limit_hs - 1}),
        (RuleViolation, {"amount_msat": RULES.min_amount_msat - 1}),
        (InvalidArgument, {"price_msat": 0}),
        (InvalidArgument, {"price_msat": None}),
        (InvalidArgument, {"limit_hs": -1}),
        (InvalidArgument, {"amount_msat": -5}),
        (InvalidArgument, {"amount_msat": 1.5}),
        (InvalidArgument, {"duration_s": 0}),
        (InvalidArgument, {"type": "weird"}),
        (InvalidArgument, {"algorithm": "x11"}),
        (InsufficientBalance, {"amount_msat": BTC + 1}),
        (NotFound, {"account": "nobody"}),
    ],
)
def test_create_refusals(
    market: Market, error: type[MarketError], kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {
        "account": "buyer",
        "algorithm": SHA,
        "type": OrderType.STANDARD,
        "price_msat": 200_000_000,
        "limit_hs": 0,
        "amount_msat": 100_000_000,
        "duration_s": None,
        "now_ms": 0,
    } | kwargs
    refused(market, error, lambda: market.create_order(**args))  # type: ignore[arg-type]


def test_min_errors_say_what_to_fix(market: Market) -> None:
    err = refused(market, RuleViolation, lambda: standard(market, price_msat=1))
    assert err.data == {"field": "price", "min_msat": RULES.min_price_msat}


def test_price_raise_any_time_lower_by_step_once_per_interval(market: Market) -> None:
    order = standard(market, price_msat=1_000_000_000, now_ms=0).id
    assert (
        market.set_price(
            account="buyer", order_id=order, price_msat=2_000_000_000, now_ms=1
        ).price_msat
        == 2_000_000_000
    )
    err = refused(
        market,
        InvalidState,
        lambda: market.set_price(
            account="buyer", order_id=order, price_msat=1_799_999_999, now_ms=2
        ),
    )
    assert err.message == "price lowered too far"
    market.set_price(account="buyer", order_id=order, price_msat=1_800_000_000, now_ms=2)
    err = refused(
        market,
        InvalidState,
        lambda: market.set_price(
            account="buyer", order_id=order, price_msat=1_700_000_000, now_ms=600_001
        ),
    )
    assert err.data["retry_at_ms"] == 600_002
    # Raising is still fine inside the interval.
    market.set_price(account="buyer", order_id=order, price_msat=1_900_000_000, now_ms=3)
    view = market.set_price(
        account="buyer", order_id=order, price_msat=1_710_000_000, now_ms=600_002
    )
    assert view.price_msat == 1_710_000_000
    refused(
        market,
        RuleViolation,
        lambda: market.set_price(account="buyer", order_id=order, price_msat=1, now_ms=10**9),
    )
    refused(
        market,
        InvalidArgument,
        lambda: market.set_price(account="buyer", order_id=order, price_msat=-1, now_ms=10**9),
    )


def test_shorter_price_down_interval_is_configurable() -> None:
    import msgspec

    from marketplace.core.model import MarketConfig, default_rules

    rules = msgspec.structs.replace(
        default_rules(SHA), price_down_interval_s=1, price_down_step_bps=5000
    )
    market = Market(config=MarketConfig(faucet=True, markets={SHA: rules}))
    funded(market, "buyer")
    order = standard(market, price_msat=100_000_000).id
    market.set_price(account="buyer", order_id=order, price_msat=50_000_000, now_ms=0)
    with pytest.raises(InvalidState):
        market.set_price(account="buyer", order_id=order, price_msat=40_000_000, now_ms=999)
    market.set_price(account="buyer", order_id=order, price_msat=25_000_000, now_ms=1000)


def test_limit_changes(market: Market) -> None:
    order = standard(market, limit_hs=5 * MH).id
    assert market.set_limit(account="buyer", order_id=order, limit_hs=0, now_ms=1).limit_hs == 0
    refused(
        market,
        RuleViolation,
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=1, now_ms=1),
    )
    refused(
        market,
        InvalidArgument,
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=-1, now_ms=1),
    )


def test_refill_adds_to_amount_and_escrow(market: Market) -> None:
    order = standard(market, amount_msat=100_000_000).id
    view = market.refill(account="buyer", order_id=order, amount_msat=5, now_ms=1)
    assert (view.amount_msat, view.remaining_msat) == (100_000_005, 100_000_005)
    assert market.balance("buyer").escrowed_msat == 100_000_005
    refused(
        market,
        InvalidArgument,
        lambda: market.refill(account="buyer", order_id=order, amount_msat=0, now_ms=1),
    )
    refused(
        market,
        InsufficientBalance,
        lambda: market.refill(account="buyer", order_id=order, amount_msat=BTC, now_ms=1),
    )
    market.check_invariants()


def test_cancel_releases_and_final_states_refuse_everything(market: Market) -> None:
    order = standard(market).id
    view = market.cancel(account="buyer", order_id=order, now_ms=7)
    assert (view.status, view.remaining_msat, view.ended_ms) == (OrderStatus.CANCELLED, 0, 7)
    assert market.balance("buyer") == Balance(available_msat=BTC, escrowed_msat=0)
    for call in [
        lambda: market.cancel(account="buyer", order_id=order, now_ms=8),
        lambda: market.refill(account="buyer", order_id=order, amount_msat=10, now_ms=8),
        lambda: market.set_price(account="buyer", order_id=order, price_msat=10**9, now_ms=8),
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=0, now_ms=8),
    ]:
        refused(market, InvalidState, call)


def test_other_accounts_orders_are_not_found(market: Market) -> None:
    funded(market, "other")
    order = standard(market).id
    for call in [
        lambda: market.get_order(account="other", order_id=order),
        lambda: market.cancel(account="other", order_id=order, now_ms=1),
        lambda: market.set_price(account="other", order_id=order, price_msat=10**9, now_ms=1),
        lambda: market.refill(account="other", order_id=order, amount_msat=10, now_ms=1),
        lambda: market.order_stats(account="other", order_id=order, since_ms=None, now_ms=1),
        lambda: market.get_order(account="buyer", order_id="o-999999"),
    ]:
        refused(market, NotFound, call)
    assert market.list_orders(account="other") == []


def test_fixed_quote_and_fixed_orders(market: Market) -> None:
    assert market.fixed_quote(SHA) == RULES.min_price_msat
    standard(market, price_msat=300_000_000, limit_hs=MH)
    standard(market, price_msat=500_000_000, limit_hs=MH)  # no hash power yet: not counted
    for conn in range(2):
        join(market, worker(conn), speed_hs=MH)
    market.rebalance(SHA, now_ms=0)
    assert market.fixed_quote(SHA) == 330_000_000 + 220_000_000  # 500M * 1.1
    market.cancel(account="buyer", order_id="o-000002", now_ms=1)
    market.rebalance(SHA, now_ms=1)
    # o-000001 now has both workers (unlimited? no: 1 MH limit + idle); quote from it.
    assert market.fixed_quote(SHA) == 330_000_000

    def fixed(limit_hs: int, **kw: object) -> OrderView:
        args: dict[str, object] = {"price_msat": None, "duration_s": 3600} | kw
        return market.create_order(
            account="buyer",
            algorithm=SHA,
            type=OrderType.FIXED,
            limit_hs=limit_hs,
            amount_msat=100_000_000,
            now_ms=2,
            **args,  # type: ignore[arg-type]
        )

    refused(market, RuleViolation, lambda: fixed(3 * MH))  # only 2 MH connected
    refused(market, RuleViolation, lambda: fixed(0))  # fixed orders need a limit
    refused(market, RuleViolation, lambda: fixed(MH, duration_s=None))
    err = refused(market, RuleViolation, lambda: fixed(MH, price_msat=300_000_000))
    assert err.data["fixed_price_msat"] == 330_000_000
    view = fixed(2 * MH, price_msat=400_000_000)
    assert view.price_msat == 330_000_000  # the quote, not the given ceiling
    assert view.ends_ms == 2 + 3_600_000
    moves = market.rebalance(SHA, now_ms=3)
    assert {m.order_id for m in moves} == {view.id}
    assert market.orderbook(SHA).orders[0].id == view.id  # fixed first
    # The fixed order holds everything: no room for another one.
    refused(market, RuleViolation, lambda: fixed(MH))
    refused(
        market,
        InvalidState,
        lambda: market.set_price(account="buyer", order_id=view.id, price_msat=10**9, now_ms=4),
    )
    refused(
        market,
        InvalidState,
        lambda: market.set_limit(account="buyer", order_id=view.id, limit_hs=MH, now_ms=4),
    )
    market.check_invariants()


def fixed_order(market: Market, limit_hs: int, price_msat: int | None = None) -> OrderView:
    return market.create_order(
        account="buyer",
        algorithm=SHA,
        type=OrderType.FIXED,
        price_msat=price_msat,
        limit_hs=limit_hs,
        amount_msat=100_000_000,
        duration_s=3600,
        now_ms=2,
    )


def test_the_fixed_quote_is_a_whole_satoshi_a_buyer_can_send_back(market: Market) -> None:
    standard(market, price_msat=2_001_000)  # 0.00002001 BTC
    for conn in range(2):
        join(market, worker(conn), speed_hs=MH)
    market.rebalance(SHA, now_ms=0)
    # 2,001,000 * 1.1 = 2,201,100 msat, which the wire cannot show: rounded up to the satoshi.
    assert market.fixed_quote(SHA) == 2_202_000
    view = fixed_order(market, MH, price_msat=2_202_000)  # "0.00002202", as shown
    assert view.price_msat == 2_202_000


def test_two_fixed_orders_cannot_be_promised_the_same_free_speed(market: Market) -> None:
    for conn in range(2):
        join(market, worker(conn), speed_hs=MH)
    market.rebalance(SHA, now_ms=0)
    fixed_order(market, 2 * MH)
    # No rebalance yet, so the first holds nothing: its limit is claimed all the same.
    err = refused(market, RuleViolation, lambda: fixed_order(market, MH))
    assert err.data["available_hs"] == 0
    market.rebalance(SHA, now_ms=3)
    refused(market, RuleViolation, lambda: fixed_order(market, MH))
    market.check_invariants()


def test_accounts_deposit_withdraw() -> None:
    market = make_market(faucet=False)
    market.create_account(account="a", now_ms=0)
    with pytest.raises(InvalidState):
        market.create_account(account="a", now_ms=0)
    with pytest.raises(InvalidState):
        market.create_account(account="__market__", now_ms=0)
    with pytest.raises(InvalidArgument):
        market.create_account(account="", now_ms=0)
    with pytest.raises(RuleViolation):
        market.deposit(account="a", amount_msat=1, now_ms=0)
    market.ensure_account(account="a", now_ms=0)
    market.ensure_account(account="b", now_ms=0)
    assert market.has_account("b")
    with pytest.raises(NotFound):
        market.balance("c")
    on = make_market()
    funded(on, "a", amount_msat=1000)
    with pytest.raises(InvalidArgument):
        on.deposit(account="a", amount_msat=0, now_ms=0)
    with pytest.raises(NotFound):
        on.deposit(account="zz", amount_msat=1, now_ms=0)
    with pytest.raises(InsufficientBalance):
        on.withdraw(account="a", amount_msat=1001, address="bc1q", now_ms=1)
    with pytest.raises(InvalidArgument):
        on.withdraw(account="a", amount_msat=-1, address="bc1q", now_ms=1)
    with pytest.raises(InvalidArgument):
        on.withdraw(account="a", amount_msat=1, address="", now_ms=1)
    zero = on.withdraw(account="a", amount_msat=0, address="bc1q", now_ms=1)
    entry = on.withdraw(account="a", amount_msat=400, address="bc1q", now_ms=2)
    assert (entry.kind, entry.amount_msat, entry.ref) == ("withdrawal", -400, "w-000002 bc1q")
    assert zero.ref == "w-000001 bc1q"
    assert on.balance("a") == Balance(available_msat=600, escrowed_msat=0)
    assert [e.id for e in on.ledger("a")] == [entry.id, zero.id, 1]
    assert on.ledger("a", limit=1, before=entry.id) == [zero]
    with pytest.raises(InvalidArgument):
        on.ledger("a", limit=-1)
    on.check_invariants()
