"""Every order rule and every refusal, through the market's commands. A refusal changes nothing."""

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
from marketplace.core.model import Balance, OrderStatus, OrderType, OrderView
from tests.marketplace_core.helpers import (
    BTC,
    MH,
    RULES,
    SHA,
    Core,
    funded,
    join,
    make_core,
    standard,
    worker,
)


@pytest.fixture
def core() -> Core:
    core = make_core()
    funded(core, "buyer")
    core.market.drain_events()
    return core


def refused(core: Core, error: type[MarketError], call: Callable[[], object]) -> MarketError:
    market = core.market
    market.drain_events()
    before = market.balance("buyer")
    with pytest.raises(error) as info:
        call()
    assert market.drain_events() == []
    assert market.balance("buyer") == before
    core.check()
    return info.value


def test_create_escrows_and_views(core: Core) -> None:
    market, views = core.market, core.views
    view = standard(core, amount_msat=150_000_000, limit_hs=2 * MH, duration_s=60, now_ms=5)
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
    assert standard(core).id == "o-000002"
    assert [o.id for o in views.list_orders(account="buyer")] == ["o-000001", "o-000002"]
    assert views.list_orders(account="buyer", status=OrderStatus.CANCELLED) == []
    core.check()


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
def test_create_refusals(core: Core, error: type[MarketError], kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "account": "buyer",
        "algorithm": SHA,
        "type": OrderType.STANDARD,
        "price_msat": 200_000_000,
        "limit_hs": 0,
        "amount_msat": 100_000_000,
        "duration_s": None,
        "now_ms": 0,
        "fleet": core.fleet,
    } | kwargs
    refused(core, error, lambda: core.market.create_order(**args))  # type: ignore[arg-type]


def test_min_errors_say_what_to_fix(core: Core) -> None:
    err = refused(core, RuleViolation, lambda: standard(core, price_msat=1))
    assert err.data == {"field": "price", "min_msat": RULES.min_price_msat}


def test_price_raise_any_time_lower_by_step_once_per_interval(core: Core) -> None:
    market, views = core.market, core.views
    order = standard(core, price_msat=1_000_000_000, now_ms=0).id
    market.set_price(account="buyer", order_id=order, price_msat=2_000_000_000, now_ms=1)
    assert views.get_order(account="buyer", order_id=order).price_msat == 2_000_000_000
    err = refused(
        core,
        InvalidState,
        lambda: market.set_price(
            account="buyer", order_id=order, price_msat=1_799_999_999, now_ms=2
        ),
    )
    assert err.message == "price lowered too far"
    market.set_price(account="buyer", order_id=order, price_msat=1_800_000_000, now_ms=2)
    err = refused(
        core,
        InvalidState,
        lambda: market.set_price(
            account="buyer", order_id=order, price_msat=1_700_000_000, now_ms=600_001
        ),
    )
    assert err.data["retry_at_ms"] == 600_002
    # Raising is still fine inside the interval.
    market.set_price(account="buyer", order_id=order, price_msat=1_900_000_000, now_ms=3)
    market.set_price(account="buyer", order_id=order, price_msat=1_710_000_000, now_ms=600_002)
    assert views.get_order(account="buyer", order_id=order).price_msat == 1_710_000_000
    refused(
        core,
        RuleViolation,
        lambda: market.set_price(account="buyer", order_id=order, price_msat=1, now_ms=10**9),
    )
    refused(
        core,
        InvalidArgument,
        lambda: market.set_price(account="buyer", order_id=order, price_msat=-1, now_ms=10**9),
    )


def test_shorter_price_down_interval_is_configurable() -> None:
    import msgspec

    from marketplace.core.model import MarketConfig, default_rules

    rules = msgspec.structs.replace(
        default_rules(SHA), price_down_interval_s=1, price_down_step_bps=5000
    )
    core = Core(MarketConfig(faucet=True, markets={SHA: rules}))
    market = core.market
    funded(core, "buyer")
    order = standard(core, price_msat=100_000_000).id
    market.set_price(account="buyer", order_id=order, price_msat=50_000_000, now_ms=0)
    with pytest.raises(InvalidState):
        market.set_price(account="buyer", order_id=order, price_msat=40_000_000, now_ms=999)
    market.set_price(account="buyer", order_id=order, price_msat=25_000_000, now_ms=1000)


def test_limit_changes(core: Core) -> None:
    market, views = core.market, core.views
    order = standard(core, limit_hs=5 * MH).id
    market.set_limit(account="buyer", order_id=order, limit_hs=0, now_ms=1)
    assert views.get_order(account="buyer", order_id=order).limit_hs == 0
    refused(
        core,
        RuleViolation,
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=1, now_ms=1),
    )
    refused(
        core,
        InvalidArgument,
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=-1, now_ms=1),
    )


def test_refill_adds_to_amount_and_escrow(core: Core) -> None:
    market, views = core.market, core.views
    order = standard(core, amount_msat=100_000_000).id
    market.refill(account="buyer", order_id=order, amount_msat=5, now_ms=1)
    view = views.get_order(account="buyer", order_id=order)
    assert (view.amount_msat, view.remaining_msat) == (100_000_005, 100_000_005)
    assert market.balance("buyer").escrowed_msat == 100_000_005
    refused(
        core,
        InvalidArgument,
        lambda: market.refill(account="buyer", order_id=order, amount_msat=0, now_ms=1),
    )
    refused(
        core,
        InsufficientBalance,
        lambda: market.refill(account="buyer", order_id=order, amount_msat=BTC, now_ms=1),
    )
    core.check()


def test_cancel_releases_and_final_states_refuse_everything(core: Core) -> None:
    market, views = core.market, core.views
    order = standard(core).id
    market.cancel(account="buyer", order_id=order, now_ms=7)
    view = views.get_order(account="buyer", order_id=order)
    assert (view.status, view.remaining_msat, view.ended_ms) == (OrderStatus.CANCELLED, 0, 7)
    assert market.balance("buyer") == Balance(available_msat=BTC, escrowed_msat=0)
    for call in [
        lambda: market.cancel(account="buyer", order_id=order, now_ms=8),
        lambda: market.refill(account="buyer", order_id=order, amount_msat=10, now_ms=8),
        lambda: market.set_price(account="buyer", order_id=order, price_msat=10**9, now_ms=8),
        lambda: market.set_limit(account="buyer", order_id=order, limit_hs=0, now_ms=8),
    ]:
        refused(core, InvalidState, call)


def test_other_accounts_orders_are_not_found(core: Core) -> None:
    market, views = core.market, core.views
    funded(core, "other")
    order = standard(core).id
    for call in [
        lambda: views.get_order(account="other", order_id=order),
        lambda: market.cancel(account="other", order_id=order, now_ms=1),
        lambda: market.set_price(account="other", order_id=order, price_msat=10**9, now_ms=1),
        lambda: market.refill(account="other", order_id=order, amount_msat=10, now_ms=1),
        lambda: views.order_stats(account="other", order_id=order, since_ms=None, now_ms=1),
        lambda: views.get_order(account="buyer", order_id="o-999999"),
    ]:
        refused(core, NotFound, call)
    assert views.list_orders(account="other") == []


def test_fixed_quote_and_fixed_orders(core: Core) -> None:
    market, views = core.market, core.views
    assert market.fixed_quote(SHA, fleet=core.fleet) == RULES.min_price_msat
    standard(core, price_msat=300_000_000, limit_hs=MH)
    standard(core, price_msat=500_000_000, limit_hs=MH)  # no hash power yet: not counted
    for conn in range(2):
        join(core, worker(conn), speed_hs=MH)
    core.rebalance(SHA, now_ms=0)
    assert market.fixed_quote(SHA, fleet=core.fleet) == 330_000_000 + 220_000_000  # 500M * 1.1
    market.cancel(account="buyer", order_id="o-000002", now_ms=1)
    core.rebalance(SHA, now_ms=1)
    # o-000001 now has both workers (unlimited? no: 1 MH limit + idle); quote from it.
    assert market.fixed_quote(SHA, fleet=core.fleet) == 330_000_000

    def fixed(limit_hs: int, **kw: object) -> OrderView:
        args: dict[str, object] = {"price_msat": None, "duration_s": 3600} | kw
        order_id = market.create_order(
            account="buyer",
            algorithm=SHA,
            type=OrderType.FIXED,
            limit_hs=limit_hs,
            amount_msat=100_000_000,
            now_ms=2,
            fleet=core.fleet,
            **args,  # type: ignore[arg-type]
        )
        return views.get_order(account="buyer", order_id=order_id)

    refused(core, RuleViolation, lambda: fixed(3 * MH))  # only 2 MH connected
    refused(core, RuleViolation, lambda: fixed(0))  # fixed orders need a limit
    refused(core, RuleViolation, lambda: fixed(MH, duration_s=None))
    err = refused(core, RuleViolation, lambda: fixed(MH, price_msat=300_000_000))
    assert err.data["fixed_price_msat"] == 330_000_000
    view = fixed(2 * MH, price_msat=400_000_000)
    assert view.price_msat == 330_000_000  # the quote, not the given ceiling
    assert view.ends_ms == 2 + 3_600_000
    moves = core.rebalance(SHA, now_ms=3)
    assert {m.order_id for m in moves} == {view.id}
    assert views.orderbook(SHA).orders[0].id == view.id  # fixed first
    # The fixed order holds everything: no room for another one.
    refused(core, RuleViolation, lambda: fixed(MH))
    refused(
        core,
        InvalidState,
        lambda: market.set_price(account="buyer", order_id=view.id, price_msat=10**9, now_ms=4),
    )
    refused(
        core,
        InvalidState,
        lambda: market.set_limit(account="buyer", order_id=view.id, limit_hs=MH, now_ms=4),
    )
    core.check()


def fixed_order(core: Core, limit_hs: int, price_msat: int | None = None) -> OrderView:
    order_id = core.market.create_order(
        account="buyer",
        algorithm=SHA,
        type=OrderType.FIXED,
        price_msat=price_msat,
        limit_hs=limit_hs,
        amount_msat=100_000_000,
        duration_s=3600,
        now_ms=2,
        fleet=core.fleet,
    )
    return core.views.get_order(account="buyer", order_id=order_id)


def test_the_fixed_quote_is_a_whole_satoshi_a_buyer_can_send_back(core: Core) -> None:
    market = core.market
    standard(core, price_msat=2_001_000)  # 0.00002001 BTC
    for conn in range(2):
        join(core, worker(conn), speed_hs=MH)
    core.rebalance(SHA, now_ms=0)
    # 2,001,000 * 1.1 = 2,201,100 msat, which the wire cannot show: rounded up to the satoshi.
    assert market.fixed_quote(SHA, fleet=core.fleet) == 2_202_000
    view = fixed_order(core, MH, price_msat=2_202_000)  # "0.00002202", as shown
    assert view.price_msat == 2_202_000


def test_two_fixed_orders_cannot_be_promised_the_same_free_speed(core: Core) -> None:
    for conn in range(2):
        join(core, worker(conn), speed_hs=MH)
    core.rebalance(SHA, now_ms=0)
    fixed_order(core, 2 * MH)
    # No rebalance yet, so the first holds nothing: its limit is claimed all the same.
    err = refused(core, RuleViolation, lambda: fixed_order(core, MH))
    assert err.data["available_hs"] == 0
    core.rebalance(SHA, now_ms=3)
    refused(core, RuleViolation, lambda: fixed_order(core, MH))
    core.check()


def test_accounts_deposit_withdraw() -> None:
    market = make_core(faucet=False).market
    market.create_account(account="a", now_ms=0)
    with pytest.raises(InvalidState):
        market.create_account(account="a", now_ms=0)
    with pytest.raises(InvalidState):
        market.create_account(account="operator", now_ms=0)
    with pytest.raises(InvalidArgument):
        market.create_account(account="", now_ms=0)
    with pytest.raises(RuleViolation):
        market.deposit(account="a", amount_msat=1, now_ms=0)
    market.ensure_account(account="a", now_ms=0)
    market.ensure_account(account="b", now_ms=0)
    assert market.has_account("b")
    with pytest.raises(NotFound):
        market.balance("c")
    on_core = make_core()
    on = on_core.market
    funded(on_core, "a", amount_msat=1000)
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
    on_core.check()
