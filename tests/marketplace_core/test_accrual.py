"""The charge's integer-with-remainder sums give exactly what the Fraction arithmetic gave.

``Accrual`` replaced ``Fraction`` in ``Order.charge`` (the order's accrued value and each
seller's period work) for speed. The reference below is the charge as it was written with
``Fraction``: every share, in any order, at any price, difficulty, market unit and work rule
(``work.py``), must charge the same whole msat, complete the order at the same share, and
leave the same exact sums and the same snapshot state, also across a snapshot taken in the
middle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.core.accrual import Accrual
from marketplace.core.model import OrderStatus, OrderType, SellerKey
from marketplace.core.money import UNIT_HS
from marketplace.core.orders import Order, share_value, share_value_ratio
from marketplace.core.work import LEGACY_WORK_RULE, WORK_RULE, hashes_per_diff1
from stratum.core.shares import Algorithm

ratios = st.tuples(st.integers(min_value=0, max_value=10**30), st.integers(1, 10**30))


@settings(max_examples=300, deadline=None)
@given(start=ratios, terms=st.lists(ratios, max_size=30))
def test_accrual_is_the_fraction_sum(start: tuple[int, int], terms: list[tuple[int, int]]) -> None:
    accrual = Accrual.of(*start)
    reference = Fraction(*start)
    for numerator, denominator in terms:
        accrual.add(numerator, denominator)
        reference += Fraction(numerator, denominator)
        assert accrual.value == reference
        assert accrual.whole == int(reference)
        assert 0 <= accrual.rem < accrual.den
    assert accrual.state() == (reference.numerator, reference.denominator)


def test_accrual_refuses_a_negative_or_empty_start() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Accrual.of(-1, 3)
    with pytest.raises(ValueError, match="non-negative"):
        Accrual.of(1, -3)
    with pytest.raises(ZeroDivisionError):
        Accrual.of(1, 0)


@dataclass
class FractionCharge:
    """``Order.charge`` as it was, with ``Fraction`` sums (the reference)."""

    amount_msat: int
    spent_msat: int = 0
    accrued: Fraction = Fraction(0)
    period_work: dict[SellerKey, Fraction] = field(default_factory=dict)
    completed: bool = False

    def charge(self, value: Fraction, *, seller: SellerKey, work: Fraction) -> int:
        if self.completed:
            return 0
        self.accrued += value
        due = int(self.accrued) - self.spent_msat
        charged = min(due, self.amount_msat - self.spent_msat)
        self.spent_msat += charged
        self.period_work[seller] = self.period_work.get(seller, 0) + work
        if self.spent_msat == self.amount_msat:
            self.completed = True
        return charged


#: Difficulties as miners get them: CPU-sized to pool-sized, vardiff's rounded values, and the
#: benchmark's 1e-12 (a long binary fraction).
difficulties = st.one_of(
    st.floats(min_value=1e-12, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-12, 1e-6, 0.0001, 0.001, 0.0015, 0.05, 1.0, 3.0, 65536.0]),
)
shares = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=10**15),  # price in msat (changes between shares)
        difficulties,
        st.integers(min_value=0, max_value=3),  # which seller
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    algorithm=st.sampled_from(list(Algorithm)),
    rule=st.sampled_from([LEGACY_WORK_RULE, WORK_RULE]),
    amount_msat=st.integers(min_value=1, max_value=10**18),
    history=shares,
    snapshot_at=st.integers(min_value=0, max_value=60),
)
def test_order_charge_is_the_fraction_charge(
    algorithm: Algorithm,
    rule: int,
    amount_msat: int,
    history: list[tuple[int, float, int]],
    snapshot_at: int,
) -> None:
    unit_hs = UNIT_HS[algorithm]
    hashes = hashes_per_diff1(algorithm, rule)
    order = Order(
        order_id="o-000001",
        seq=1,
        account="buyer",
        algorithm=algorithm,
        type=OrderType.STANDARD,
        price_msat=1,
        limit_hs=0,
        amount_msat=amount_msat,
        created_ms=0,
        ends_ms=None,
    )
    reference = FractionCharge(amount_msat)
    for i, (price_msat, difficulty, seller_no) in enumerate(history):
        if i == snapshot_at:  # a restart from a snapshot carries on exactly
            order = Order.from_state(order.export_state())
        seller = SellerKey(f"s{seller_no}", "w", algorithm)
        value = share_value(
            price_msat=price_msat, difficulty=difficulty, unit_hs=unit_hs, hashes_per_diff1=hashes
        )
        ratio = share_value_ratio(
            price_msat=price_msat, difficulty=difficulty, unit_hs=unit_hs, hashes_per_diff1=hashes
        )
        assert Fraction(*ratio) == value
        expected = reference.charge(value, seller=seller, work=Fraction(difficulty))
        charged = order.charge(ratio, seller=seller, work=difficulty.as_integer_ratio(), time_ms=i)
        assert charged == expected
        assert order.spent_msat == reference.spent_msat
        assert (order.status is OrderStatus.COMPLETED) is reference.completed
    assert order.accrued == reference.accrued
    assert order.period_work_exact() == reference.period_work
    state = order.export_state()
    assert state.accrued == (reference.accrued.numerator, reference.accrued.denominator)
    assert {(w.account, w.work) for w in state.period_work} == {
        (seller.account, (work.numerator, work.denominator))
        for seller, work in reference.period_work.items()
    }
