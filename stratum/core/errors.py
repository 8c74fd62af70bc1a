"""The Stratum error taxonomy: one table of wire codes, reason names and messages, for both sides.

Theory of operation
-------------------
Every refusal the server sends is a ``StratumError``: a ``StratumErrorCode`` (the number on the
wire, 20-25 as ckpool and NiceHash use them) plus a human message that says what to fix. The
session raises and catches these internally and turns them into ``[code, message, null]``
error triples only when it writes the reply; statistics, logs and ``Share.reason`` use the
short ``RejectReason`` names instead of numbers. The client reads the same table backwards
(``reason_for_code``), so a rejection has one name on both ends of the connection.
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
    def reason(self) -> RejectReason:
        """The short name used in statistics, logs and ``Share.reason``."""
        return _TABLE[self][0]

    @property
    def default_message(self) -> str:
        """The message pools conventionally send with this code."""
        return _TABLE[self][1]


class RejectReason(enum.StrEnum):
    """Why a request (usually a submit) was refused: the short name of its code."""

    OTHER = "other"
    STALE = "stale"
    DUPLICATE = "duplicate"
    LOW_DIFFICULTY = "low_difficulty"
    UNAUTHORIZED = "unauthorized"
    NOT_SUBSCRIBED = "not_subscribed"
    #: A code outside 20-25 (some pools have their own).
    UNKNOWN = "unknown"


#: The one table: code -> (reason name, the message pools send with it).
_TABLE: Final[dict[StratumErrorCode, tuple[RejectReason, str]]] = {
    StratumErrorCode.OTHER: (RejectReason.OTHER, "Other/Unknown"),
    StratumErrorCode.STALE: (RejectReason.STALE, "Job not found (stale)"),
    StratumErrorCode.DUPLICATE: (RejectReason.DUPLICATE, "Duplicate share"),
    StratumErrorCode.LOW_DIFFICULTY: (RejectReason.LOW_DIFFICULTY, "Low difficulty share"),
    StratumErrorCode.UNAUTHORIZED: (RejectReason.UNAUTHORIZED, "Unauthorized worker"),
    StratumErrorCode.NOT_SUBSCRIBED: (RejectReason.NOT_SUBSCRIBED, "Not subscribed"),
}

#: The exact message NiceHash's extranonce-subscribe spec asks for on an unknown method.
NOT_SUPPORTED: Final = "Not supported."


def reason_for_code(code: int) -> RejectReason:
    """The ``RejectReason`` for a Stratum error code (``UNKNOWN`` for codes outside 20-25)."""
    try:
        return StratumErrorCode(code).reason
    except ValueError:
        return RejectReason.UNKNOWN


class StratumError(Exception):
    """A request the server refuses: the peer's fault, answered with ``[code, message, null]``."""

    def __init__(self, code: StratumErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else code.default_message
        super().__init__(f"{int(code)} {self.message}")

    @property
    def reason(self) -> RejectReason:
        """The short statistics name of the code (``"stale"``, ``"duplicate"``...)."""
        return self.code.reason

    def triple(self) -> tuple[int, str, None]:
        """The JSON-RPC ``error`` value as Stratum pools send it."""
        return (int(self.code), self.message, None)
