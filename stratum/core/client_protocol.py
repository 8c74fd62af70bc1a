"""The miner's side of Stratum v1 as a pure object: lines in, typed events out.

Theory of operation
-------------------
``ClientProtocol`` owns no socket, clock or task. The driver feeds it whatever bytes arrived
(``receive_data(b)``, ``b""`` at EOF) and pulls typed events (``next_event()``) until it says
``NEED_DATA``. Requests are built by methods (``subscribe()``, ``authorize()``, ``submit()``...)
that return the line to send and remember the request under an id that *we* choose: ids are
increasing integers, never reused, so a response is matched to its request by id. Servers answer
in order; one that answers with an id we never used (some proxies do) is matched to the oldest
request still pending, which is what order-preserving servers imply.

Difficulty follows cpuminer: ``mining.set_difficulty`` only records the value; every
``mining.notify`` captures the difficulty in force when it arrives, so ``NewJob.difficulty`` is
the difficulty the server will check that job's shares with.

States live in one table (``_ALLOWED``): before ``mining.subscribe`` has been answered the only
request we may send is ``mining.subscribe`` itself (and ``mining.configure``, which BIP 310 puts
first); after EOF nothing. Sending what the state forbids is our bug (``LocalProtocolError``);
a line the server should not have sent is its fault (``RemoteProtocolError``), after which the
driver closes the connection. Unknown notifications are reported (``UnknownNotification``) and
otherwise ignored; a request from the server that we do not implement is answered with
``[20, "Not supported.", null]`` through ``data_to_send()``, ``client.get_version`` with our user
agent.
"""

from __future__ import annotations

import collections
import enum
from typing import Any, Final

import msgspec

from stratum.core.messages import (
    MAX_LINE_BYTES,
    Envelope,
    NotifyParams,
    ReconnectParams,
    Request,
    RequestId,
    Response,
    SetDifficultyParams,
    SetExtranonceParams,
    ShowMessageParams,
    SubscribeResult,
    encode_line,
    envelope_decoder,
)

DEFAULT_USER_AGENT: Final = "hashmarket-worker/0.1"
#: The difficulty a job has when the server never sent ``mining.set_difficulty``.
DEFAULT_DIFFICULTY: Final = 1.0


class LocalProtocolError(Exception):
    """We tried to do something the protocol state does not allow (a bug in the caller)."""


class RemoteProtocolError(Exception):
    """The server sent something that breaks the protocol; close the connection."""


class ClientState(enum.Enum):
    """Where the connection is in its life."""

    CONNECTED = "connected"
    SUBSCRIBING = "subscribing"
    SUBSCRIBED = "subscribed"
    CLOSED = "closed"


class Method(enum.StrEnum):
    """The requests a client sends."""

    SUBSCRIBE = "mining.subscribe"
    AUTHORIZE = "mining.authorize"
    EXTRANONCE_SUBSCRIBE = "mining.extranonce.subscribe"
    CONFIGURE = "mining.configure"
    SUGGEST_DIFFICULTY = "mining.suggest_difficulty"
    SUBMIT = "mining.submit"


class RejectReason(enum.StrEnum):
    """Why a submit was refused, named after the Stratum error codes (see stratum.md)."""

    OTHER = "other"
    STALE = "stale"
    DUPLICATE = "duplicate"
    LOW_DIFFICULTY = "low_difficulty"
    UNAUTHORIZED = "unauthorized"
    NOT_SUBSCRIBED = "not_subscribed"
    UNKNOWN = "unknown"


_REASON_BY_CODE: Final = {
    20: RejectReason.OTHER,
    21: RejectReason.STALE,
    22: RejectReason.DUPLICATE,
    23: RejectReason.LOW_DIFFICULTY,
    24: RejectReason.UNAUTHORIZED,
    25: RejectReason.NOT_SUBSCRIBED,
}


def reason_for_code(code: int) -> RejectReason:
    """The ``RejectReason`` for a Stratum error code (``UNKNOWN`` for codes outside 20-25)."""
    return _REASON_BY_CODE.get(code, RejectReason.UNKNOWN)


# Which requests each state allows us to send.
_ALLOWED: Final[dict[ClientState, frozenset[Method]]] = {
    ClientState.CONNECTED: frozenset({Method.SUBSCRIBE, Method.CONFIGURE}),
    ClientState.SUBSCRIBING: frozenset({Method.CONFIGURE}),
    ClientState.SUBSCRIBED: frozenset(Method) - {Method.SUBSCRIBE},
    ClientState.CLOSED: frozenset(),
}


class _NeedData(enum.Enum):
    NEED_DATA = "need_data"


#: Returned by ``next_event`` when it needs more bytes.
NEED_DATA: Final = _NeedData.NEED_DATA


# --------------------------------------------------------------------------- events


class StratumFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A JSON-RPC error the server answered with: ``[code, message, ...]``."""

    code: int
    message: str


class Subscribed(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to ``mining.subscribe``: our extranonce1 and the session id to resume with."""

    request_id: int
    extranonce1: str
    extranonce2_size: int
    session_id: str | None


class Authorized(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to ``mining.authorize``: ``ok`` false carries the server's ``failure``."""

    request_id: int
    username: str
    ok: bool
    failure: StratumFailure | None = None


class ExtranonceSubscribed(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to ``mining.extranonce.subscribe`` (``ok`` false: the server does not offer it)."""

    request_id: int
    ok: bool


class Configured(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to ``mining.configure`` (BIP 310), reduced to what a miner acts on."""

    request_id: int
    version_rolling: bool
    version_rolling_mask: int | None


class DifficultySuggested(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to ``mining.suggest_difficulty``."""

    request_id: int
    ok: bool


class SubmitResult(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one ``mining.submit``; ``reason`` is set when it was rejected."""

    request_id: int
    username: str
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    accepted: bool
    reason: RejectReason | None = None
    failure: StratumFailure | None = None


class RequestFailed(msgspec.Struct, frozen=True, kw_only=True):
    """An error reply to a request that has no dedicated failure event (subscribe, configure)."""

    request_id: int
    method: Method
    failure: StratumFailure


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """``mining.notify``, with the difficulty and extranonce in force when it arrived."""

    job_id: str
    prevhash: str
    coinb1: str
    coinb2: str
    merkle_branch: tuple[str, ...]
    version: str
    nbits: str
    ntime: str
    clean_jobs: bool
    difficulty: float


class NewDifficulty(msgspec.Struct, frozen=True, kw_only=True):
    """``mining.set_difficulty``: applies to jobs that arrive after it."""

    difficulty: float


class NewExtranonce(msgspec.Struct, frozen=True, kw_only=True):
    """``mining.set_extranonce``: the connection's new extranonce1 and extranonce2 size."""

    extranonce1: str
    extranonce2_size: int


class ReconnectRequested(msgspec.Struct, frozen=True, kw_only=True):
    """``client.reconnect``: close, wait ``wait_s``, connect to host/port (None: the same)."""

    host: str | None
    port: int | None
    wait_s: float


class ShowMessage(msgspec.Struct, frozen=True, kw_only=True):
    """``client.show_message``: text for the operator."""

    text: str


class UnknownNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A notification we do not implement (ignored apart from this event)."""

    method: str


class ConnectionClosed(msgspec.Struct, frozen=True, kw_only=True):
    """The server closed the connection (EOF); ``pending`` requests will never be answered."""

    pending: tuple[int, ...]


Event = (
    Subscribed
    | Authorized
    | ExtranonceSubscribed
    | Configured
    | DifficultySuggested
    | SubmitResult
    | RequestFailed
    | NewJob
    | NewDifficulty
    | NewExtranonce
    | ReconnectRequested
    | ShowMessage
    | UnknownNotification
    | ConnectionClosed
)

#: Events that answer one of our requests (each carries ``request_id``).
ResponseEvent = (
    Subscribed
    | Authorized
    | ExtranonceSubscribed
    | Configured
    | DifficultySuggested
    | SubmitResult
    | RequestFailed
)


# --------------------------------------------------------------------------- the protocol


class _Pending(msgspec.Struct, frozen=True):
    method: Method
    # The params we sent, kept to describe the answer (username, submit fields).
    params: tuple[Any, ...]


_ERROR_DECODER: Final = msgspec.json.Decoder()
_SUBSCRIBE_DECODER: Final = msgspec.json.Decoder(SubscribeResult)
_CONFIGURE_DECODER: Final = msgspec.json.Decoder(dict[str, Any] | None)
_BOOL_DECODER: Final = msgspec.json.Decoder(bool | None)
_NOTIFY_DECODER: Final = msgspec.json.Decoder(NotifyParams)
_DIFF_DECODER: Final = msgspec.json.Decoder(SetDifficultyParams)
_EXTRANONCE_DECODER: Final = msgspec.json.Decoder(SetExtranonceParams)
_RECONNECT_DECODER: Final = msgspec.json.Decoder(ReconnectParams)
_SHOW_DECODER: Final = msgspec.json.Decoder(ShowMessageParams)


class ClientProtocol:
    """One Stratum v1 client connection's state, without I/O. See the module docstring."""

    def __init__(self, *, user_agent: str = DEFAULT_USER_AGENT) -> None:
        self.user_agent = user_agent
        self.state = ClientState.CONNECTED
        #: The difficulty the next ``mining.notify`` will carry.
        self.difficulty = DEFAULT_DIFFICULTY
        self.extranonce1: str | None = None
        self.extranonce2_size: int | None = None
        self.session_id: str | None = None
        self._next_id = 1
        self._pending: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._buffer = bytearray()
        self._eof = False
        self._outbox = bytearray()

    # ----------------------------------------------------------------- requests out

    @property
    def pending_ids(self) -> tuple[int, ...]:
        """Ids of our requests not answered yet, oldest first."""
        return tuple(self._pending)

    def subscribe(self, *, session_id: str | None = None) -> tuple[int, bytes]:
        """``mining.subscribe [user_agent, session_id?]``: returns (request id, line).

        Raises ``LocalProtocolError`` if already subscribing/subscribed or closed.
        """
        params: tuple[Any, ...] = (
            (self.user_agent,) if session_id is None else (self.user_agent, session_id)
        )
        request = self._request(Method.SUBSCRIBE, params)
        self.state = ClientState.SUBSCRIBING
        return request

    def authorize(self, username: str, password: str = "x") -> tuple[int, bytes]:
        """``mining.authorize [username, password]``; raises ``LocalProtocolError`` before
        the subscribe reply."""
        return self._request(Method.AUTHORIZE, (username, password))

    def extranonce_subscribe(self) -> tuple[int, bytes]:
        """``mining.extranonce.subscribe []``; raises ``LocalProtocolError`` before subscribe."""
        return self._request(Method.EXTRANONCE_SUBSCRIBE, ())

    def configure(self, extensions: list[str], options: dict[str, str | int]) -> tuple[int, bytes]:
        """``mining.configure [extensions, options]`` (BIP 310); allowed before subscribe."""
        return self._request(Method.CONFIGURE, (list(extensions), dict(options)))

    def suggest_difficulty(self, difficulty: float) -> tuple[int, bytes]:
        """``mining.suggest_difficulty [difficulty]``; raises ``LocalProtocolError`` before
        subscribe."""
        return self._request(Method.SUGGEST_DIFFICULTY, (difficulty,))

    def submit(
        self,
        *,
        username: str,
        job_id: str,
        extranonce2: str,
        ntime: str,
        nonce: str,
        version_bits: str | None = None,
    ) -> tuple[int, bytes]:
        """``mining.submit``; the hex fields go out as given. Raises ``LocalProtocolError``
        before subscribe or after close."""
        params: tuple[Any, ...] = (username, job_id, extranonce2, ntime, nonce)
        if version_bits is not None:
            params = (*params, version_bits)
        return self._request(Method.SUBMIT, params)

    def _request(self, method: Method, params: tuple[Any, ...]) -> tuple[int, bytes]:
        if method not in _ALLOWED[self.state]:
            raise LocalProtocolError(f"cannot send {method} in state {self.state.value}")
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = _Pending(method, params)
        return request_id, encode_line(Request(id=request_id, method=method, params=params))

    def data_to_send(self) -> bytes:
        """Replies we owe the server (to its own requests); empty when there are none."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    # ----------------------------------------------------------------- bytes in, events out

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the server; ``b""`` means EOF."""
        if self._eof:
            if data:
                raise LocalProtocolError("data received after EOF")
            return
        if not data:
            self._eof = True
        self._buffer += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or ``NEED_DATA``.

        Raises ``RemoteProtocolError`` for a line that is too long, not JSON, or a message the
        server should not send (e.g. a response to nothing); the connection is then unusable.
        """
        while True:
            if self.state is ClientState.CLOSED:
                return NEED_DATA
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._close()
                    raise RemoteProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
                if self._eof:
                    pending = tuple(self._pending)
                    self._close()
                    return ConnectionClosed(pending=pending)
                return NEED_DATA
            line = bytes(self._buffer[:newline]).rstrip(b"\r")
            del self._buffer[: newline + 1]
            if len(line) > MAX_LINE_BYTES:
                self._close()
                raise RemoteProtocolError(f"line longer than {MAX_LINE_BYTES} bytes")
            if not line.strip():
                continue
            try:
                event = self._handle_line(line)
            except RemoteProtocolError:
                self._close()
                raise
            if event is not None:
                return event

    def _close(self) -> None:
        self.state = ClientState.CLOSED
        self._pending.clear()
        self._buffer.clear()

    def _handle_line(self, line: bytes) -> Event | None:
        try:
            envelope = envelope_decoder.decode(line)
        except msgspec.DecodeError as exc:
            self._close()
            raise RemoteProtocolError(f"bad line from server: {exc}") from exc
        try:
            if envelope.method is not None:
                if envelope.id is not None:
                    self._answer_server_request(envelope.id, envelope.method)
                    return None
                return self._notification(envelope.method, envelope.params)
            return self._response(envelope)
        except msgspec.ValidationError as exc:
            self._close()
            raise RemoteProtocolError(f"bad {envelope.method or 'response'}: {exc}") from exc

    def _answer_server_request(self, request_id: RequestId, method: str) -> None:
        if method == "client.get_version":
            reply = Response(id=request_id, result=self.user_agent, error=None)
        else:
            reply = Response(id=request_id, result=None, error=(20, "Not supported.", None))
        self._outbox += encode_line(reply)

    def _notification(self, method: str, params: msgspec.Raw) -> Event:
        if method == "mining.notify":
            p = _NOTIFY_DECODER.decode(params)
            return NewJob(
                job_id=p.job_id,
                prevhash=p.prevhash,
                coinb1=p.coinb1,
                coinb2=p.coinb2,
                merkle_branch=tuple(p.merkle_branch),
                version=p.version,
                nbits=p.nbits,
                ntime=p.ntime,
                clean_jobs=p.clean_jobs,
                difficulty=self.difficulty,
            )
        if method == "mining.set_difficulty":
            d = _DIFF_DECODER.decode(params).difficulty
            if not d > 0 or d == float("inf"):
                raise msgspec.ValidationError(f"difficulty must be positive, got {d!r}")
            self.difficulty = d
            return NewDifficulty(difficulty=d)
        if method == "mining.set_extranonce":
            e = _EXTRANONCE_DECODER.decode(params)
            if e.extranonce2_size < 0:
                raise msgspec.ValidationError("negative extranonce2_size")
            self.extranonce1, self.extranonce2_size = e.extranonce1, e.extranonce2_size
            return NewExtranonce(extranonce1=e.extranonce1, extranonce2_size=e.extranonce2_size)
        if method == "client.reconnect":
            r = _RECONNECT_DECODER.decode(params)
            port = int(r.port) if r.port not in (None, "") else None
            return ReconnectRequested(host=r.host or None, port=port, wait_s=float(r.wait_s or 0))
        if method == "client.show_message":
            return ShowMessage(text=_SHOW_DECODER.decode(params).text)
        return UnknownNotification(method=method)

    def _take_pending(self, request_id: RequestId) -> tuple[int, _Pending]:
        if isinstance(request_id, int) and request_id in self._pending:
            return request_id, self._pending.pop(request_id)
        if not self._pending:
            raise RemoteProtocolError(f"response with id {request_id!r} to no request")
        # An id we never used: servers answer in order, so it is the oldest request.
        return self._pending.popitem(last=False)

    def _response(self, envelope: Envelope) -> ResponseEvent:
        request_id, pending = self._take_pending(envelope.id)
        failure = _failure(envelope.error)
        method = pending.method
        if method is Method.SUBSCRIBE:
            if failure is not None:
                self.state = ClientState.CONNECTED
                return RequestFailed(request_id=request_id, method=method, failure=failure)
            result = _SUBSCRIBE_DECODER.decode(envelope.result)
            self.state = ClientState.SUBSCRIBED
            self.extranonce1 = result.extranonce1
            self.extranonce2_size = result.extranonce2_size
            self.session_id = _session_id(result.subscriptions)
            return Subscribed(
                request_id=request_id,
                extranonce1=result.extranonce1,
                extranonce2_size=result.extranonce2_size,
                session_id=self.session_id,
            )
        if method is Method.AUTHORIZE:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            if not ok and failure is None:
                failure = StratumFailure(code=24, message="Unauthorized worker")
            return Authorized(
                request_id=request_id, username=str(pending.params[0]), ok=ok, failure=failure
            )
        if method is Method.EXTRANONCE_SUBSCRIBE:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            return ExtranonceSubscribed(request_id=request_id, ok=ok)
        if method is Method.SUGGEST_DIFFICULTY:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            return DifficultySuggested(request_id=request_id, ok=ok)
        if method is Method.CONFIGURE:
            if failure is not None:
                return RequestFailed(request_id=request_id, method=method, failure=failure)
            return _configured(request_id, _CONFIGURE_DECODER.decode(envelope.result))
        # mining.submit
        username, job_id, extranonce2, ntime, nonce = (str(p) for p in pending.params[:5])
        accepted = failure is None and _BOOL_DECODER.decode(envelope.result) is True
        reason: RejectReason | None = None
        if not accepted:
            reason = reason_for_code(failure.code) if failure is not None else RejectReason.OTHER
        return SubmitResult(
            request_id=request_id,
            username=username,
            job_id=job_id,
            extranonce2=extranonce2,
            ntime=ntime,
            nonce=nonce,
            accepted=accepted,
            reason=reason,
            failure=failure,
        )


def _failure(raw: msgspec.Raw) -> StratumFailure | None:
    error: Any = _ERROR_DECODER.decode(raw)
    if error is None or error is False:
        return None
    if isinstance(error, list) and len(error) >= 2:
        code, message = error[0], error[1]
    elif isinstance(error, dict):
        # Some pools send JSON-RPC 2.0 style error objects.
        code, message = error.get("code"), error.get("message")
    else:
        code, message = None, error
    if not isinstance(code, int) or isinstance(code, bool):
        code = 20
    return StratumFailure(code=code, message=str(message))


def _session_id(subscriptions: list[list[str]]) -> str | None:
    # cpuminer resumes with the id of the mining.notify subscription.
    for entry in subscriptions:
        if len(entry) >= 2 and entry[0] == "mining.notify":
            return entry[1]
    return None


def _configured(request_id: int, result: dict[str, Any] | None) -> Configured:
    result = result or {}
    rolling = result.get("version-rolling") is True
    mask: int | None = None
    raw_mask = result.get("version-rolling.mask")
    if rolling and isinstance(raw_mask, str):
        try:
            mask = int(raw_mask, 16)
        except ValueError:
            rolling = False
    return Configured(request_id=request_id, version_rolling=rolling, version_rolling_mask=mask)
