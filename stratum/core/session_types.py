"""What a ``ServerSession`` is given (its settings, the layout look-up) and what it gives back
(an ``Outcome`` per line), as values: see ``session.py`` for what the driver does with them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stratum.core.errors import StratumError
from stratum.core.jobs import Layout, Share
from stratum.core.messages import MAX_LINE_BYTES
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason
from stratum.core.tally import Counted
from stratum.core.vardiff import VardiffConfig

#: The layout a connection subscribing with a session id gets (``WorkSource.layout_for``).
LayoutLookup = Callable[[bytes], Layout | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    """What one session needs to know; built by ``stratum.config.StratumConfig``."""

    algorithm: Algorithm
    start_difficulty: float
    min_difficulty: float
    max_difficulty: float
    vardiff: VardiffConfig | None
    extranonce2_size: int = 4
    version_rolling_mask: int = 0x1FFFE000
    idle_timeout_ms: int = 600_000
    subscribe_timeout_ms: int = 30_000
    stale_grace_ms: int = 0
    ntime_future_s: int = 7200
    max_consecutive_rejects: int = 50
    max_jobs: int = 16
    max_line_bytes: int = MAX_LINE_BYTES

    def clamp(self, difficulty: float) -> float:
        """``difficulty`` bounded by the server's minimum and maximum."""
        return min(max(difficulty, self.min_difficulty), self.max_difficulty)


@dataclass(slots=True)
class Outcome:
    """The effect of one line (or of a deadline), in the order the driver carries it out."""

    reply: bytes = b""
    share: Share | None = None
    #: A submit refused by the connection's state: counted under this reason, no share.
    refused_submit: str | None = None
    start_work: bool = False
    followups: bytes = b""
    close: CloseReason | None = None
    #: For logs: the method handled and the error answered, if any.
    method: str | None = None
    error: StratumError | None = None
    detail: str | None = None
    #: How the tally counted the submit whose ``share`` this is (to take it back).
    counted: Counted | None = None
