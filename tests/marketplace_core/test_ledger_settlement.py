"""Ledger arithmetic and the settlement split."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.core.ledger import Ledger, balance_of
from marketplace.core.model import Balance, LedgerKind, SellerKey
from marketplace.core.settlement import split_spend
from stratum.core.shares import Algorithm

K = LedgerKind


def seller(name: str) -> SellerKey:
    return SellerKey("s", name, Algorithm.SHA256D)


def test_ledger_buckets_and_pagination() -> None:
    ledger = Ledger()
    ledger.open("a")
    ledger.open("a")  # idempotent
    ledger.post(account="a", kind=K.DEPOSIT, amount_msat=1000, ref="faucet", time_ms=1)
    ledger.post(account="a", kind=K.ESCROW, amount_msat=-600, ref="o-1", time_ms=2)
    ledger.post(account="a", kind=K.CHARGE, amount_msat=-100, ref="s/o-1", time_ms=3)
    ledger.post(account="a", kind=K.RELEASE, amount_msat=500, ref="o-1", time_ms=4)
    ledger.post(account="a", kind=K.WITHDRAWAL, amount_msat=-300, ref="w-1", time_ms=5)
    assert ledger.balance("a") == Balance(available_msat=600, escrowed_msat=0)
    assert balance_of(ledger.all_entries()) == ledger.balance("a")
    newest = ledger.entries("a", limit=2)
    assert [e.kind for e in newest] == [K.WITHDRAWAL, K.RELEASE]
    older = ledger.entries("a", limit=10, before=newest[-1].id)
    assert [e.id for e in older] == [3, 2, 1]
    assert ledger.entries("a", limit=0) == []
    assert ledger.entries("nobody") == []


def test_ledger_refuses_wrong_signs_and_overdrafts() -> None:
    ledger = Ledger()
    ledger.open("a")
    with pytest.raises(AssertionError, match="wrong sign"):
        ledger.post(account="a", kind=K.DEPOSIT, amount_msat=-1, ref="", time_ms=0)
    with pytest.raises(AssertionError, match="available would be"):
        ledger.post(account="a", kind=K.WITHDRAWAL, amount_msat=-1, ref="", time_ms=0)
    with pytest.raises(AssertionError, match="no ledger account"):
        ledger.post(account="b", kind=K.DEPOSIT, amount_msat=1, ref="", time_ms=0)
    assert ledger.all_entries() == []


def test_ledger_check_catches_unbalanced_charges() -> None:
    ledger = Ledger()
    ledger.open("a")
    ledger.post(account="a", kind=K.DEPOSIT, amount_msat=100, ref="", time_ms=0)
    ledger.post(account="a", kind=K.ESCROW, amount_msat=-100, ref="", time_ms=0)
    ledger.check()
    ledger.post(account="a", kind=K.CHARGE, amount_msat=-10, ref="", time_ms=0)
    with pytest.raises(AssertionError):
        ledger.check()
    ledger.post(account="a", kind=K.EARNING, amount_msat=10, ref="", time_ms=0)
    ledger.check()


def test_split_exact_proportions_and_fee() -> None:
    split = split_spend(
        spend_msat=10_000,
        work={seller("a"): Fraction(1), seller("b"): Fraction(3)},
        fee_bps=200,
        fee_carry=Fraction(0),
    )
    assert split.fee_msat == 200
    assert split.payouts == [(seller("a"), 2450), (seller("b"), 7350)]
    assert split.fee_carry == 0


def test_split_largest_remainder_and_fee_carry() -> None:
    work = {seller("a"): Fraction(1), seller("b"): Fraction(1), seller("c"): Fraction(1)}
    split = split_spend(spend_msat=101, work=work, fee_bps=200, fee_carry=Fraction(0))
    # fee 2.02 -> 2, carry 0.02; pool 99 splits 33/33/33.
    assert split.fee_msat == 2
    assert split.fee_carry == Fraction(2, 100)
    assert [p.amount_msat for p in split.payouts] == [33, 33, 33]
    split = split_spend(spend_msat=100, work=work, fee_bps=0, fee_carry=Fraction(0))
    # 33.33 each: the one leftover msat goes to the first by key order (equal remainders).
    assert [p.amount_msat for p in split.payouts] == [34, 33, 33]
    uneven = {
        seller("a"): Fraction(1, 10),
        seller("b"): Fraction(6, 10),
        seller("c"): Fraction(3, 10),
    }
    split = split_spend(spend_msat=11, work=uneven, fee_bps=0, fee_carry=Fraction(0))
    # exact 1.1 / 6.6 / 3.3 -> floors 1/6/3, leftover 1 to b (largest remainder .6).
    assert [p.amount_msat for p in split.payouts] == [1, 7, 3]


def test_ties_do_not_always_favour_the_same_seller() -> None:
    # Equal work, one msat to give each period: who gets it depends on the settlement, not on
    # which name sorts first.
    work = {seller(name): Fraction(1) for name in ("a", "b", "c")}
    won = dict.fromkeys(work, 0)
    for period in range(300):
        split = split_spend(
            spend_msat=1, work=work, fee_bps=0, fee_carry=Fraction(0), tiebreak=f"s-{period}/o-1"
        )
        (payout,) = split.payouts
        won[payout.seller] += 1
    assert all(70 <= n <= 130 for n in won.values()), won


def test_fee_carry_accumulates_to_the_exact_percentage() -> None:
    carry = Fraction(0)
    fees = 0
    work = {seller("a"): Fraction(1)}
    for _ in range(100):
        split = split_spend(spend_msat=49, work=work, fee_bps=200, fee_carry=carry)
        carry = split.fee_carry
        fees += split.fee_msat
    assert fees == 4900 * 200 // 10_000  # 98 msat: exactly 2% of 4900
    assert carry == 0


def test_split_refuses_spend_without_work() -> None:
    with pytest.raises(ValueError, match="no work"):
        split_spend(spend_msat=10, work={}, fee_bps=200, fee_carry=Fraction(0))
    with pytest.raises(ValueError, match="non-negative"):
        split_spend(spend_msat=-1, work={}, fee_bps=200, fee_carry=Fraction(0))


@settings(max_examples=200, deadline=None)
@given(
    spend=st.integers(0, 10**9),
    works=st.lists(st.fractions(min_value=0, max_value=1000), min_size=1, max_size=12),
    fee_bps=st.integers(0, 10_000),
    carry=st.fractions(min_value=0, max_value=Fraction(99, 100)),
)
def test_split_conserves_every_msat(
    spend: int, works: list[Fraction], fee_bps: int, carry: Fraction
) -> None:
    work = {seller(f"w{i:02d}"): w for i, w in enumerate(works)}
    if sum(works) == 0:
        work[seller("z")] = Fraction(1)
    split = split_spend(spend_msat=spend, work=work, fee_bps=fee_bps, fee_carry=carry)
    assert split.fee_msat + sum(p.amount_msat for p in split.payouts) == spend
    assert split.fee_msat >= 0
    assert all(p.amount_msat > 0 for p in split.payouts)
    assert split.fee_msat + split.fee_carry == Fraction(spend * fee_bps, 10_000) + carry
    total = sum(work.values())
    pool = spend - split.fee_msat
    for payout in split.payouts:
        assert abs(payout.amount_msat - pool * work[payout.seller] / total) < 1
