"""The market's account commands (open, deposit, withdraw), mixed into ``Market``.

Theory of operation
-------------------
An account is a ledger name (``ledger.py``): ``create_account`` opens one for a buyer and
refuses a name in use, ``ensure_account`` opens a seller's on its first share, ``deposit`` is
the faucet (off unless the operator turns it on) and ``withdraw`` records money leaving to an
address (the second factor and the address list are checked before, in ``security.py``). Like
every ``Market`` command these validate first, change nothing when they refuse, and emit the
events ``Book`` folds; run them inside ``Engine.execute``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from marketplace.core import events
from marketplace.core.book import MAX_NAME
from marketplace.core.errors import (
    InsufficientBalance,
    InvalidArgument,
    InvalidState,
    RuleViolation,
)
from marketplace.core.model import LedgerEntry
from marketplace.core.names import check_account_name
from marketplace.core.order_rules import require_int

if TYPE_CHECKING:
    from marketplace.core.book import Book
    from marketplace.core.model import MarketConfig


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise InvalidArgument(f"{field} must be a non-empty string of at most {MAX_NAME} chars")
    return value


class AccountCommands:
    """Account commands; a part of ``Market`` (see the module doc)."""

    if TYPE_CHECKING:
        _book: Book
        _config: MarketConfig

        def _emit(self, event: events.MarketEvent) -> None: ...

        def _account(self, account: str) -> str: ...

    def create_account(self, *, account: str, now_ms: int) -> None:
        """Command: open an account. Raises ``InvalidState`` if it exists, ``InvalidArgument``
        for a bad name."""
        check_account_name(account)
        if self._book.ledger.has(account):
            raise InvalidState("account exists", {"account": account})
        self._emit(events.AccountCreated(account=account, time_ms=now_ms))

    def ensure_account(self, *, account: str, now_ms: int) -> None:
        """Command: open ``account`` if it does not exist (sellers). Raises ``InvalidArgument``
        for a bad name."""
        check_account_name(account)
        if not self._book.ledger.has(account):
            self._emit(events.AccountCreated(account=account, time_ms=now_ms))

    def deposit(self, *, account: str, amount_msat: int, now_ms: int) -> LedgerEntry:
        """Command: faucet money into ``account``. Raises ``RuleViolation`` when the faucet is
        off, ``NotFound`` for an unknown account, ``InvalidArgument`` for an amount <= 0."""
        if not self._config.faucet:
            raise RuleViolation("the faucet is off", {"faucet": "off"})
        self._account(account)
        if require_int("amount", amount_msat) <= 0:
            raise InvalidArgument("amount must be positive", {"field": "amount"})
        self._emit(events.Deposited(account=account, amount_msat=amount_msat, time_ms=now_ms))
        return self._book.ledger.entries(account, limit=1)[0]

    def withdraw(self, *, account: str, amount_msat: int, address: str, now_ms: int) -> LedgerEntry:
        """Command: record a withdrawal of ``amount_msat`` (0 allowed) to ``address``.

        Raises ``NotFound`` (account), ``InvalidArgument`` (negative amount, bad address),
        ``InsufficientBalance`` (more than available).
        """
        self._account(account)
        _check_name("address", address)
        if require_int("amount", amount_msat) < 0:
            raise InvalidArgument("amount must not be negative", {"field": "amount"})
        self._require_available(account, amount_msat)
        withdrawal_id = f"w-{self._book.withdrawal_seq + 1:06d}"
        self._emit(
            events.Withdrawn(
                withdrawal_id=withdrawal_id,
                account=account,
                amount_msat=amount_msat,
                address=address,
                time_ms=now_ms,
            )
        )
        return self._book.ledger.entries(account, limit=1)[0]

    def _require_available(self, account: str, amount_msat: int) -> None:
        """Raise ``InsufficientBalance`` unless ``account`` has ``amount_msat`` available."""
        available = self._book.ledger.balance(account).available_msat
        if amount_msat > available:
            raise InsufficientBalance(
                "amount exceeds the available balance", {"available_msat": available}
            )
