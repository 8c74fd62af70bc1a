"""Exact sums that only grow, kept as a whole part and a carried remainder.

Theory of operation
-------------------
An order accrues the exact value of every share it is charged (``price * difficulty * 2**32 /
(unit * 86400)`` msat: a rational, as a float difficulty is an exact binary fraction) and each
seller's work in a settlement period is the exact sum of its shares' difficulties. A
``Fraction`` keeps such a sum exact but reduces every result by the gcd of ever larger
integers, once or twice per share, and that was a third of what recording a share cost.

``Accrual`` keeps ``whole + rem / den`` instead: ``den`` is a common denominator of every term
added so far, ``rem`` the remainder carried below it (``0 <= rem < den``), ``whole`` the part
that a charge's floor reads. The terms of one market share their denominator as long as the
difficulty's binary denominator stays the same, so adding one is an integer addition and a
comparison; a term over another denominator moves the sum to their least common multiple
(which a later term of the smaller one divides). No reduction is ever needed for exactness:
the value is the very rational a ``Fraction`` sum would hold (``value``), which the hypothesis
test in ``tests/marketplace_core/test_accrual.py`` checks against the ``Fraction`` arithmetic
it replaced. Snapshots store that ``Fraction``'s reduced numerator and denominator (``state``),
so their format did not change.
"""

from __future__ import annotations

import math
from fractions import Fraction

#: An exact rational as (numerator, denominator); not necessarily reduced.
Ratio = tuple[int, int]


class Accrual:
    """A non-negative exact sum (see the module doc)."""

    __slots__ = ("den", "rem", "whole")

    def __init__(self) -> None:
        self.whole = 0
        self.rem = 0
        self.den = 1

    @classmethod
    def of(cls, numerator: int, denominator: int) -> Accrual:
        """The sum that starts at ``numerator / denominator``. Raises ``ZeroDivisionError``
        for a zero denominator, ``ValueError`` for a negative value or denominator."""
        if denominator < 0 or numerator < 0:
            raise ValueError("an accrual is non-negative, with a positive denominator")
        accrual = cls()
        accrual.whole, accrual.rem = divmod(numerator, denominator)
        accrual.den = denominator
        return accrual

    def add(self, numerator: int, denominator: int) -> None:
        """Add ``numerator / denominator`` exactly (``numerator >= 0``, ``denominator > 0``:
        the caller's values, not checked here)."""
        den = self.den
        if denominator != den:
            if den % denominator:
                common = math.lcm(den, denominator)
                self.rem *= common // den
                self.den = den = common
            numerator *= den // denominator
        rem = self.rem + numerator
        if rem >= den:
            carry, rem = divmod(rem, den)
            self.whole += carry
        self.rem = rem

    @property
    def value(self) -> Fraction:
        """The exact sum."""
        return self.whole + Fraction(self.rem, self.den)

    def state(self) -> Ratio:
        """The sum reduced, as (numerator, denominator): what ``Fraction`` would give."""
        value = self.value
        return value.numerator, value.denominator
