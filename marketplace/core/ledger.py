"""The append-only ledger and the balances derived from it.

Theory of operation
-------------------
Every movement of money is one ``LedgerEntry`` with a kind and a signed msat amount. Each kind
moves money in or between the two buckets of an account in a fixed way:

=========== ============ ============
kind        available    escrowed
=========== ============ ============
deposit     +amount      .
withdrawal  +amount (<0) .
escrow      +amount (<0) -amount
release     +amount      -amount
charge      .            +amount (<0)
earning     +amount      .
fee         +amount      .
refund      +amount      .
refund_paid +amount (<0) .
=========== ============ ============

Balances are cached per account and updated as entries are posted; ``check()`` recomputes them
from the entries and compares. Money enters only by deposit and leaves only by withdrawal:
charges move escrow to earnings and fees in the same settlement, so the sum of all balances
equals deposits minus withdrawals whenever no settlement is half done (which ``Market`` never
exposes, settlements being one event). A refund moves money from the fee account to a buyer
(``refund`` + ``refund_paid``, in the same settlement), so it changes no total.

Balances never go negative, except on the accounts opened with ``overdraft`` (the marketplace's
fee account): refunds for shares a buyer's pool rejected are the marketplace's cost, and the
fees it took so far may not cover them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from marketplace.core.model import Balance, LedgerEntry, LedgerKind

#: Sign an entry's amount must have, by kind (+1 non-negative, -1 non-positive).
_SIGN: dict[LedgerKind, int] = {
    LedgerKind.DEPOSIT: 1,
    LedgerKind.WITHDRAWAL: -1,
    LedgerKind.ESCROW: -1,
    LedgerKind.RELEASE: 1,
    LedgerKind.CHARGE: -1,
    LedgerKind.EARNING: 1,
    LedgerKind.FEE: 1,
    LedgerKind.REFUND: 1,
    LedgerKind.REFUND_PAID: -1,
}
_MOVES_AVAILABLE = frozenset(_SIGN) - {LedgerKind.CHARGE}
_MOVES_ESCROW_OPPOSITE = frozenset({LedgerKind.ESCROW, LedgerKind.RELEASE})


def bucket_effects(kind: LedgerKind, amount_msat: int) -> tuple[int, int]:
    """(change of available, change of escrowed) of one entry."""
    available = amount_msat if kind in _MOVES_AVAILABLE else 0
    if kind in _MOVES_ESCROW_OPPOSITE:
        escrowed = -amount_msat
    elif kind is LedgerKind.CHARGE:
        escrowed = amount_msat
    else:
        escrowed = 0
    return available, escrowed


def balance_of(entries: Iterable[LedgerEntry]) -> Balance:
    """The balance that a sequence of entries adds up to."""
    available = escrowed = 0
    for entry in entries:
        d_available, d_escrowed = bucket_effects(entry.kind, entry.amount_msat)
        available += d_available
        escrowed += d_escrowed
    return Balance(available_msat=available, escrowed_msat=escrowed)


class LedgerState(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger for snapshots: the accounts in opening order and every entry in order."""

    accounts: list[str]
    entries: list[LedgerEntry]


class Ledger:
    """All accounts' entries, in order, with cached balances."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._by_account: dict[str, list[LedgerEntry]] = {}
        self._available: dict[str, int] = {}
        self._escrowed: dict[str, int] = {}
        self._overdraft: set[str] = set()

    def open(self, account: str, *, overdraft: bool = False) -> None:
        """Start an account with empty balances (``overdraft``: its available balance may go
        negative). Idempotent."""
        if account not in self._by_account:
            self._by_account[account] = []
            self._available[account] = 0
            self._escrowed[account] = 0
        if overdraft:
            self._overdraft.add(account)

    def has(self, account: str) -> bool:
        """Whether ``account`` has been opened."""
        return account in self._by_account

    def accounts(self) -> list[str]:
        """Every open account, in opening order."""
        return list(self._by_account)

    def post(
        self, *, account: str, kind: LedgerKind, amount_msat: int, ref: str, time_ms: int
    ) -> LedgerEntry:
        """Append one entry and update the balances.

        Raises ``AssertionError`` for an amount of the wrong sign, an unknown account, or a
        balance that would go negative: all of them bugs, since commands validate first.
        """
        assert account in self._by_account, f"no ledger account {account!r}"
        assert amount_msat * _SIGN[kind] >= 0, f"{kind} of {amount_msat} has the wrong sign"
        d_available, d_escrowed = bucket_effects(kind, amount_msat)
        available = self._available[account] + d_available
        escrowed = self._escrowed[account] + d_escrowed
        assert available >= 0 or account in self._overdraft, (
            f"{account} available would be {available}"
        )
        assert escrowed >= 0, f"{account} escrowed would be {escrowed}"
        entry = LedgerEntry(
            id=len(self._entries) + 1,
            account=account,
            kind=kind,
            amount_msat=amount_msat,
            ref=ref,
            time_ms=time_ms,
        )
        self._entries.append(entry)
        self._by_account[account].append(entry)
        self._available[account] = available
        self._escrowed[account] = escrowed
        return entry

    def export_state(self) -> LedgerState:
        """The accounts and entries (entries are immutable, so they are shared, not copied)."""
        return LedgerState(accounts=list(self._by_account), entries=list(self._entries))

    @classmethod
    def from_state(cls, state: LedgerState, *, overdraft: tuple[str, ...] = ()) -> Ledger:
        """The ledger that exported ``state``, balances recomputed from its entries, with
        ``overdraft`` accounts allowed below zero.

        Raises ``ValueError`` for entries out of order or of an account not listed."""
        ledger = cls()
        ledger._overdraft.update(overdraft)
        for account in state.accounts:
            ledger.open(account)
        for number, entry in enumerate(state.entries, start=1):
            if entry.id != number or entry.account not in ledger._by_account:
                raise ValueError(f"ledger entry {entry.id} out of place in the snapshot")
            d_available, d_escrowed = bucket_effects(entry.kind, entry.amount_msat)
            ledger._entries.append(entry)
            ledger._by_account[entry.account].append(entry)
            ledger._available[entry.account] += d_available
            ledger._escrowed[entry.account] += d_escrowed
        return ledger

    def balance(self, account: str) -> Balance:
        """The cached balance of ``account`` (zero for an unknown account)."""
        return Balance(
            available_msat=self._available.get(account, 0),
            escrowed_msat=self._escrowed.get(account, 0),
        )

    def entries(
        self, account: str, *, limit: int = 50, before: int | None = None
    ) -> list[LedgerEntry]:
        """``account``'s entries newest first, at most ``limit``, with ids below ``before``."""
        own = self._by_account.get(account, [])
        end = len(own)
        if before is not None:
            # Entry ids grow with position, so bisect on them.
            lo, hi = 0, len(own)
            while lo < hi:
                mid = (lo + hi) // 2
                if own[mid].id < before:
                    lo = mid + 1
                else:
                    hi = mid
            end = lo
        start = max(0, end - max(0, limit))
        return own[start:end][::-1]

    def all_entries(self) -> list[LedgerEntry]:
        """Every entry of every account, oldest first (a copy)."""
        return list(self._entries)

    def total_by_kind(self) -> dict[LedgerKind, int]:
        """The sum of all entries' amounts per kind (every kind present)."""
        totals = dict.fromkeys(LedgerKind, 0)
        for entry in self._entries:
            totals[entry.kind] += entry.amount_msat
        return totals

    def check(self) -> None:
        """Recompute every balance from the entries; ``AssertionError`` with the reason if a
        cached balance differs, goes negative, or money was created or destroyed."""
        for account, own in self._by_account.items():
            derived = balance_of(own)
            cached = self.balance(account)
            assert derived == cached, f"{account}: ledger says {derived}, cache says {cached}"
            assert derived.available_msat >= 0 or account in self._overdraft, (
                f"{account}: negative available"
            )
            assert derived.escrowed_msat >= 0, f"{account}: negative escrow"
        totals = self.total_by_kind()
        held = sum(self._available.values()) + sum(self._escrowed.values())
        outside = totals[LedgerKind.DEPOSIT] + totals[LedgerKind.WITHDRAWAL]
        assert held == outside, f"balances hold {held}, deposits - withdrawals = {outside}"
        paid = totals[LedgerKind.EARNING] + totals[LedgerKind.FEE]
        assert -totals[LedgerKind.CHARGE] == paid, (
            f"charged {-totals[LedgerKind.CHARGE]} but credited {paid}"
        )
        assert totals[LedgerKind.REFUND] == -totals[LedgerKind.REFUND_PAID], (
            f"refunded {totals[LedgerKind.REFUND]} but paid {-totals[LedgerKind.REFUND_PAID]}"
        )
