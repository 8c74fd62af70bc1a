"""What one connection's submits counted, and taking back shares that could not be recorded.

Theory of operation
-------------------
``SubmitTally`` counts a connection's submits as its session answers them: accepted shares,
rejected submits by reason, and rejects in a row (an accepted share ends the run; the session
closes a connection whose run passes ``max_consecutive_rejects``). The reply to a share waits
until the work source has recorded it, and a work source whose storage is failing cannot
(``jobs.ShareNotRecorded``). So counting a submit returns a ``Counted`` (its request id,
verdict and the run before it) that the session keeps with the outcome: ``take_back`` undoes
that submit's counting entirely and forgets the share in its job's ``seen`` set. The refusal
then counts toward nothing, not the rejects in a row either, and the miner may send the same
share again. The driver records the shares of one batch of lines together, so a failed record
takes back several: newest first, which leaves the run as it was before the oldest.
"""

from __future__ import annotations

from typing import NamedTuple

from stratum.core.messages import RequestId
from stratum.core.pipeline import Verdict


class Counted(NamedTuple):
    """One submit as the tally counted it (what ``take_back`` needs to undo it)."""

    request_id: RequestId
    verdict: Verdict
    #: Rejects in a row before this submit.
    run: int


class SubmitTally:
    """One connection's submit counters (see the module doc)."""

    __slots__ = ("accepted", "consecutive_rejects", "rejected")

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.consecutive_rejects = 0

    def accept(self, request_id: RequestId, verdict: Verdict) -> Counted:
        """Count an accepted share (it ends the run of rejects)."""
        counted = Counted(request_id, verdict, self.consecutive_rejects)
        self.accepted += 1
        self.consecutive_rejects = 0
        return counted

    def reject(self, request_id: RequestId, verdict: Verdict) -> tuple[str, Counted]:
        """Count a rejected submit (``verdict.error`` set); its reason's short name."""
        assert verdict.error is not None  # a rejected submit has its error
        reason = verdict.error.reason.value
        counted = Counted(request_id, verdict, self.consecutive_rejects)
        self.consecutive_rejects += 1
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return reason, counted

    def take_back(self, counted: Counted) -> None:
        """Undo ``counted``, as if its submit had never come. Take back several newest first;
        each once (the session sees to that)."""
        verdict = counted.verdict
        if verdict.error is None:
            self.accepted -= 1
        else:
            reason = verdict.error.reason.value
            self.rejected[reason] -= 1
            if not self.rejected[reason]:
                del self.rejected[reason]
        self.consecutive_rejects = counted.run
        if verdict.sent is not None and verdict.seen_key:
            verdict.sent.seen.discard(verdict.seen_key)
