"""One connection's submits once their shape is known: checked, counted, handed out as shares.

Theory of operation
-------------------
``ServerSession`` routes every ``mining.submit`` here (a refused one too: it is counted).
``Submits.submit`` runs the share pipeline (``pipeline.SharePipeline``) against the
connection's jobs and its authorized workers, counts the verdict in the connection's tally
(``tally.SubmitTally``) and fills the line's ``Outcome``: the reply, the ``Share`` for the work
source (an accepted one carries the submission, for forwarding) and what the tally counted, so
that a share the work source could not record is taken back (``share_not_recorded``). The
workers are the ones ``mining.authorize`` added (``authorize``), with the usernames they used:
a submit naming one of those is attributed without parsing its name again.
"""

from __future__ import annotations

from collections.abc import Callable

from stratum.core.errors import StratumError, StratumErrorCode
from stratum.core.handshake import Worker
from stratum.core.jobfeed import JobFeed
from stratum.core.jobs import Share
from stratum.core.messages import RequestId, SubmitParams, error_line, true_line
from stratum.core.pipeline import SharePipeline, Verdict
from stratum.core.session_types import Outcome
from stratum.core.states import RefusedInState
from stratum.core.tally import SubmitTally


class Submits:
    """The submit side of one connection (see the module doc)."""

    def __init__(self, *, conn_id: int, pipeline: SharePipeline, feed: JobFeed) -> None:
        self.conn_id = conn_id
        self.tally = SubmitTally()
        self.workers: dict[Worker, str] = {}  # worker -> the username it authorized with
        self.usernames: dict[str, Worker] = {}  # and back, for the submits' fast lookup
        self.first_worker: Worker | None = None
        #: The driver may refuse an otherwise valid share (an injected fault): then it is
        #: answered 21 stale and reaches the work source as a stale share.
        self.veto_share: Callable[[], bool] | None = None
        self._pipeline = pipeline
        self._feed = feed

    def authorize(self, worker: Worker, username: str) -> bool:
        """``worker`` authorized as ``username``; whether it is the connection's first."""
        first = self.first_worker is None
        if first:
            self.first_worker = worker
        self.workers.setdefault(worker, username)
        self.usernames[username] = worker
        return first

    def submit(
        self, request_id: RequestId, params: SubmitParams, now_ms: int, out: Outcome
    ) -> None:
        """Check, count and answer one well-formed submit into ``out``."""
        verdict = self._pipeline.check(
            params,
            jobs=self._feed.jobs,
            usernames=self.usernames,
            workers=self.workers,
            now_ms=now_ms,
        )
        if verdict.error is None and self.veto_share is not None and self.veto_share():
            verdict = Verdict(
                StratumError(StratumErrorCode.STALE), verdict.worker, verdict.sent, verdict.hash_hex
            )
        if verdict.error is not None:
            out.error = verdict.error
            out.reply = error_line(request_id, verdict.error)
            self.reject(request_id, verdict, now_ms, out)
            return
        out.counted = self.tally.accept(request_id, verdict)
        out.share = self._share(verdict, now_ms, params)
        out.reply = true_line(request_id)
        out.followups += self._feed.on_accepted(out.share.difficulty, now_ms)

    def reject(self, request_id: RequestId, verdict: Verdict, now_ms: int, out: Outcome) -> None:
        """Count a rejected submit; hand a share to the work source only if it has a worker."""
        reason, counted = self.tally.reject(request_id, verdict)
        if isinstance(verdict.error, RefusedInState):
            # Before subscribe or authorize there is no worker to charge or pay: the work
            # source never hears of it (an empty account is no seller), the driver counts it.
            out.refused_submit = reason
            return
        out.share = self._share(verdict, now_ms)
        out.counted = counted

    def share_not_recorded(self, outcome: Outcome, message: str) -> None:
        """The work source could not record ``outcome.share``: answer ``[20, message]`` and
        count the submit for nothing (``tally.take_back``; several newest first). Raises
        ``RuntimeError`` for an outcome with no share, or one taken back already (a driver
        bug)."""
        counted = outcome.counted
        if outcome.share is None or counted is None:
            raise RuntimeError("share_not_recorded for an outcome with no share to take back")
        self.tally.take_back(counted)
        outcome.counted = None
        outcome.error = StratumError(StratumErrorCode.OTHER, message)
        outcome.reply = error_line(counted.request_id, outcome.error)

    def _share(self, verdict: Verdict, now_ms: int, params: SubmitParams | None = None) -> Share:
        first = self.first_worker
        assert first is not None  # submits are only handled once a worker authorized
        return self._pipeline.share(
            verdict,
            conn_id=self.conn_id,
            first_worker=first,
            difficulty=self._feed.difficulty,
            now_ms=now_ms,
            params=params,
        )
