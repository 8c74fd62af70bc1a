"""What one connection's submits counted, and taking back a share that could not be recorded.

Theory of operation
-------------------
``SubmitTally`` counts a connection's submits as its session answers them: accepted shares,
rejected submits by reason, and rejects in a row (an accepted share ends the run; the session
closes a connection whose run passes ``max_consecutive_rejects``). The reply to a share waits
until the work source has recorded it, and a work source whose storage is failing cannot
(``jobs.ShareNotRecorded``). So the tally remembers the last submit it counted, with its
verdict and the run before it: ``take_back`` undoes that submit's counting entirely and
forgets the share in its job's ``seen`` set. The refusal then counts toward nothing, not the
rejects in a row either, and the miner may send the same share again.
"""

from __future__ import annotations

from stratum.core.messages import RequestId
from stratum.core.pipeline import Verdict


class SubmitTally:
    """One connection's submit counters (see the module doc)."""

    __slots__ = ("_last", "accepted", "consecutive_rejects", "rejected")

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.consecutive_rejects = 0
        self._last: tuple[RequestId, Verdict, int] | None = None

    def accept(self, request_id: RequestId, verdict: Verdict) -> None:
        """Count an accepted share (it ends the run of rejects)."""
        self._last = (request_id, verdict, self.consecutive_rejects)
        self.accepted += 1
        self.consecutive_rejects = 0

    def reject(self, request_id: RequestId, verdict: Verdict) -> str:
        """Count a rejected submit (``verdict.error`` set); its reason's short name."""
        assert verdict.error is not None  # a rejected submit has its error
        reason = verdict.error.reason.value
        self._last = (request_id, verdict, self.consecutive_rejects)
        self.consecutive_rejects += 1
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return reason

    def take_back(self) -> RequestId:
        """Undo the last submit counted, as if it had never come; its request id. Raises
        ``RuntimeError`` if there is none (or it was taken back already)."""
        if self._last is None:
            raise RuntimeError("no submit to take back")
        request_id, verdict, run = self._last
        self._last = None
        if verdict.error is None:
            self.accepted -= 1
        else:
            reason = verdict.error.reason.value
            self.rejected[reason] -= 1
            if not self.rejected[reason]:
                del self.rejected[reason]
        self.consecutive_rejects = run
        if verdict.sent is not None and verdict.seen_key:
            verdict.sent.seen.discard(verdict.seen_key)
        return request_id
