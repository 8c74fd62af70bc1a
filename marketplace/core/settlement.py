"""Settlement: an order's spend split among the sellers whose work it bought.

Theory of operation
-------------------
Between two settlements an order accumulates its spend (whole msat charged for shares) and each
seller's accepted work (the exact sum of its share difficulties; work is proportional to it).
A settlement turns that into ledger lines for each order, conserving every msat:

1. The fee is ``spend * fee_bps / 10000`` plus the order's fee carry (the fraction of a msat
   owed by earlier settlements); the marketplace takes its floor and the order keeps the
   fraction as its new carry. Over the life of an order the fee is therefore the exact
   percentage of its spend, rounded down by less than one msat in total.
2. The rest (the pool) is split in proportion to work by the largest-remainder rule: each
   seller gets the floor of its exact share, and the msat left over go one each to the sellers
   with the largest fractional parts. Ties (equal work gives equal fractions) are broken by a
   hash of the settlement's ``tiebreak`` and the seller, so no seller wins every tie by the
   spelling of its name; without a ``tiebreak``, by the seller key's natural order. The parts
   add up to the pool exactly, so ``charge == fee + sum(earnings)`` for every order and period.

Everything is integer or ``Fraction`` arithmetic: replaying the same events gives the same
lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fractions import Fraction
from typing import NamedTuple

from marketplace.core.model import SellerKey

BPS = 10_000


class Payout(NamedTuple):
    seller: SellerKey
    amount_msat: int


class Split(NamedTuple):
    """One order's settlement: the fee, the sellers' payouts and the fee carry to keep."""

    fee_msat: int
    payouts: list[Payout]
    fee_carry: Fraction


def split_spend(
    *,
    spend_msat: int,
    work: Mapping[SellerKey, Fraction],
    fee_bps: int,
    fee_carry: Fraction,
    tiebreak: str = "",
) -> Split:
    """Split ``spend_msat`` into a fee and payouts proportional to ``work`` (see module doc).

    Promises ``fee + sum(payouts) == spend_msat`` with every part non-negative. Raises
    ``ValueError`` if there is spend but no positive work to pay for, or bad arguments.
    """
    if spend_msat < 0 or not 0 <= fee_bps <= BPS or fee_carry < 0:
        raise ValueError("spend, fee_bps and fee carry must be non-negative (fee_bps <= 10000)")
    exact_fee = Fraction(spend_msat * fee_bps, BPS) + fee_carry
    fee = min(int(exact_fee), spend_msat)
    carry = exact_fee - fee
    pool = spend_msat - fee
    total_work = sum(work.values(), Fraction(0))
    if pool == 0:
        return Split(fee_msat=fee, payouts=[], fee_carry=carry)
    if total_work <= 0:
        raise ValueError(f"{pool} msat to pay but no work to pay for")
    sellers = sorted(seller for seller, w in work.items() if w > 0)
    parts: list[tuple[SellerKey, int, Fraction]] = []
    given = 0
    for seller in sellers:
        exact = pool * work[seller] / total_work
        whole = int(exact)
        parts.append((seller, whole, exact - whole))
        given += whole
    leftover = pool - given
    # Largest fractional part first; then the tie-break rank (stable: then the sellers' order).
    rank = {seller: _rank(tiebreak, seller) for seller in sellers} if tiebreak else {}
    ordered = sorted(parts, key=lambda p: (-p[2], rank.get(p[0], b"")))
    bonus = {seller for seller, _, _ in ordered[:leftover]}
    payouts = [
        Payout(seller=seller, amount_msat=whole + (1 if seller in bonus else 0))
        for seller, whole, _ in parts
    ]
    return Split(fee_msat=fee, payouts=[p for p in payouts if p.amount_msat], fee_carry=carry)


def _rank(tiebreak: str, seller: SellerKey) -> bytes:
    return hashlib.sha256("\x00".join((tiebreak, *seller)).encode()).digest()
