"""Withdrawal addresses: each account's list, each address usable after a lock period.

Theory of operation
-------------------
An account with an empty list withdraws anywhere (as before the list existed). Once it has an
address on its list, a withdrawal goes only to a listed address whose lock has passed: a key
thief who adds their own address must wait the lock period (``serve --address-lock``, 24 h by
default), during which the owner sees ``address.added`` in the activity log and removes it.
The lock runs on market time (``now_ms``), so an operator's ``admin.time.advance`` passes it in
tests; ``usable_from_ms`` is fixed when the address is added and journaled with it.

``AddressBook`` checks (``check_add``, ``check_remove``, ``check_withdrawal``: each raises a
``MarketError`` and changes nothing) and folds the events; the component emits them.
"""

from __future__ import annotations

from typing import Final

from marketplace.core.errors import InvalidArgument, InvalidState, NotFound, RuleViolation
from marketplace.core.security_events import AddressAdded, AddressView

MAX_ADDRESSES: Final = 100
MAX_ADDRESS: Final = 128
MAX_LABEL: Final = 64
DEFAULT_LOCK_MS: Final = 24 * 3_600_000


def _check_address(address: object) -> str:
    if (
        not isinstance(address, str)
        or not 0 < len(address) <= MAX_ADDRESS
        or not address.isprintable()
        or any(c.isspace() for c in address)
    ):
        raise InvalidArgument(
            f"address must be 1-{MAX_ADDRESS} printable characters without spaces",
            {"field": "address"},
        )
    return address


def _check_label(label: object) -> str:
    if not isinstance(label, str) or len(label) > MAX_LABEL or not label.isprintable():
        raise InvalidArgument(
            f"label must be at most {MAX_LABEL} printable characters", {"field": "label"}
        )
    return label


class AddressBook:
    """Every account's withdrawal addresses (see the module doc)."""

    def __init__(self) -> None:
        self._lists: dict[str, dict[str, AddressView]] = {}

    def of(self, account: str) -> list[AddressView]:
        """``account``'s addresses, oldest first."""
        return list(self._lists.get(account, {}).values())

    def check_add(self, account: str, *, address: str, label: str) -> None:
        """Raise unless ``address`` may join ``account``'s list: ``InvalidArgument`` (shape),
        ``InvalidState`` (already listed), ``RuleViolation`` (the list is full)."""
        _check_address(address)
        _check_label(label)
        listed = self._lists.get(account, {})
        if address in listed:
            raise InvalidState(
                "address is already on the list",
                {"address": address, "usable_from_ms": listed[address].usable_from_ms},
            )
        if len(listed) >= MAX_ADDRESSES:
            raise RuleViolation(
                f"at most {MAX_ADDRESSES} withdrawal addresses", {"max": MAX_ADDRESSES}
            )

    def check_remove(self, account: str, *, address: str) -> None:
        """Raise ``NotFound`` unless ``address`` is on ``account``'s list."""
        if address not in self._lists.get(account, {}):
            raise NotFound("no such address", {"address": str(address)[:MAX_ADDRESS]})

    def check_withdrawal(self, account: str, *, address: str, now_ms: int) -> None:
        """Raise ``InvalidState`` (4090) unless ``account`` may withdraw to ``address`` at
        ``now_ms``: its list is empty, or ``address`` is on it and past its lock (then
        ``data.usable_from_ms`` says when it will be)."""
        listed = self._lists.get(account)
        if not listed:
            return
        entry = listed.get(address)
        if entry is None:
            raise InvalidState(
                "withdrawals go only to addresses on the account's list",
                {"address": str(address)[:MAX_ADDRESS]},
            )
        if now_ms < entry.usable_from_ms:
            raise InvalidState(
                "the address is still locked", {"usable_from_ms": entry.usable_from_ms}
            )

    def apply_added(self, event: AddressAdded) -> None:
        self._lists.setdefault(event.account, {})[event.address] = AddressView(
            address=event.address,
            label=event.label,
            usable_from_ms=event.usable_from_ms,
            added_ms=event.time_ms,
        )

    def apply_removed(self, account: str, address: str) -> None:
        listed = self._lists[account]
        del listed[address]
        if not listed:
            del self._lists[account]

    def export(self) -> list[AddressAdded]:
        """Every listed address as the event that added it, in order."""
        return [
            AddressAdded(
                account=account,
                address=view.address,
                label=view.label,
                usable_from_ms=view.usable_from_ms,
                time_ms=view.added_ms,
            )
            for account, listed in self._lists.items()
            for view in listed.values()
        ]
