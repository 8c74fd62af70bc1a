"""What the miner's side of Stratum reports: one typed event per thing the server said.

``ClientProtocol.next_event`` returns these. Answers to our own requests carry the
``request_id`` we chose (``ResponseEvent``); a notification's event is its params Struct from
``stratum.core.messages`` (the one the server encodes it with), plus what the client adds.
Rejections are named by the one reason table both sides share (``errors.RejectReason``).
"""

from __future__ import annotations

import msgspec

from stratum.core.errors import RejectReason
from stratum.core.messages import (
    Method,
    NotifyParams,
    SetDifficultyParams,
    SetExtranonceParams,
    SetVersionMaskParams,
    ShowMessageParams,
)


class StratumFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A JSON-RPC error the server answered with: ``[code, message, ...]``."""

    code: int
    message: str


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one of our requests, under the id we sent it with."""

    request_id: int


class Subscribed(_Answer, frozen=True, kw_only=True):
    """The reply to ``mining.subscribe``: our extranonce1 and the session id to resume with."""

    extranonce1: str
    extranonce2_size: int
    session_id: str | None


class Authorized(_Answer, frozen=True, kw_only=True):
    """The reply to ``mining.authorize``: ``ok`` false carries the server's ``failure``."""

    username: str
    ok: bool
    failure: StratumFailure | None = None


class ExtranonceSubscribed(_Answer, frozen=True, kw_only=True):
    """The reply to ``mining.extranonce.subscribe`` (``ok`` false: the server does not offer it)."""

    ok: bool


class Configured(_Answer, frozen=True, kw_only=True):
    """The reply to ``mining.configure`` (BIP 310), reduced to what a miner acts on."""

    version_rolling: bool
    version_rolling_mask: int | None


class DifficultySuggested(_Answer, frozen=True, kw_only=True):
    """The reply to ``mining.suggest_difficulty``."""

    ok: bool


class SubmitResult(_Answer, frozen=True, kw_only=True):
    """The verdict on one ``mining.submit`` (the share's fields as we sent them); ``reason`` is
    set when it was rejected."""

    username: str
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    accepted: bool
    reason: RejectReason | None = None
    failure: StratumFailure | None = None


class RequestFailed(_Answer, frozen=True, kw_only=True):
    """An error reply to a request that has no dedicated failure event (subscribe, configure)."""

    method: Method
    failure: StratumFailure


class NewJob(NotifyParams, frozen=True, kw_only=True, array_like=False):
    """``mining.notify`` (its params, as the server sent them), with the difficulty in force
    when it arrived: the difficulty the server checks this job's shares with."""

    difficulty: float


class NewDifficulty(SetDifficultyParams, frozen=True, kw_only=True, array_like=False):
    """``mining.set_difficulty``: applies to jobs that arrive after it."""


class NewExtranonce(SetExtranonceParams, frozen=True, kw_only=True, array_like=False):
    """``mining.set_extranonce``: the connection's new extranonce1 and extranonce2 size."""


class NewVersionMask(SetVersionMaskParams, frozen=True, kw_only=True, array_like=False):
    """``mining.set_version_mask``: the version bits (hex) the miner may roll from now on."""


class ReconnectRequested(msgspec.Struct, frozen=True, kw_only=True):
    """``client.reconnect``: close, wait ``wait_s``, connect to host/port (None: the same)."""

    host: str | None
    port: int | None
    wait_s: float


class ShowMessage(ShowMessageParams, frozen=True, kw_only=True, array_like=False):
    """``client.show_message``: text for the operator."""


class UnknownNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A notification we do not implement (ignored apart from this event)."""

    method: str


class ConnectionClosed(msgspec.Struct, frozen=True, kw_only=True):
    """The server closed the connection (EOF); ``pending`` requests will never be answered."""

    pending: tuple[int, ...]


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

#: Everything ``ClientProtocol.next_event`` returns.
Event = (
    ResponseEvent
    | NewJob
    | NewDifficulty
    | NewExtranonce
    | NewVersionMask
    | ReconnectRequested
    | ShowMessage
    | UnknownNotification
    | ConnectionClosed
)
