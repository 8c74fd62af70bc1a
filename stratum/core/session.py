"""One Stratum connection, server side, as a pure state machine: bytes in, outcomes out.

Theory of operation
-------------------
``ServerSession`` owns no socket, clock or task. The driver feeds it what the socket produced
(``receive_data(b)``, ``b""`` at EOF) and pulls ``Outcome`` values with ``next_outcome(now_ms)``
until it returns ``None`` (more bytes needed). Each outcome is the complete effect of one line,
in the order the driver must carry it out:

1. ``share``: a checked submission; the driver awaits ``WorkSource.record_shares`` first, so the
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
on"). Jobs and layout changes the server originates (``send_job``, ``change_layout``) are
returned as bytes for the driver to queue behind whatever it queued before.

A connection's session id is its own value from the listener's ``ExtranonceAllocator`` (asked
for again by a miner that resumes). Its extranonce1 is that value too, unless its work source
gives it another layout (``jobs.Layout``): at subscribe through the ``layouts`` look-up the
driver injects, later through ``change_layout``.

Every request is looked up in the transition table (``states.TRANSITIONS``) before its handler
runs: a method the state does not accept is ``RefusedInState`` and becomes an error reply, and
after a handler succeeds the session moves to the table's target state. An unknown method is
``[20, "Not supported."]`` and the connection stays open. Lines that are not JSON requests,
oversize lines and too many rejected shares in a row close the connection; everything else the
peer can do is answered. ``mining.submit`` is decoded here (its shape) and then handled by
``submits.Submits``: checked by the share pipeline (``pipeline.SharePipeline``) against the
jobs this connection was sent, counted, and turned into the outcome's ``Share``.

A new difficulty is sent as ``set_difficulty`` and then the current template again under a new
id with ntime moved on (to the clock, at least one second past the previous job's): cpuminer
switches work only when the first 76 header bytes change, so a job that differed in its id
alone would leave it hashing the old job at the old difficulty.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from stratum.core.errors import NOT_SUPPORTED, StratumError, StratumErrorCode
from stratum.core.framing import NEED_DATA, EndOfStream, LineSplitter, LineTooLong
from stratum.core.handshake import (
    VERSION_ROLLING,
    Worker,
    negotiate_extensions,
    parse_username,
    password_difficulty,
)
from stratum.core.jobfeed import JobFeed, SentJob
from stratum.core.jobs import Job, Layout
from stratum.core.messages import (
    AuthorizeParams,
    ConfigureParams,
    Envelope,
    ExtranonceSubscribeParams,
    Method,
    RequestId,
    SubscribeParams,
    SuggestDifficultyParams,
    decode_params,
    decode_submit,
    envelope_decoder,
    error_line,
    notification_line,
    recover_id,
    response_line,
)
from stratum.core.pipeline import SharePipeline, Verdict
from stratum.core.registries import ExtranonceAllocator, JobIds, SubmittedShares
from stratum.core.session_types import LayoutLookup, Outcome, SessionConfig
from stratum.core.states import CloseReason, SessionState, next_state
from stratum.core.submits import Submits
from stratum.core.tally import SubmitTally
from stratum.core.vardiff import round_difficulty

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_SUBMIT: Final = Method.SUBMIT.value
_NO_PARAMS: Final = msgspec.Raw(b"[]")


#: A request's handler: its id, its params (already decoded as the method's Struct), the time
#: and the outcome to fill in. Raises ``StratumError`` to refuse the request.
_Handler = Callable[[RequestId, Any, int, Outcome], None]


class ServerSession:
    """The server side of one Stratum connection. See the module docstring.

    ``extranonces``, ``job_ids`` and ``submitted`` are the listener's shared registries
    (``stratum.core.registries``); a session made without the last two gets its own.
    ``layouts`` gives a subscribing connection its layout (none: always its own).
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
        layouts: LayoutLookup | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.config = config
        self.state = SessionState.CONNECTED
        self.user_agent: str | None = None
        self.extranonce_subscribed = False
        self.version_rolling_mask = 0
        self.close_reason: CloseReason | None = None
        #: The connection's own id (from ``extranonces``; ``None`` before subscribe).
        self.session_id: bytes | None = None
        self._extranonces = extranonces
        self._layouts = layouts
        self._feed = JobFeed(
            algorithm=config.algorithm,
            difficulty=config.start_difficulty,
            vardiff=config.vardiff,
            stale_grace_ms=config.stale_grace_ms,
            max_jobs=config.max_jobs,
            ntime_future_s=config.ntime_future_s,
            job_ids=job_ids if job_ids is not None else JobIds(),
            submitted=submitted if submitted is not None else SubmittedShares(),
            extranonce2_size=config.extranonce2_size,
        )
        pipeline = SharePipeline(algorithm=config.algorithm, ntime_future_s=config.ntime_future_s)
        #: Submits: checked, counted (``submits.tally``), handed out as shares.
        self.submits = Submits(conn_id=conn_id, pipeline=pipeline, feed=self._feed)
        self._splitter = LineSplitter(config.max_line_bytes)
        self._now_ms = now_ms  # the latest time the driver gave us
        self._last_useful_ms = now_ms
        handlers: dict[Method, _Handler] = {
            Method.SUBSCRIBE: self._subscribe,
            Method.AUTHORIZE: self._authorize,
            Method.EXTRANONCE_SUBSCRIBE: self._extranonce_subscribe,
            Method.CONFIGURE: self._configure,
            Method.SUGGEST_DIFFICULTY: self._suggest_difficulty,
            Method.SUBMIT: self.submits.submit,
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

    def change_layout(self, layout: Layout | None, job: Job, now_ms: int) -> bytes | None:
        """Move the connection to ``layout`` (``None``: its own) and send ``job`` under it,
        clean: the lines (``mining.set_extranonce``, ``mining.set_version_mask`` as needed,
        the job). ``None`` when the extranonce would change and the client never sent
        ``mining.extranonce.subscribe`` (nothing changes: reconnect it instead). Shares for
        jobs sent before are still checked with the layout those were sent with. Raises
        ``RuntimeError`` before ``mining.subscribe`` (a driver bug)."""
        own = self.session_id
        if own is None:
            raise RuntimeError("change_layout before subscribe")
        if self.state is SessionState.CLOSED:
            return b""
        if self._feed.changes_extranonce(own, layout) and not self.extranonce_subscribed:
            return None
        self._now_ms = max(self._now_ms, now_ms)
        return self._feed.change_layout(own, layout, job, now_ms)

    def close(self, reason: CloseReason) -> None:
        """The connection is over (driver side: timeout, shutdown, peer gone...). Idempotent."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_reason = reason
            if self.session_id is not None:
                self._extranonces.release(self.session_id)
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
                self.submits.reject(request_id, Verdict(error), now_ms, outcome)
        if self.state is not SessionState.CONNECTED:
            # Before a successful subscribe nothing counts as useful: a client cannot hold
            # a connection open with configure calls or refused requests.
            self._last_useful_ms = now_ms
        rejected = outcome.refused_submit is not None or (
            outcome.share is not None and not outcome.share.accepted
        )
        run = self.submits.tally.consecutive_rejects
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
        own = self.session_id = self._extranonces.allocate(requested)
        feed = self._feed
        feed.use_layout(own, None if self._layouts is None else self._layouts(own))
        assert feed.extranonce1 is not None
        sub_id = own.hex()
        result = [
            [[Method.SET_DIFFICULTY, sub_id], [Method.NOTIFY, sub_id]],
            feed.extranonce1.hex(),
            feed.extranonce2_size,
        ]
        out.reply = response_line(request_id, result)
        if feed.version_mask != feed.negotiated_mask:
            # Negotiated before its source was known, and that source allows fewer bits.
            out.followups += feed.version_mask_line()

    def _authorize(
        self, request_id: RequestId, params: AuthorizeParams, now_ms: int, out: Outcome
    ) -> None:
        worker = parse_username(params.username)
        if self.submits.authorize(worker, params.username):
            suggested = password_difficulty(params.password)
            if suggested is not None:
                self._feed.difficulty = self.config.clamp(suggested)
            out.start_work = True
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
            self.version_rolling_mask = self._feed.negotiated_mask = granted
            # What it may roll now: its work source may allow fewer bits than the server.
            result[f"{VERSION_ROLLING}.mask"] = f"{self._feed.version_mask:08x}"
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

    # ----------------------------------------------------------------------- submits

    @property
    def first_worker(self) -> Worker | None:
        """The connection's first authorized worker (it names the connection)."""
        return self.submits.first_worker

    @property
    def workers(self) -> dict[Worker, str]:
        """The authorized workers, with the username each authorized with."""
        return self.submits.workers

    @property
    def tally(self) -> SubmitTally:
        """The connection's submit counters."""
        return self.submits.tally

    def share_not_recorded(self, outcome: Outcome, message: str) -> None:
        """The work source could not record ``outcome.share`` (``Submits.share_not_recorded``:
        the reply becomes ``[20, message]``, the submit counts for nothing)."""
        self.submits.share_not_recorded(outcome, message)

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
