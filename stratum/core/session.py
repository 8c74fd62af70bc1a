"""One Stratum connection, server side, as a pure state machine: bytes in, outcomes out.

Theory of operation
-------------------
``ServerSession`` owns no socket, clock or task. The driver feeds it what the socket produced
(``receive_data(b)``, ``b""`` at EOF) and pulls ``Outcome`` values with ``next_outcome(now_ms)``
until it returns ``None`` (more bytes needed). Each outcome is the complete effect of one line,
in the order the driver must carry it out:

1. ``share``: a checked submission; the driver awaits ``WorkSource.record_share`` first, so the
   reply the miner sees means the share is durable. A submit the connection's state refuses
   (before subscribe or authorize) has no worker to attribute: it is no share, only
   ``refused_submit`` (its reason) for the driver's counters. The driver may record the shares
   of several lines together (every complete line one read brought). If the work source
   cannot record them, the driver calls ``share_not_recorded`` for each, newest first, before
   it sends anything: each reply becomes that refusal and the submit counts for nothing;
2. ``reply``: the response line (empty for lines that get none);
3. ``start_work``: the connection's first worker just authorized; the driver asks its
   ``WorkSource.connect`` for the first job and sends ``send_job(job, now_ms)``;
4. ``followups``: lines that must come after the reply (a new ``set_difficulty`` and the job
   that carries it);
5. ``close``: the connection is over, with the reason (after the lines above are flushed).

Because an outcome is produced for one line at a time, the subscribe reply is always the very
next line the server writes after the subscribe, and the authorize reply is followed, not
preceded, by ``set_difficulty`` and ``notify`` (stratum.md, "Ordering that real miners rely
on"). Jobs and extranonce changes the server originates (``send_job``, ``change_extranonce``)
are returned as bytes for the driver to queue behind whatever it queued before.

Every request is looked up in the transition table (``states.TRANSITIONS``) before its handler
runs: a method the state does not accept is ``RefusedInState`` and becomes an error reply, and
after a handler succeeds the session moves to the table's target state. An unknown method is
``[20, "Not supported."]`` and the connection stays open. Lines that are not JSON requests,
oversize lines and too many rejected shares in a row close the connection; everything else the
peer can do is answered. ``mining.submit`` is decoded here (its shape) and then checked by the
share pipeline (``pipeline.SharePipeline``) against the jobs this connection was sent.

A new difficulty is sent as ``set_difficulty`` and then the current template again under a new
id with ntime moved on (to the clock, at least one second past the previous job's): cpuminer
switches work only when the first 76 header bytes change, so a job that differed in its id
alone would leave it hashing the old job at the old difficulty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from stratum.core.errors import NOT_SUPPORTED, StratumError, StratumErrorCode
from stratum.core.framing import NEED_DATA, EndOfStream, LineSplitter, LineTooLong
from stratum.core.handshake import (
    Worker,
    negotiate_extensions,
    parse_username,
    password_difficulty,
)
from stratum.core.jobfeed import JobFeed, SentJob
from stratum.core.jobs import Job, Share
from stratum.core.messages import (
    MAX_LINE_BYTES,
    AuthorizeParams,
    ConfigureParams,
    Envelope,
    ExtranonceSubscribeParams,
    Method,
    RequestId,
    SubmitParams,
    SubscribeParams,
    SuggestDifficultyParams,
    decode_params,
    decode_submit,
    envelope_decoder,
    error_line,
    notification_line,
    recover_id,
    response_line,
    true_line,
)
from stratum.core.pipeline import SharePipeline, Verdict
from stratum.core.registries import ExtranonceAllocator, JobIds, SubmittedShares
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason, RefusedInState, SessionState, next_state
from stratum.core.tally import Counted, SubmitTally
from stratum.core.vardiff import VardiffConfig, round_difficulty

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_SUBMIT: Final = Method.SUBMIT.value
_NO_PARAMS: Final = msgspec.Raw(b"[]")


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


#: A request's handler: its id, its params (already decoded as the method's Struct), the time
#: and the outcome to fill in. Raises ``StratumError`` to refuse the request.
_Handler = Callable[[RequestId, Any, int, Outcome], None]


class ServerSession:
    """The server side of one Stratum connection. See the module docstring.

    ``extranonces``, ``job_ids`` and ``submitted`` are the listener's shared registries
    (``stratum.core.registries``); a session made without the last two gets its own.
    """

    def __init__(
        self,
        *,
        conn_id: int,
        config: SessionConfig,
        extranonces: ExtranonceAllocator,
        now_ms: int,
        job_ids: JobIds | None = None,
        submitted: SubmittedShares | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.config = config
        self.state = SessionState.CONNECTED
        self.user_agent: str | None = None
        self.extranonce_subscribed = False
        self.version_rolling_mask = 0
        self.workers: dict[Worker, str] = {}  # worker -> the username it authorized with
        self._usernames: dict[str, Worker] = {}  # and back, for the submits' fast lookup
        self.first_worker: Worker | None = None
        self.tally = SubmitTally()
        self.close_reason: CloseReason | None = None
        self._extranonces = extranonces
        self._feed = JobFeed(
            algorithm=config.algorithm,
            difficulty=config.start_difficulty,
            vardiff=config.vardiff,
            stale_grace_ms=config.stale_grace_ms,
            max_jobs=config.max_jobs,
            ntime_future_s=config.ntime_future_s,
            job_ids=job_ids if job_ids is not None else JobIds(),
            submitted=submitted if submitted is not None else SubmittedShares(),
        )
        self._pipeline = SharePipeline(
            algorithm=config.algorithm,
            extranonce2_size=config.extranonce2_size,
            ntime_future_s=config.ntime_future_s,
        )
        self._splitter = LineSplitter(config.max_line_bytes)
        #: The driver may refuse an otherwise valid share (an injected fault): then it is
        #: answered 21 stale and reaches the work source as a stale share.
        self.veto_share: Callable[[], bool] | None = None
        self._now_ms = now_ms  # the latest time the driver gave us
        self._last_useful_ms = now_ms
        handlers: dict[Method, _Handler] = {
            Method.SUBSCRIBE: self._subscribe,
            Method.AUTHORIZE: self._authorize,
            Method.EXTRANONCE_SUBSCRIBE: self._extranonce_subscribe,
            Method.CONFIGURE: self._configure,
            Method.SUGGEST_DIFFICULTY: self._suggest_difficulty,
            Method.SUBMIT: self._submit,
        }
        # By wire name: a line's method is a str, and a str key hashes in C.
        self._routes = {m.value: (m, handler) for m, handler in handlers.items()}

    # ----------------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` when it closed its side."""
        if self.state is not SessionState.CLOSED:
            self._splitter.receive_data(data)

    def next_outcome(self, now_ms: int) -> Outcome | None:
        """The effect of the next complete line, or ``None`` when more bytes are needed.

        Never raises for anything the peer sends. After an outcome with ``close`` set (or once
        the session is closed) it returns ``None``.
        """
        if self.state is SessionState.CLOSED:
            return None
        event = self._splitter.next_line()
        if event is NEED_DATA:
            return None
        if isinstance(event, bytes):
            return self._handle_line(event, now_ms)
        if isinstance(event, LineTooLong):
            message = f"Line too long (over {event.limit} bytes)"
            return self._closing(CloseReason.LINE_TOO_LONG, message=message, line=event.prefix)
        assert isinstance(event, EndOfStream)
        return self._closing(CloseReason.PEER_CLOSED)

    def tick(self, now_ms: int) -> Outcome | None:
        """Deadlines: idle/subscribe timeouts close, vardiff may lower a silent miner's
        difficulty. Call at ``next_deadline_ms()``; ``None`` when nothing happened."""
        if self.state is SessionState.CLOSED:
            return None
        if now_ms >= self._idle_deadline_ms():
            reason = (
                CloseReason.SUBSCRIBE_TIMEOUT
                if self.state is SessionState.CONNECTED
                else CloseReason.IDLE_TIMEOUT
            )
            return self._closing(reason)
        followups = self._feed.on_tick(now_ms)
        return Outcome(followups=followups) if followups else None

    def next_deadline_ms(self) -> int:
        """When ``tick`` should run next if no bytes arrive."""
        deadline = self._idle_deadline_ms()
        vardiff = self._feed.next_tick_ms()
        return deadline if vardiff is None else min(deadline, vardiff)

    def clock_jumped(self, delta_ms: int) -> None:
        """The clock jumped ``delta_ms`` forward (market time advanced): the timers that
        measure the peer (idle, vardiff) move with it, as the peer was not silent for it."""
        self._last_useful_ms += delta_ms
        self._feed.clock_jumped(delta_ms)

    def _idle_deadline_ms(self) -> int:
        if self.state is SessionState.CONNECTED:
            return self._last_useful_ms + self.config.subscribe_timeout_ms
        return self._last_useful_ms + self.config.idle_timeout_ms

    # ----------------------------------------------------------------------- output

    def send_job(self, job: Job, now_ms: int) -> bytes:
        """The lines that send ``job`` under a new id (unique across the server's connections).

        ``mining.set_difficulty`` comes first when the difficulty changed since the last one
        sent; a ``clean_jobs`` job makes every earlier job stale after the grace period.
        Raises ``RuntimeError`` before ``mining.subscribe`` (a driver bug).
        """
        if self.state is SessionState.CLOSED:
            return b""
        self._now_ms = max(self._now_ms, now_ms)
        return self._feed.send(job, now_ms)

    def set_difficulty(self, difficulty: float, now_ms: int) -> bytes:
        """An operator sets the difficulty (vardiff resumes from it): the lines that send it,
        ``set_difficulty`` and the current template as a new job (nothing before a job)."""
        return self._feed.change_difficulty(difficulty, now_ms)

    def change_extranonce(self, now_ms: int) -> bytes:
        """Move the connection to a fresh extranonce1 with ``mining.set_extranonce``.

        Only for clients that sent ``mining.extranonce.subscribe`` (returns ``b""`` otherwise).
        The current job is re-sent (``clean_jobs``) so the new value applies to it; shares for
        jobs sent before are still checked with the extranonce1 they were sent with.
        """
        old = self.extranonce1
        if not self.extranonce_subscribed or old is None:
            return b""
        new = self._feed.extranonce1 = self._extranonces.allocate()
        self._extranonces.release(old)
        out = notification_line(Method.SET_EXTRANONCE, [new.hex(), self.config.extranonce2_size])
        current = self._feed.current
        if current is not None:
            out += self.send_job(msgspec.structs.replace(current, clean_jobs=True), now_ms)
        return out

    def close(self, reason: CloseReason) -> None:
        """The connection is over (driver side: timeout, shutdown, peer gone...). Idempotent."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_reason = reason
            if self.extranonce1 is not None:
                self._extranonces.release(self.extranonce1)
            self._feed.park(self._now_ms)

    # ----------------------------------------------------------------------- lines

    def _closing(self, reason: CloseReason, *, message: str = "", line: bytes = b"") -> Outcome:
        """Close; with a ``message``, first answer ``line`` (its id, if one can be found)."""
        self.close(reason)
        error = StratumError(StratumErrorCode.OTHER, message) if message else None
        reply = error_line(recover_id(line[:512]), error) if error else b""
        return Outcome(reply=reply, close=reason, error=error, detail=reason.value)

    def _handle_line(self, line: bytes, now_ms: int) -> Outcome:
        submit = decode_submit(line)
        if submit is not None:
            request_id, name, raw = submit.id, _SUBMIT, _NO_PARAMS
        else:
            try:
                envelope: Envelope = envelope_decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                message = f"Parse error: {exc}"
                return self._closing(CloseReason.BAD_JSON, message=message, line=line)
            if envelope.method is None:
                return Outcome(detail="response_ignored")  # e.g. a reply to client.get_version
            request_id, name, raw = envelope.id, envelope.method, envelope.params
        route = self._routes.get(name)
        outcome = Outcome(method=name)
        if route is None:
            outcome.error = StratumError(StratumErrorCode.OTHER, NOT_SUPPORTED)
            outcome.reply = error_line(request_id, outcome.error)
            return outcome
        method, handler = route
        try:
            target = next_state(self.state, method)
            params = submit.params if submit is not None else decode_params(method, raw)
            handler(request_id, params, now_ms, outcome)
            self.state = target
        except StratumError as error:
            outcome.error = error
            outcome.reply = error_line(request_id, error)
            if method is Method.SUBMIT:
                self._reject(request_id, Verdict(error), now_ms, outcome)
        if self.state is not SessionState.CONNECTED:
            # Before a successful subscribe nothing counts as useful: a client cannot hold
            # a connection open with configure calls or refused requests.
            self._last_useful_ms = now_ms
        rejected = outcome.refused_submit is not None or (
            outcome.share is not None and not outcome.share.accepted
        )
        run = self.tally.consecutive_rejects
        if rejected and run > self.config.max_consecutive_rejects:
            text = f"Too many rejected shares ({run} in a row); goodbye"
            outcome.followups += notification_line(Method.SHOW_MESSAGE, [text])
            outcome.close = CloseReason.TOO_MANY_REJECTS
            outcome.detail = text
            self.close(CloseReason.TOO_MANY_REJECTS)
        return outcome

    # ----------------------------------------------------------------------- methods

    def _subscribe(
        self, request_id: RequestId, params: SubscribeParams, now_ms: int, out: Outcome
    ) -> None:
        self.user_agent = params.user_agent
        requested = None
        if params.session_id and _HEX.fullmatch(params.session_id):
            requested = bytes.fromhex(params.session_id)
        extranonce1 = self._feed.extranonce1 = self._extranonces.allocate(requested)
        sub_id = extranonce1.hex()
        result = [
            [[Method.SET_DIFFICULTY, sub_id], [Method.NOTIFY, sub_id]],
            sub_id,
            self.config.extranonce2_size,
        ]
        out.reply = response_line(request_id, result)

    def _authorize(
        self, request_id: RequestId, params: AuthorizeParams, now_ms: int, out: Outcome
    ) -> None:
        worker = parse_username(params.username)
        if self.first_worker is None:
            suggested = password_difficulty(params.password)
            if suggested is not None:
                self._feed.difficulty = self.config.clamp(suggested)
            self.first_worker = worker
            out.start_work = True
        self.workers.setdefault(worker, params.username)
        self._usernames[params.username] = worker
        out.reply = response_line(request_id, True)

    def _extranonce_subscribe(
        self, request_id: RequestId, params: ExtranonceSubscribeParams, now_ms: int, out: Outcome
    ) -> None:
        self.extranonce_subscribed = True
        out.reply = response_line(request_id, True)

    def _configure(
        self, request_id: RequestId, params: ConfigureParams, now_ms: int, out: Outcome
    ) -> None:
        granted, result = negotiate_extensions(
            params.extensions, params.options, server_mask=self.config.version_rolling_mask
        )
        if granted is not None:
            self.version_rolling_mask = granted
        out.reply = response_line(request_id, result)

    def _suggest_difficulty(
        self, request_id: RequestId, params: SuggestDifficultyParams, now_ms: int, out: Outcome
    ) -> None:
        if not (params.difficulty > 0 and math.isfinite(params.difficulty)):
            raise StratumError(StratumErrorCode.OTHER, "Difficulty must be a positive number")
        difficulty = self.config.clamp(round_difficulty(params.difficulty))
        out.reply = response_line(request_id, True)
        if difficulty != self._feed.difficulty:
            out.followups += self._feed.change_difficulty(difficulty, now_ms)

    def _submit(
        self, request_id: RequestId, params: SubmitParams, now_ms: int, out: Outcome
    ) -> None:
        verdict = self._pipeline.check(
            params,
            jobs=self._feed.jobs,
            usernames=self._usernames,
            workers=self.workers,
            version_mask=self.version_rolling_mask,
            now_ms=now_ms,
        )
        if verdict.error is None and self.veto_share is not None and self.veto_share():
            verdict = Verdict(
                StratumError(StratumErrorCode.STALE), verdict.worker, verdict.sent, verdict.hash_hex
            )
        if verdict.error is not None:
            out.error = verdict.error
            out.reply = error_line(request_id, verdict.error)
            self._reject(request_id, verdict, now_ms, out)
            return
        out.counted = self.tally.accept(request_id, verdict)
        out.share = self._share(verdict, now_ms)
        out.reply = true_line(request_id)
        out.followups += self._feed.on_accepted(out.share.difficulty, now_ms)

    # ----------------------------------------------------------------------- helpers

    def _reject(self, request_id: RequestId, verdict: Verdict, now_ms: int, out: Outcome) -> None:
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

    def _share(self, verdict: Verdict, now_ms: int) -> Share:
        first = self.first_worker
        assert first is not None  # submits are only handled once a worker authorized
        return self._pipeline.share(
            verdict,
            conn_id=self.conn_id,
            first_worker=first,
            difficulty=self._feed.difficulty,
            now_ms=now_ms,
        )

    @property
    def accepted(self) -> int:
        """Shares accepted (and recorded) on this connection (``tally``'s)."""
        return self.tally.accepted

    @property
    def rejected(self) -> dict[str, int]:
        """Submits rejected on this connection, by reason (``tally``'s)."""
        return self.tally.rejected

    @property
    def consecutive_rejects(self) -> int:
        """Submits rejected since the last accepted share (``tally``'s)."""
        return self.tally.consecutive_rejects

    @property
    def difficulty(self) -> float:
        """The share difficulty the next job carries."""
        return self._feed.difficulty

    @property
    def extranonce1(self) -> bytes | None:
        """The connection's extranonce1 (``None`` before subscribe)."""
        return self._feed.extranonce1

    @property
    def jobs(self) -> dict[str, SentJob]:
        """Jobs this connection can still submit shares for, by id."""
        return self._feed.jobs
