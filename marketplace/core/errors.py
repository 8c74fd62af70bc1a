"""The marketplace's one error taxonomy.

Every refused command raises a ``MarketError`` subclass and changes nothing. The API maps the
classes to wire codes (``marketplace.api``); here they only say what kind of refusal it is:

- ``NotFound``: no such account or order (for this account: another account's order is "not
  found").
- ``InvalidState``: not allowed in the order's (or account's) state, or a price lowered too far or
  too soon.
- ``InsufficientBalance``: the account's available balance cannot pay for it.
- ``RuleViolation``: the parameters break a market rule (a minimum, a fixed order bigger than the
  market can serve, the faucet being off).
- ``InvalidArgument``: a value no market could accept (negative amount, junk decimal string).
- ``SecondFactorRefused``: a call that needs a second-factor code got none, a wrong one or one
  already used (``data.reason``).
- ``Locked``: too many wrong codes lately; calls that need a code must wait
  (``data.retry_after_ms``).
"""

from __future__ import annotations


class MarketError(Exception):
    """Base of every refusal. ``data`` says what to fix (field names, limits), in the market's
    units (the API edge turns msat and H/s into decimal strings)."""

    def __init__(self, message: str, data: dict[str, str | int] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data: dict[str, str | int] = dict(data) if data else {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.data!r})"


class NotFound(MarketError):
    """No such account or order (for the caller)."""


class InvalidState(MarketError):
    """Not allowed in the current state (order not active, price lowered too far or too soon)."""


class InsufficientBalance(MarketError):
    """The available balance is too small."""


class RuleViolation(MarketError):
    """A market rule refuses the parameters (minimums, capacity, faucet off)."""


class InvalidArgument(MarketError):
    """A value that no market could accept."""


class SecondFactorRefused(MarketError):
    """The second factor is required, invalid or reused (``data.reason``)."""


class Locked(MarketError):
    """Too many wrong codes: the account's code-gated calls wait (``data.retry_after_ms``)."""
