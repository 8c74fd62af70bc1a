"""The server session's states and the one table that says what each state allows.

Theory of operation
-------------------
As in h11's ``_state.py``, a connection's life is a table, not a scatter of flags:
``TRANSITIONS[state][method]`` is the state a successful request leads to, and a method missing
from its state's row is refused with ``RefusedInState``, a ``StratumError`` whose code is the
one stratum.md gives for that pair (25 before subscribe, 24 for a submit before authorize, 20
otherwise). ``ServerSession`` looks every request up here before its handler runs and moves to
the table's target state only when the handler succeeded, so the table is what drives it. The
one transition no request makes is to ``CLOSED``: the peer, a deadline or the driver ends the
connection (``ServerSession.close``), and ``CLOSED`` accepts nothing.
"""

from __future__ import annotations

import enum
from typing import Final

from stratum.core.errors import StratumError, StratumErrorCode
from stratum.core.messages import Method


class SessionState(enum.Enum):
    """Where a connection is in its life."""

    CONNECTED = "connected"
    SUBSCRIBED = "subscribed"
    AUTHORIZED = "authorized"  # subscribed and at least one worker: jobs flow
    CLOSED = "closed"

    # Members are singletons compared by identity: hash them by identity too, a C slot, where
    # Enum's own ``__hash__`` is a Python call (on every line: ``TRANSITIONS[state]``).
    __hash__ = object.__hash__


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
    #: Closed at once, without a flush: an injected fault (the pool vanished).
    DROPPED = "dropped"
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


def next_state(state: SessionState, method: Method) -> SessionState:
    """The state a successful ``method`` leads to from ``state``.

    Raises ``RefusedInState`` when ``state`` does not accept ``method``.
    """
    target = TRANSITIONS[state].get(method)
    if target is None:
        raise RefusedInState(state, method)
    return target
