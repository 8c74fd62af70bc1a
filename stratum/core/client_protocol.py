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

Lines are split by the same ``LineSplitter`` the server uses, method names are the shared
``Method``, and a rejection's code is read through the one reason table (``errors``).

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

from stratum.core import client_events as events
from stratum.core.errors import (
    NOT_SUPPORTED,
    RejectReason,
    StratumError,
    StratumErrorCode,
    reason_for_code,
)
from stratum.core.framing import NEED_DATA, EndOfStream, LineSplitter, LineTooLong, NeedData
from stratum.core.messages import (
    CLIENT_REQUESTS,
    MAX_LINE_BYTES,
    METHODS,
    Envelope,
    Method,
    NotifyParams,
    ReconnectParams,
    Request,
    RequestId,
    SetExtranonceParams,
    ShowMessageParams,
    SubscribeResult,
    decode_params,
    encode_line,
    envelope_decoder,
    error_line,
    response_line,
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


# Which requests each state allows us to send.
_ALLOWED: Final[dict[ClientState, frozenset[Method]]] = {
    ClientState.CONNECTED: frozenset({Method.SUBSCRIBE, Method.CONFIGURE}),
    ClientState.SUBSCRIBING: frozenset({Method.CONFIGURE}),
    ClientState.SUBSCRIBED: CLIENT_REQUESTS - {Method.SUBSCRIBE},
    ClientState.CLOSED: frozenset(),
}


# --------------------------------------------------------------------------- the protocol


class _Pending(msgspec.Struct, frozen=True):
    method: Method
    # The params we sent, kept to describe the answer (username, submit fields).
    params: tuple[Any, ...]


_ERROR_DECODER: Final = msgspec.json.Decoder()
_SUBSCRIBE_DECODER: Final = msgspec.json.Decoder(SubscribeResult)
_CONFIGURE_DECODER: Final = msgspec.json.Decoder(dict[str, Any] | None)
_BOOL_DECODER: Final = msgspec.json.Decoder(bool | None)


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
        self._splitter = LineSplitter(MAX_LINE_BYTES)
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
        self._splitter.receive_data(bytes(data))

    def next_event(self) -> events.Event | NeedData:
        """The next event, or ``NEED_DATA``.

        Raises ``RemoteProtocolError`` for a line that is too long, not JSON, or a message the
        server should not send (e.g. a response to nothing); the connection is then unusable.
        """
        while True:
            if self.state is ClientState.CLOSED:
                return NEED_DATA
            line = self._splitter.next_line()
            if line is NEED_DATA:
                return NEED_DATA
            if isinstance(line, LineTooLong):
                self._close()
                raise RemoteProtocolError(f"line longer than {line.limit} bytes")
            if isinstance(line, EndOfStream):
                pending = tuple(self._pending)
                self._close()
                return events.ConnectionClosed(pending=pending)
            assert isinstance(line, bytes)
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

    def _handle_line(self, line: bytes) -> events.Event | None:
        try:
            envelope = envelope_decoder.decode(line)
        except msgspec.DecodeError as exc:
            raise RemoteProtocolError(f"bad line from server: {exc}") from exc
        try:
            if envelope.method is not None:
                if envelope.id is not None:
                    self._answer_server_request(envelope.id, envelope.method)
                    return None
                return self._notification(envelope.method, envelope.params)
            return self._response(envelope)
        except (msgspec.ValidationError, StratumError) as exc:
            raise RemoteProtocolError(f"bad {envelope.method or 'response'}: {exc}") from exc

    def _answer_server_request(self, request_id: RequestId, method: str) -> None:
        if METHODS.get(method) is Method.GET_VERSION:
            self._outbox += response_line(request_id, self.user_agent)
        else:
            error = StratumError(StratumErrorCode.OTHER, NOT_SUPPORTED)
            self._outbox += error_line(request_id, error)

    def _notification(self, name: str, params: msgspec.Raw) -> events.Event:
        method = METHODS.get(name)
        if method is Method.NOTIFY:
            job: NotifyParams = decode_params(method, params)
            return events.NewJob(**msgspec.structs.asdict(job), difficulty=self.difficulty)
        if method is Method.SET_DIFFICULTY:
            d = decode_params(method, params).difficulty
            if not d > 0 or d == float("inf"):
                raise RemoteProtocolError(f"bad {name}: difficulty must be positive, got {d!r}")
            self.difficulty = d
            return events.NewDifficulty(difficulty=d)
        if method is Method.SET_EXTRANONCE:
            e: SetExtranonceParams = decode_params(method, params)
            if e.extranonce2_size < 0:
                raise RemoteProtocolError(f"bad {name}: negative extranonce2_size")
            self.extranonce1, self.extranonce2_size = e.extranonce1, e.extranonce2_size
            return events.NewExtranonce(
                extranonce1=e.extranonce1, extranonce2_size=e.extranonce2_size
            )
        if method is Method.SET_VERSION_MASK:
            mask = decode_params(method, params).mask
            return events.NewVersionMask(mask=mask)
        if method is Method.RECONNECT:
            r: ReconnectParams = decode_params(method, params)
            port = int(r.port) if r.port not in (None, "") else None
            return events.ReconnectRequested(
                host=r.host or None, port=port, wait_s=float(r.wait_s or 0)
            )
        if method is Method.SHOW_MESSAGE:
            show: ShowMessageParams = decode_params(method, params)
            return events.ShowMessage(text=show.text)
        return events.UnknownNotification(method=name)

    def _take_pending(self, request_id: RequestId) -> tuple[int, _Pending]:
        if isinstance(request_id, int) and request_id in self._pending:
            return request_id, self._pending.pop(request_id)
        if not self._pending:
            raise RemoteProtocolError(f"response with id {request_id!r} to no request")
        # An id we never used: servers answer in order, so it is the oldest request.
        return self._pending.popitem(last=False)

    def _response(self, envelope: Envelope) -> events.ResponseEvent:
        request_id, pending = self._take_pending(envelope.id)
        failure = _failure(envelope.error)
        method = pending.method
        if method is Method.SUBSCRIBE:
            if failure is not None:
                self.state = ClientState.CONNECTED
                return events.RequestFailed(request_id=request_id, method=method, failure=failure)
            result = _SUBSCRIBE_DECODER.decode(envelope.result)
            self.state = ClientState.SUBSCRIBED
            self.extranonce1 = result.extranonce1
            self.extranonce2_size = result.extranonce2_size
            self.session_id = _session_id(result.subscriptions)
            return events.Subscribed(
                request_id=request_id,
                extranonce1=result.extranonce1,
                extranonce2_size=result.extranonce2_size,
                session_id=self.session_id,
            )
        if method is Method.AUTHORIZE:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            if not ok and failure is None:
                code = StratumErrorCode.UNAUTHORIZED
                failure = events.StratumFailure(code=code, message=code.default_message)
            return events.Authorized(
                request_id=request_id, username=str(pending.params[0]), ok=ok, failure=failure
            )
        if method is Method.EXTRANONCE_SUBSCRIBE:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            return events.ExtranonceSubscribed(request_id=request_id, ok=ok)
        if method is Method.SUGGEST_DIFFICULTY:
            ok = failure is None and _BOOL_DECODER.decode(envelope.result) is True
            return events.DifficultySuggested(request_id=request_id, ok=ok)
        if method is Method.CONFIGURE:
            if failure is not None:
                return events.RequestFailed(request_id=request_id, method=method, failure=failure)
            return _configured(request_id, _CONFIGURE_DECODER.decode(envelope.result))
        # mining.submit
        username, job_id, extranonce2, ntime, nonce = (str(p) for p in pending.params[:5])
        accepted = failure is None and _BOOL_DECODER.decode(envelope.result) is True
        reason: RejectReason | None = None
        if not accepted:
            reason = reason_for_code(failure.code) if failure is not None else RejectReason.OTHER
        return events.SubmitResult(
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


def _failure(raw: msgspec.Raw) -> events.StratumFailure | None:
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
        code = StratumErrorCode.OTHER
    return events.StratumFailure(code=code, message=str(message))


def _session_id(subscriptions: list[list[str]]) -> str | None:
    # cpuminer resumes with the id of the mining.notify subscription.
    for entry in subscriptions:
        if len(entry) >= 2 and entry[0] == "mining.notify":
            return entry[1]
    return None


def _configured(request_id: int, result: dict[str, Any] | None) -> events.Configured:
    result = result or {}
    rolling = result.get("version-rolling") is True
    mask: int | None = None
    raw_mask = result.get("version-rolling.mask")
    if rolling and isinstance(raw_mask, str):
        try:
            mask = int(raw_mask, 16)
        except ValueError:
            rolling = False
    return events.Configured(
        request_id=request_id, version_rolling=rolling, version_rolling_mask=mask
    )
