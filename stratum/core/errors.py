"""The Stratum error taxonomy: one enum of wire codes, one exception carrying code and message.

Theory of operation
-------------------
Every refusal the server sends is a ``StratumError``: a ``StratumErrorCode`` (the number on the
wire, 20-25 as ckpool and NiceHash use them) plus a human message that says what to fix. The
session raises and catches these internally and turns them into ``[code, message, null]``
error triples only when it writes the reply; statistics and logs use the short ``reason``
names instead of numbers.
"""

from __future__ import annotations

import enum
from typing import Final


class StratumErrorCode(enum.IntEnum):
    """The error codes of Stratum v1 as this project speaks it (see stratum.md, Rejections)."""

    OTHER = 20
    STALE = 21
    DUPLICATE = 22
    LOW_DIFFICULTY = 23
    UNAUTHORIZED = 24
    NOT_SUBSCRIBED = 25

    @property
    def reason(self) -> str:
        """The short name used in statistics, logs and ``Share.reason``."""
        return _REASONS[self]

    @property
    def default_message(self) -> str:
        """The message pools conventionally send with this code."""
        return _MESSAGES[self]


_REASONS: Final = {
    StratumErrorCode.OTHER: "other",
    StratumErrorCode.STALE: "stale",
    StratumErrorCode.DUPLICATE: "duplicate",
    StratumErrorCode.LOW_DIFFICULTY: "low_difficulty",
    StratumErrorCode.UNAUTHORIZED: "unauthorized",
    StratumErrorCode.NOT_SUBSCRIBED: "not_subscribed",
}

_MESSAGES: Final = {
    StratumErrorCode.OTHER: "Other/Unknown",
    StratumErrorCode.STALE: "Job not found (stale)",
    StratumErrorCode.DUPLICATE: "Duplicate share",
    StratumErrorCode.LOW_DIFFICULTY: "Low difficulty share",
    StratumErrorCode.UNAUTHORIZED: "Unauthorized worker",
    StratumErrorCode.NOT_SUBSCRIBED: "Not subscribed",
}

#: The exact message NiceHash's extranonce-subscribe spec asks for on an unknown method.
NOT_SUPPORTED: Final = "Not supported."


class StratumError(Exception):
    """A request the server refuses: the peer's fault, answered with ``[code, message, null]``."""

    def __init__(self, code: StratumErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else code.default_message
        super().__init__(f"{int(code)} {self.message}")

    @property
    def reason(self) -> str:
        """The short statistics name of the code (``"stale"``, ``"duplicate"``...)."""
        return self.code.reason

    def triple(self) -> tuple[int, str, None]:
        """The JSON-RPC ``error`` value as Stratum pools send it."""
        return (int(self.code), self.message, None)
