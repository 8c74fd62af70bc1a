"""How much work a share proves, and under which rule a journal recorded it.

Theory of operation
-------------------
An accepted share of difficulty ``d`` proves ``d * 2**256 / T1`` hashes on average: ``d * 2**32``
for sha256d and ``d * 2**16`` for scrypt, whose difficulty-1 target is 65536 times easier
(market.md, "Work"; ``stratum.core.shares.HASHES_PER_DIFF1``). The first journals were written
when every algorithm counted ``d * 2**32``, and their balances must replay as they were: money
is history. So every ``ShareRecorded`` names the rule it was charged under (``work_rule``; an
event without the field is rule 1) and the fold prices it with that rule, while new shares are
recorded under ``WORK_RULE``. sha256d is the same under both.

Work here is a count of hashes: an exact ``int`` (the floor, for statistics and speeds) or the
factor money multiplies by (``hashes_per_diff1``).
"""

from __future__ import annotations

from typing import Final

from stratum.core.shares import HASHES_PER_DIFF1, Algorithm

#: The first rule: every algorithm counted ``d * 2**32`` (journals before the scrypt fix).
LEGACY_WORK_RULE: Final = 1
#: The rule new shares are recorded under: ``HASHES_PER_DIFF1`` of the share's algorithm.
WORK_RULE: Final = 2


#: Each rule's hashes per share of difficulty 1, per algorithm (looked up for every share).
_HASHES: Final[dict[int, dict[Algorithm, int]]] = {
    WORK_RULE: dict(HASHES_PER_DIFF1),
    LEGACY_WORK_RULE: dict.fromkeys(Algorithm, 2**32),
}
_HASHES_FLOAT: Final = {
    rule: {algorithm: float(hashes) for algorithm, hashes in table.items()}
    for rule, table in _HASHES.items()
}


def hashes_per_diff1(algorithm: Algorithm, rule: int = WORK_RULE) -> int:
    """Hashes one share of difficulty 1 proves under ``rule``. Raises ``ValueError`` for a rule
    no journal was written with."""
    table = _HASHES.get(rule)
    if table is None:
        raise _unknown(rule)
    return table[algorithm]


def share_work(difficulty: float, algorithm: Algorithm, rule: int = WORK_RULE) -> int:
    """Whole hashes one accepted share of ``difficulty`` proves under ``rule`` (exact floor).
    Raises ``ValueError`` for a rule no journal was written with.

    Multiplying a float by a power of two is exact, so this is ``floor(difficulty * 2**k)``.
    """
    table = _HASHES_FLOAT.get(rule)
    if table is None:
        raise _unknown(rule)
    return int(difficulty * table[algorithm])


def _unknown(rule: int) -> ValueError:
    return ValueError(f"unknown work rule {rule}")
