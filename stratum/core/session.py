"""One Stratum connection, server side, as a pure state machine: bytes in, outcomes out.

Theory of operation
-------------------
``ServerSession`` owns no socket, clock or task. The driver feeds it what the socket produced
(``receive_data(b)``, ``b""`` at EOF) and pulls ``Outcome`` values with ``next_outcome(now_ms)``
until it returns ``None`` (more bytes needed). Each outcome is the complete effect of one line,
in the order the driver must carry it out:

1. ``share``: a checked submission; the driver awaits ``WorkSource.record_share`` first, so the
   reply the miner sees means the share is durable;
2. ``reply``: the response line (empty for lines that get none);
3. ``start_work``: the connection's first worker just authorized; the driver asks its
   ``WorkSource.connect`` for the first job and sends ``send_job(job, now_ms)``;
4. ``followups``: lines that must come after the reply (a vardiff ``set_difficulty`` and the
   current job re-sent under a new id);
5. ``close``: the connection is over, with the reason (after the lines above are flushed).

Because an outcome is produced for one line at a time, the subscribe reply is always the very
next line the server writes after the subscribe, and the authorize reply is followed, not
preceded, by ``set_difficulty`` and ``notify`` (stratum.md, "Ordering that real miners rely
on"). Lines the server originates (``send_job``, ``show_message``, ``reconnect``,
``change_extranonce``) are returned as bytes for the driver to queue behind whatever it queued
before.

States live in one table, ``TRANSITIONS``: the methods each state accepts and the state a
success leads to. A method the state does not accept raises ``RefusedInState`` (a
``StratumError`` with the code the spec gives: 25 before subscribe, 24 submit before authorize)
and becomes an error reply; an unknown method is ``[20, "Not supported."]`` and the connection
stays open. Lines that are not JSON requests, oversize lines and too many rejected shares in a
row close the connection; everything else the peer can do is answered.

``mining.submit`` is a pipeline, cheapest check first: shape (msgspec) -> subscribed/authorized
-> job (id unique across connections; stale after a ``clean_jobs`` notify plus grace) -> ntime
window -> version bits within the negotiated BIP 310 mask -> duplicate -> the proof-of-work
hash against the target of the difficulty the job was sent with. Per sent job the session keeps
the parts of the header that do not depend on the submission, and the merkle root per
extranonce2, so a share costs one or two hashes of the coinbase plus one of the header.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from stratum.core.errors import NOT_SUPPORTED, StratumError, StratumErrorCode
from stratum.core.framing import NEED_DATA, EndOfStream, LineSplitter, LineTooLong
from stratum.core.jobs import Job, Share
from stratum.core.messages import (
    MAX_LINE_BYTES,
    AuthorizeParams,
    ConfigureParams,
    Envelope,
    ExtranonceSubscribeParams,
    Request,
    RequestId,
    Response,
    SubmitParams,
    SubscribeParams,
    SuggestDifficultyParams,
    encode_line,
    envelope_decoder,
)
from stratum.core.names import USERNAME_RE
from stratum.core.shares import Algorithm, hash_to_int, pow_hash, sha256d, swap_words, target_for
from stratum.core.vardiff import Vardiff, VardiffConfig, round_difficulty

DEFAULT_WORKER: Final = "default"
VERSION_ROLLING: Final = "version-rolling"
#: Finds a request id in a line that did not parse, so the error reply can still carry it.
_ID_RE: Final = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,64}")')
#: Merkle roots remembered per job (one per extranonce2 the miner used).
_MERKLE_CACHE_SIZE: Final = 64
_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_TEMPLATE_ENCODER: Final = msgspec.msgpack.Encoder()


class SessionState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTED = "connected"
    SUBSCRIBED = "subscribed"
    AUTHORIZED = "authorized"  # subscribed and at least one worker: jobs flow
    CLOSED = "closed"


class Method(enum.StrEnum):
    """The requests a Stratum client may send."""

    SUBSCRIBE = "mining.subscribe"
    AUTHORIZE = "mining.authorize"
    EXTRANONCE_SUBSCRIBE = "mining.extranonce.subscribe"
    CONFIGURE = "mining.configure"
    SUGGEST_DIFFICULTY = "mining.suggest_difficulty"
    SUBMIT = "mining.submit"


class CloseReason(enum.StrEnum):
    """Why a connection ended (logged in the connection summary)."""

    PEER_CLOSED = "peer_closed"
    LINE_TOO_LONG = "line_too_long"
    BAD_JSON = "bad_json"
    TOO_MANY_REJECTS = "too_many_rejects"
    SUBSCRIBE_TIMEOUT = "subscribe_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    SEND_QUEUE_FULL = "send_queue_full"
    SEND_TIMEOUT = "send_timeout"
    PEER_GONE = "peer_gone"
    KICKED = "kicked"
    SHUTDOWN = "shutdown"
    INTERNAL_ERROR = "internal_error"


_S = SessionState
_M = Method
#: The transition table: methods each state accepts, and the state a success leads to.
TRANSITIONS: Final[dict[SessionState, dict[Method, SessionState]]] = {
    _S.CONNECTED: {
        _M.SUBSCRIBE: _S.SUBSCRIBED,
        _M.CONFIGURE: _S.CONNECTED,
        _M.EXTRANONCE_SUBSCRIBE: _S.CONNECTED,
        _M.SUGGEST_DIFFICULTY: _S.CONNECTED,
    },
    _S.SUBSCRIBED: {
        _M.AUTHORIZE: _S.AUTHORIZED,
        _M.CONFIGURE: _S.SUBSCRIBED,
        _M.EXTRANONCE_SUBSCRIBE: _S.SUBSCRIBED,
        _M.SUGGEST_DIFFICULTY: _S.SUBSCRIBED,
    },
    _S.AUTHORIZED: {
        _M.AUTHORIZE: _S.AUTHORIZED,
        _M.CONFIGURE: _S.AUTHORIZED,
        _M.EXTRANONCE_SUBSCRIBE: _S.AUTHORIZED,
        _M.SUGGEST_DIFFICULTY: _S.AUTHORIZED,
        _M.SUBMIT: _S.AUTHORIZED,
    },
    _S.CLOSED: {},
}

#: The error a refused (state, method) pair gets; anything not listed is code 20.
_REFUSALS: Final[dict[tuple[SessionState, Method], tuple[StratumErrorCode, str]]] = {
    (_S.CONNECTED, _M.SUBMIT): (StratumErrorCode.NOT_SUBSCRIBED, "Not subscribed"),
    (_S.CONNECTED, _M.AUTHORIZE): (StratumErrorCode.NOT_SUBSCRIBED, "Not subscribed"),
    (_S.SUBSCRIBED, _M.SUBMIT): (StratumErrorCode.UNAUTHORIZED, "Unauthorized worker"),
    (_S.SUBSCRIBED, _M.SUBSCRIBE): (StratumErrorCode.OTHER, "Already subscribed"),
    (_S.AUTHORIZED, _M.SUBSCRIBE): (StratumErrorCode.OTHER, "Already subscribed"),
}


class RefusedInState(StratumError):
    """A request the connection's state does not allow (e.g. submit before subscribe)."""

    def __init__(self, state: SessionState, method: Method) -> None:
        code, message = _REFUSALS.get((state, method), (StratumErrorCode.OTHER, "Not allowed"))
        super().__init__(code, message)
        self.state = state
        self.method = method


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


class ExtranonceAllocator:
    """Hands out extranonce1 values unique among live connections (shared by all sessions)."""

    def __init__(self, *, size: int = 4, start: int = 0) -> None:
        if not 1 <= size <= 8:
            raise ValueError("extranonce1 size must be 1..8 bytes")
        self.size = size
        self._space = 1 << (8 * size)
        self._next = start % self._space
        self._live: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._live)

    def allocate(self, requested: bytes | None = None) -> bytes:
        """A fresh value, or ``requested`` (session resume) if it has the right size and is free.

        Raises ``RuntimeError`` if every value is in use.
        """
        if requested is not None and len(requested) == self.size and requested not in self._live:
            self._live.add(requested)
            return requested
        for _ in range(min(self._space, len(self._live) + 1)):
            value = self._next.to_bytes(self.size, "big")
            self._next = (self._next + 1) % self._space
            if value not in self._live:
                self._live.add(value)
                return value
        raise RuntimeError("extranonce1 space exhausted")

    def release(self, value: bytes) -> None:
        """Give ``value`` back. Idempotent."""
        self._live.discard(value)


class JobIds:
    """Job ids shared by all of a server's sessions: unique across its connections, and (from a
    random start) unlikely to repeat an id of an earlier run. A miner that resumes its session
    and submits a share of a job from before the reconnect gets "stale", never a share checked
    against a different job that happens to have the same id."""

    def __init__(self, start: int = 1) -> None:
        self._next = start % 2**32

    def next(self) -> str:
        """The next id: eight hex digits, wrapping after 2**32."""
        value = self._next
        self._next = (value + 1) % 2**32
        return f"{value:08x}"


class SubmittedShares:
    """Which shares were already submitted, per template and extranonce1 (shared by all of a
    server's sessions).

    A share is the same work whatever job id it is submitted under: vardiff and
    ``suggest_difficulty`` re-send the current template under a new id, and a miner that
    resumes its session gets its old extranonce1 and the order's current template again. So
    the duplicate check keys on the header's fixed parts (template plus extranonce1), not on
    the job id: a session shares one set between the ids of one template, and when a
    connection closes its sets are parked here for ``retention_ms`` (at most ``max_parked``)
    for a resumed session to take over.
    """

    def __init__(self, *, retention_ms: int = 900_000, max_parked: int = 100_000) -> None:
        self.retention_ms = retention_ms
        self.max_parked = max_parked
        self._parked: dict[bytes, tuple[int, set[bytes]]] = {}  # oldest first

    def __len__(self) -> int:
        return len(self._parked)

    def claim(self, template: bytes, *, now_ms: int) -> set[bytes]:
        """The set for ``template`` (a parked one, or a new empty one)."""
        self._prune(now_ms)
        parked = self._parked.pop(template, None)
        return set() if parked is None else parked[1]

    def park(self, template: bytes, seen: set[bytes], *, now_ms: int) -> None:
        """Keep ``seen`` for ``template`` after its connection closed."""
        if not seen:
            return
        self._parked.pop(template, None)
        self._parked[template] = (now_ms, seen)
        self._prune(now_ms)

    def _prune(self, now_ms: int) -> None:
        parked = self._parked
        horizon = now_ms - self.retention_ms
        while parked:
            template, (since, _) = next(iter(parked.items()))
            if since > horizon and len(parked) <= self.max_parked:
                return
            del parked[template]


@dataclass(slots=True)
class Outcome:
    """The effect of one line (or of a deadline), in the order the driver carries it out."""

    reply: bytes = b""
    share: Share | None = None
    start_work: bool = False
    followups: bytes = b""
    close: CloseReason | None = None
    #: For logs: the method handled and the error answered, if any.
    method: str | None = None
    error: StratumError | None = None
    detail: str | None = None


@dataclass(slots=True, kw_only=True)
class SentJob:
    """A job as this connection received it, with everything needed to check its shares."""

    local_id: str
    job: Job
    difficulty: float
    target: int
    extranonce1: bytes
    sent_ms: int
    ntime: int
    coinb1_en1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]
    version: int
    prevhash_header: bytes
    nbits_header: bytes
    #: The header's fixed parts: one template sent to one extranonce1 (see ``SubmittedShares``).
    template: bytes = b""
    stale_at_ms: int | None = None
    seen: set[bytes] = field(default_factory=set)
    merkle_cache: dict[bytes, bytes] = field(default_factory=dict)

    def merkle_root(self, extranonce2: bytes) -> bytes:
        """The merkle root for ``extranonce2`` (cached: miners reuse one for many nonces)."""
        root = self.merkle_cache.get(extranonce2)
        if root is None:
            root = sha256d(self.coinb1_en1 + extranonce2 + self.coinb2)
            for node in self.branch:
                root = sha256d(root + node)
            if len(self.merkle_cache) >= _MERKLE_CACHE_SIZE:
                self.merkle_cache.clear()
            self.merkle_cache[extranonce2] = root
        return root


@dataclass(frozen=True, slots=True)
class Worker:
    """One authorized username on a connection."""

    account: str
    worker: str


def parse_username(username: str) -> Worker:
    """``<account>[.<worker>]`` as stratum.md allows it; raises ``StratumError`` (24) otherwise."""
    match = USERNAME_RE.match(username)
    if match is None:
        raise StratumError(
            StratumErrorCode.UNAUTHORIZED,
            "Invalid username: expected <account>.<worker>, account 1-64 and worker 1-32 of "
            "[A-Za-z0-9_-]",
        )
    return Worker(match.group(1), match.group(2) or DEFAULT_WORKER)


def password_difficulty(password: str | None) -> float | None:
    """The ``d=<number>`` option of a password (comma-separated options), if valid."""
    if not password:
        return None
    for option in password.split(","):
        key, sep, value = option.strip().partition("=")
        if sep and key.strip() == "d":
            try:
                difficulty = float(value)
            except ValueError:
                return None
            return difficulty if difficulty > 0 and math.isfinite(difficulty) else None
    return None


def recover_id(data: bytes) -> RequestId:
    """The request id found in a line that did not parse, or ``None``."""
    match = _ID_RE.search(data)
    if match is None:
        return None
    try:
        value = msgspec.json.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, int | str) else None


_decoders: Final[dict[Method, msgspec.json.Decoder[Any]]] = {
    Method.SUBSCRIBE: msgspec.json.Decoder(SubscribeParams),
    Method.AUTHORIZE: msgspec.json.Decoder(AuthorizeParams),
    Method.EXTRANONCE_SUBSCRIBE: msgspec.json.Decoder(ExtranonceSubscribeParams),
    Method.CONFIGURE: msgspec.json.Decoder(ConfigureParams),
    Method.SUGGEST_DIFFICULTY: msgspec.json.Decoder(SuggestDifficultyParams),
    Method.SUBMIT: msgspec.json.Decoder(SubmitParams),
}
_METHODS: Final = {m.value: m for m in Method}


def _params(method: Method, raw: msgspec.Raw) -> Any:
    try:
        return _decoders[method].decode(raw)
    except msgspec.ValidationError as exc:
        raise StratumError(StratumErrorCode.OTHER, f"Invalid params: {exc}") from None
    except msgspec.DecodeError as exc:  # pragma: no cover - Raw is valid JSON already
        raise StratumError(StratumErrorCode.OTHER, f"Invalid params: {exc}") from None


def _response(request_id: RequestId, result: Any) -> bytes:
    return encode_line(Response(id=request_id, result=result, error=None))


def _error(request_id: RequestId, error: StratumError) -> bytes:
    if request_id is None:
        return b""  # a notification gets no reply
    return encode_line(Response(id=request_id, result=None, error=error.triple()))


def _notification(method: str, params: list[Any]) -> bytes:
    return encode_line(Request(id=None, method=method, params=params))


_TRUE_REPLY_CACHE: dict[RequestId, bytes] = {}


def _true_reply(request_id: RequestId) -> bytes:
    # cpuminer sends every submit with id 4: the reply bytes are worth caching for small ids.
    line = _TRUE_REPLY_CACHE.get(request_id)
    if line is None:
        line = _response(request_id, True)
        if len(_TRUE_REPLY_CACHE) < 4096:
            _TRUE_REPLY_CACHE[request_id] = line
    return line


class ServerSession:
    """The server side of one Stratum connection. See the module docstring."""

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
        self.extranonce1: bytes | None = None
        self.extranonce_subscribed = False
        self.version_rolling_mask = 0
        self.workers: dict[Worker, str] = {}  # worker -> the username it authorized with
        self.first_worker: Worker | None = None
        self.difficulty = config.start_difficulty
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.consecutive_rejects = 0
        self.close_reason: CloseReason | None = None
        self._extranonces = extranonces
        self._splitter = LineSplitter(config.max_line_bytes)
        self._jobs: dict[str, SentJob] = {}
        self._job_ids = job_ids if job_ids is not None else JobIds()
        self._submitted = submitted if submitted is not None else SubmittedShares()
        self._now_ms = now_ms  # the latest time the driver gave us
        self._current: Job | None = None
        self._sent_difficulty: float | None = None
        self._last_useful_ms = now_ms
        self._started_ms = now_ms
        self._vardiff: Vardiff | None = None
        self._submit_worker: Worker | None = None
        self._submit_job: SentJob | None = None
        self._submit_hash = ""
        self._handlers: dict[Method, Callable[[RequestId, msgspec.Raw, int, Outcome], None]] = {
            Method.SUBSCRIBE: self._subscribe,
            Method.AUTHORIZE: self._authorize,
            Method.EXTRANONCE_SUBSCRIBE: self._extranonce_subscribe,
            Method.CONFIGURE: self._configure,
            Method.SUGGEST_DIFFICULTY: self._suggest_difficulty,
            Method.SUBMIT: self._submit,
        }

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
            error = StratumError(
                StratumErrorCode.OTHER, f"Line too long (over {event.limit} bytes)"
            )
            return self._closing(
                CloseReason.LINE_TOO_LONG,
                reply=_error(recover_id(event.prefix), error),
                error=error,
            )
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
        if self._vardiff is not None and self._current is not None:
            new = self._vardiff.on_tick(now_ms)
            if new is not None:
                return Outcome(followups=self._change_difficulty(new, now_ms))
        return None

    def next_deadline_ms(self) -> int:
        """When ``tick`` should run next if no bytes arrive."""
        deadline = self._idle_deadline_ms()
        if self._vardiff is not None and self._current is not None:
            deadline = min(deadline, self._vardiff.next_tick_ms)
        return deadline

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
        if self.extranonce1 is None:
            raise RuntimeError("send_job before subscribe")
        if self.state is SessionState.CLOSED:
            return b""
        out = b""
        if self._sent_difficulty != self.difficulty:
            out = _notification("mining.set_difficulty", [self.difficulty])
            self._sent_difficulty = self.difficulty
        if job.clean_jobs:
            stale_at = now_ms + self.config.stale_grace_ms
            for sent in self._jobs.values():
                if sent.stale_at_ms is None:
                    sent.stale_at_ms = stale_at
        self._prune(now_ms)
        self._now_ms = max(self._now_ms, now_ms)
        local_id = self._job_ids.next()
        coinb1_en1 = bytes.fromhex(job.coinb1) + self.extranonce1
        coinb2 = bytes.fromhex(job.coinb2)
        branch = tuple(bytes.fromhex(node) for node in job.merkle_branch)
        version = int(job.version, 16)
        prevhash_header = swap_words(bytes.fromhex(job.prevhash))
        nbits_header = bytes.fromhex(job.nbits)[::-1]
        template = hashlib.sha256(
            _TEMPLATE_ENCODER.encode(
                (coinb1_en1, coinb2, branch, version, prevhash_header, nbits_header)
            )
        ).digest()
        seen = next((s.seen for s in self._jobs.values() if s.template == template), None)
        if seen is None:
            seen = self._submitted.claim(template, now_ms=now_ms)
        self._jobs[local_id] = SentJob(
            local_id=local_id,
            job=job,
            difficulty=self.difficulty,
            target=target_for(self.config.algorithm, self.difficulty),
            extranonce1=self.extranonce1,
            sent_ms=now_ms,
            ntime=int(job.ntime, 16),
            coinb1_en1=coinb1_en1,
            coinb2=coinb2,
            branch=branch,
            version=version,
            prevhash_header=prevhash_header,
            nbits_header=nbits_header,
            template=template,
            seen=seen,
        )
        self._current = job
        if self._vardiff is None and self.config.vardiff is not None:
            self._vardiff = Vardiff(
                config=self.config.vardiff, difficulty=self.difficulty, now_ms=now_ms
            )
        params = [
            local_id,
            job.prevhash,
            job.coinb1,
            job.coinb2,
            list(job.merkle_branch),
            job.version,
            job.nbits,
            job.ntime,
            job.clean_jobs,
        ]
        return out + _notification("mining.notify", params)

    def show_message(self, text: str) -> bytes:
        """A ``client.show_message`` line."""
        return _notification("client.show_message", [text])

    def reconnect(
        self, *, host: str | None = None, port: int | None = None, wait_s: int = 0
    ) -> bytes:
        """A ``client.reconnect`` line (no host/port: reconnect to the same server)."""
        params: list[Any] = [] if host is None else [host, port, wait_s]
        return _notification("client.reconnect", params)

    def change_extranonce(self, now_ms: int) -> bytes:
        """Move the connection to a fresh extranonce1 with ``mining.set_extranonce``.

        Only for clients that sent ``mining.extranonce.subscribe`` (returns ``b""`` otherwise).
        The current job is re-sent (``clean_jobs``) so the new value applies to it; shares for
        jobs sent before are still checked with the extranonce1 they were sent with.
        """
        if not self.extranonce_subscribed or self.extranonce1 is None:
            return b""
        old = self.extranonce1
        self.extranonce1 = self._extranonces.allocate()
        self._extranonces.release(old)
        out = _notification(
            "mining.set_extranonce", [self.extranonce1.hex(), self.config.extranonce2_size]
        )
        if self._current is not None:
            out += self.send_job(msgspec.structs.replace(self._current, clean_jobs=True), now_ms)
        return out

    def close(self, reason: CloseReason) -> None:
        """The connection is over (driver side: timeout, shutdown, peer gone...). Idempotent."""
        if self.state is not SessionState.CLOSED:
            self.state = SessionState.CLOSED
            self.close_reason = reason
            if self.extranonce1 is not None:
                self._extranonces.release(self.extranonce1)
            for sent in self._jobs.values():
                self._submitted.park(sent.template, sent.seen, now_ms=self._now_ms)
            self._jobs.clear()

    # ----------------------------------------------------------------------- lines

    def _closing(
        self, reason: CloseReason, *, reply: bytes = b"", error: StratumError | None = None
    ) -> Outcome:
        self.close(reason)
        return Outcome(reply=reply, close=reason, error=error, detail=reason.value)

    def _handle_line(self, line: bytes, now_ms: int) -> Outcome:
        try:
            envelope: Envelope = envelope_decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            error = StratumError(StratumErrorCode.OTHER, f"Parse error: {exc}")
            return self._closing(
                CloseReason.BAD_JSON, reply=_error(recover_id(line[:512]), error), error=error
            )
        if envelope.method is None:
            return Outcome(detail="response_ignored")  # e.g. a reply to client.get_version
        request_id = envelope.id
        method = _METHODS.get(envelope.method)
        outcome = Outcome(method=envelope.method)
        if method is None:
            outcome.error = StratumError(StratumErrorCode.OTHER, NOT_SUPPORTED)
            outcome.reply = _error(request_id, outcome.error)
            return outcome
        try:
            next_state = TRANSITIONS[self.state].get(method)
            if next_state is None:
                raise RefusedInState(self.state, method)
            self._handlers[method](request_id, envelope.params, now_ms, outcome)
        except StratumError as error:
            outcome.error = error
            outcome.reply = _error(request_id, error)
            if method is Method.SUBMIT:
                self._count_reject(error, now_ms, outcome)
        if self.state is not SessionState.CONNECTED:
            # Before a successful subscribe nothing counts as useful: a client cannot hold
            # a connection open with configure calls or refused requests.
            self._last_useful_ms = now_ms
        if (
            outcome.share is not None
            and not outcome.share.accepted
            and self.consecutive_rejects > self.config.max_consecutive_rejects
        ):
            text = f"Too many rejected shares ({self.consecutive_rejects} in a row); goodbye"
            outcome.followups += self.show_message(text)
            outcome.close = CloseReason.TOO_MANY_REJECTS
            outcome.detail = text
            self.close(CloseReason.TOO_MANY_REJECTS)
        return outcome

    # ----------------------------------------------------------------------- methods

    def _subscribe(
        self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome
    ) -> None:
        params: SubscribeParams = _params(Method.SUBSCRIBE, raw)
        self.user_agent = params.user_agent
        requested = None
        if params.session_id and _HEX.fullmatch(params.session_id):
            requested = bytes.fromhex(params.session_id)
        self.extranonce1 = self._extranonces.allocate(requested)
        self.state = SessionState.SUBSCRIBED
        sub_id = self.extranonce1.hex()
        result = [
            [["mining.set_difficulty", sub_id], ["mining.notify", sub_id]],
            sub_id,
            self.config.extranonce2_size,
        ]
        out.reply = _response(request_id, result)

    def _authorize(
        self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome
    ) -> None:
        params: AuthorizeParams = _params(Method.AUTHORIZE, raw)
        worker = parse_username(params.username)
        if self.first_worker is None:
            suggested = password_difficulty(params.password)
            if suggested is not None:
                self.difficulty = self.config.clamp(suggested)
            self.first_worker = worker
            out.start_work = True
        self.workers.setdefault(worker, params.username)
        self.state = SessionState.AUTHORIZED
        out.reply = _response(request_id, True)

    def _extranonce_subscribe(
        self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome
    ) -> None:
        _params(Method.EXTRANONCE_SUBSCRIBE, raw)
        self.extranonce_subscribed = True
        out.reply = _response(request_id, True)

    def _configure(
        self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome
    ) -> None:
        params: ConfigureParams = _params(Method.CONFIGURE, raw)
        result: dict[str, Any] = {}
        for extension in params.extensions:
            if extension != VERSION_ROLLING:
                result[extension] = False
                continue
            requested = params.options.get(f"{VERSION_ROLLING}.mask", "ffffffff")
            try:
                if not isinstance(requested, str) or not 1 <= len(requested) <= 8:
                    raise ValueError(requested)
                miner_mask = int(requested, 16)
            except ValueError:
                raise StratumError(
                    StratumErrorCode.OTHER, "Invalid version-rolling.mask: expected 8 hex digits"
                ) from None
            self.version_rolling_mask = self.config.version_rolling_mask & miner_mask
            result[VERSION_ROLLING] = True
            result[f"{VERSION_ROLLING}.mask"] = f"{self.version_rolling_mask:08x}"
        out.reply = _response(request_id, result)

    def _suggest_difficulty(
        self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome
    ) -> None:
        params: SuggestDifficultyParams = _params(Method.SUGGEST_DIFFICULTY, raw)
        if not (params.difficulty > 0 and math.isfinite(params.difficulty)):
            raise StratumError(StratumErrorCode.OTHER, "Difficulty must be a positive number")
        difficulty = self.config.clamp(round_difficulty(params.difficulty))
        out.reply = _response(request_id, True)
        if self._current is None:
            self.difficulty = difficulty
        elif difficulty != self.difficulty:
            out.followups += self._change_difficulty(difficulty, now_ms)

    def _submit(self, request_id: RequestId, raw: msgspec.Raw, now_ms: int, out: Outcome) -> None:
        # What a rejected share's record can say is collected as the pipeline goes.
        self._submit_worker = None
        self._submit_job = None
        self._submit_hash = ""
        # Shape first.
        params: SubmitParams = _params(Method.SUBMIT, raw)
        if len(params.extranonce2) != 2 * self.config.extranonce2_size:
            raise StratumError(
                StratumErrorCode.OTHER,
                f"Invalid extranonce2 size: expected {self.config.extranonce2_size} bytes",
            )
        worker = parse_username(params.username)
        self._submit_worker = worker
        if worker not in self.workers:
            raise StratumError(StratumErrorCode.UNAUTHORIZED, "Unauthorized worker")
        sent = self._jobs.get(params.job_id)
        if sent is None or (sent.stale_at_ms is not None and now_ms >= sent.stale_at_ms):
            raise StratumError(StratumErrorCode.STALE)
        self._submit_job = sent
        ntime = int(params.ntime, 16)
        if ntime < sent.ntime:
            raise StratumError(StratumErrorCode.OTHER, "ntime out of range: before the job's")
        if ntime > now_ms // 1000 + self.config.ntime_future_s:
            raise StratumError(StratumErrorCode.OTHER, "ntime out of range: too far ahead")
        version = sent.version
        if params.version_bits is not None:
            bits = int(params.version_bits, 16)
            if bits & ~self.version_rolling_mask:
                raise StratumError(
                    StratumErrorCode.OTHER, "Version bits outside the negotiated mask"
                )
            version = (version & ~self.version_rolling_mask) | bits
        extranonce2 = bytes.fromhex(params.extranonce2)
        ntime_bytes = bytes.fromhex(params.ntime)
        nonce = bytes.fromhex(params.nonce)
        # The rolled version, not the bits as sent: "00000000" and no bits are the same header.
        key = extranonce2 + ntime_bytes + nonce + version.to_bytes(4, "big")
        if key in sent.seen:
            raise StratumError(StratumErrorCode.DUPLICATE)
        sent.seen.add(key)
        header = (
            version.to_bytes(4, "little")
            + sent.prevhash_header
            + sent.merkle_root(extranonce2)
            + ntime_bytes[::-1]
            + sent.nbits_header
            + nonce[::-1]
        )
        digest = pow_hash(self.config.algorithm, header)
        value = hash_to_int(digest)
        hash_hex = digest[::-1].hex()
        if value > sent.target:
            self._submit_hash = hash_hex
            raise StratumError(StratumErrorCode.LOW_DIFFICULTY)
        self.accepted += 1
        self.consecutive_rejects = 0
        out.share = Share(
            conn_id=self.conn_id,
            account=worker.account,
            worker=worker.worker,
            algorithm=self.config.algorithm,
            source=sent.job.source,
            difficulty=sent.difficulty,
            accepted=True,
            reason=None,
            time_ms=now_ms,
            hash_hex=hash_hex,
        )
        out.reply = _true_reply(request_id)
        if self._vardiff is not None:
            new = self._vardiff.on_share(share_difficulty=sent.difficulty, now_ms=now_ms)
            if new is not None:
                out.followups += self._change_difficulty(new, now_ms)

    # ----------------------------------------------------------------------- helpers

    def _count_reject(self, error: StratumError, now_ms: int, out: Outcome) -> None:
        self.consecutive_rejects += 1
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        worker, sent, hash_hex = self._submit_worker, self._submit_job, self._submit_hash
        out.share = Share(
            conn_id=self.conn_id,
            account=worker.account if worker else "",
            worker=worker.worker if worker else "",
            algorithm=self.config.algorithm,
            source=sent.job.source if sent else "",
            difficulty=sent.difficulty if sent else self.difficulty,
            accepted=False,
            reason=error.reason,
            time_ms=now_ms,
            hash_hex=hash_hex,
        )

    def _change_difficulty(self, difficulty: float, now_ms: int) -> bytes:
        """New difficulty: ``set_difficulty`` then the current job under a new id.

        cpuminer only picks up a difficulty with a new job id, so the job is re-sent (not
        clean: shares for earlier ids stay valid at the difficulty they were sent with).
        """
        self.difficulty = difficulty
        if self._vardiff is not None:
            self._vardiff.reset(difficulty=difficulty, now_ms=now_ms)
        if self._current is None:
            return b""
        return self.send_job(msgspec.structs.replace(self._current, clean_jobs=False), now_ms)

    def _prune(self, now_ms: int) -> None:
        jobs = self._jobs
        for local_id in [
            k for k, v in jobs.items() if v.stale_at_ms is not None and v.stale_at_ms <= now_ms
        ]:
            del jobs[local_id]
        while len(jobs) >= self.config.max_jobs:
            del jobs[next(iter(jobs))]

    @property
    def current_job(self) -> Job | None:
        """The last job sent to this connection."""
        return self._current

    @property
    def jobs(self) -> dict[str, SentJob]:
        """Jobs this connection can still submit shares for, by id."""
        return self._jobs

    @property
    def started_ms(self) -> int:
        """When the session was created."""
        return self._started_ms
