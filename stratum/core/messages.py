"""Every Stratum v1 wire message as a typed msgspec Struct.

Theory of operation
-------------------
A line is decoded in two steps: first the envelope (``id``, ``method``, ``params`` as raw JSON),
then the params with the method's own positional Struct (``array_like=True``). A request whose
params are wrong therefore still has a recoverable id and gets an error reply that carries it,
with msgspec's message (``Expected `str`, got `int` - at `$[1]```) telling the peer what to fix.

Both sides use this module: the server decodes requests and encodes replies and notifications;
the client does the reverse. Hex fields are validated by pattern here, once, and every method
name is a ``Method``. The reply and notification builders at the end are the only places that
lay out an outgoing line.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from stratum.core.errors import StratumError, StratumErrorCode

#: Lower- or upper-case hex of any even length.
Hex = Annotated[str, Meta(pattern=r"^(?:[0-9a-fA-F]{2})*$")]
#: Exactly 4 bytes of hex (ntime, nonce, nbits, version, version bits).
Hex4 = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{8}$")]
#: Exactly 32 bytes of hex (prevhash, merkle branch entries).
Hex32 = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{64}$")]
#: A JSON-RPC id as Stratum miners send them.
RequestId = int | str | None
#: ``[code, message, traceback]`` as every Stratum pool sends it.
ErrorTriple = tuple[int, str, None]

MAX_LINE_BYTES: Final = 16 * 1024


class Method(enum.StrEnum):
    """Every Stratum method either side names: the client's requests, then the server's."""

    SUBSCRIBE = "mining.subscribe"
    AUTHORIZE = "mining.authorize"
    EXTRANONCE_SUBSCRIBE = "mining.extranonce.subscribe"
    CONFIGURE = "mining.configure"
    SUGGEST_DIFFICULTY = "mining.suggest_difficulty"
    SUBMIT = "mining.submit"
    # Sent by the server: notifications, and one request (get_version).
    SET_DIFFICULTY = "mining.set_difficulty"
    NOTIFY = "mining.notify"
    SET_EXTRANONCE = "mining.set_extranonce"
    SET_VERSION_MASK = "mining.set_version_mask"
    RECONNECT = "client.reconnect"
    SHOW_MESSAGE = "client.show_message"
    GET_VERSION = "client.get_version"


#: The requests a client sends (the server answers each; it sends the others).
CLIENT_REQUESTS: Final = frozenset(
    {
        Method.SUBSCRIBE,
        Method.AUTHORIZE,
        Method.EXTRANONCE_SUBSCRIBE,
        Method.CONFIGURE,
        Method.SUGGEST_DIFFICULTY,
        Method.SUBMIT,
    }
)
#: ``Method`` by its wire name, for lines whose method is any string.
METHODS: Final = {m.value: m for m in Method}


# --------------------------------------------------------------------------- envelopes


class Envelope(msgspec.Struct, frozen=True):
    """Any incoming line: a request (method set), a response (result/error) or a notification."""

    id: RequestId = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"[]")
    # ``null`` when absent; a response is an envelope without ``method``.
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: msgspec.Raw = msgspec.Raw(b"null")


class Request(msgspec.Struct, frozen=True, omit_defaults=False):
    """An outgoing request or notification (notifications from a server have ``id: null``)."""

    id: RequestId
    method: str
    params: list[Any] | tuple[Any, ...] | NotifyParams


class Response(msgspec.Struct, frozen=True, omit_defaults=False):
    """An outgoing response: exactly one of ``result`` / ``error`` is meaningful."""

    id: RequestId
    result: Any
    error: ErrorTriple | None


# --------------------------------------------------------------------------- client -> server


class SubscribeParams(msgspec.Struct, frozen=True, array_like=True):
    user_agent: str | None = None
    #: Any string: one that is not a resumable extranonce1 is ignored, as ckpool does.
    session_id: str | None = None
    # Some proxies append host and port; accepted and ignored.
    host: str | None = None
    port: int | str | None = None


class AuthorizeParams(msgspec.Struct, frozen=True, array_like=True):
    username: str
    password: str | None = None


class ExtranonceSubscribeParams(msgspec.Struct, frozen=True, array_like=True):
    pass


class ConfigureParams(msgspec.Struct, frozen=True, array_like=True):
    extensions: list[str]
    options: dict[str, Any] = {}


class SuggestDifficultyParams(msgspec.Struct, frozen=True, array_like=True):
    difficulty: float


class SubmitParams(msgspec.Struct, frozen=True, array_like=True):
    username: str
    job_id: str
    extranonce2: Hex
    ntime: Hex4
    nonce: Hex4
    version_bits: Hex4 | None = None


class SubmitRequest(msgspec.Struct, frozen=True):
    """A well-formed ``mining.submit`` line decoded in one step, params straight into their
    Struct (``decode_submit``): the one request a busy connection sends over and over."""

    params: SubmitParams
    id: RequestId = None
    method: str | None = None


# --------------------------------------------------------------------------- server -> client


class NotifyParams(msgspec.Struct, frozen=True, array_like=True):
    job_id: str
    prevhash: Hex32
    coinb1: Hex
    coinb2: Hex
    merkle_branch: tuple[Hex32, ...]
    version: Hex4
    nbits: Hex4
    ntime: Hex4
    clean_jobs: bool


class SetDifficultyParams(msgspec.Struct, frozen=True, array_like=True):
    difficulty: float


class SetExtranonceParams(msgspec.Struct, frozen=True, array_like=True):
    extranonce1: Hex
    extranonce2_size: int


class SetVersionMaskParams(msgspec.Struct, frozen=True, array_like=True):
    mask: Hex4


class ReconnectParams(msgspec.Struct, frozen=True, array_like=True):
    host: str | None = None
    port: int | str | None = None
    wait_s: int | float | None = None


class ShowMessageParams(msgspec.Struct, frozen=True, array_like=True):
    text: str


class SubscribeResult(msgspec.Struct, frozen=True, array_like=True):
    subscriptions: list[list[str]]
    extranonce1: Hex
    extranonce2_size: int


# --------------------------------------------------------------------------- codecs

envelope_decoder: Final = msgspec.json.Decoder(Envelope)
encoder: Final = msgspec.json.Encoder()
#: One decoder per method's params Struct (client.get_version has none).
_PARAMS_DECODERS: Final[dict[Method, msgspec.json.Decoder[Any]]] = {
    method: msgspec.json.Decoder(params)
    for method, params in (
        (Method.SUBSCRIBE, SubscribeParams),
        (Method.AUTHORIZE, AuthorizeParams),
        (Method.EXTRANONCE_SUBSCRIBE, ExtranonceSubscribeParams),
        (Method.CONFIGURE, ConfigureParams),
        (Method.SUGGEST_DIFFICULTY, SuggestDifficultyParams),
        (Method.SUBMIT, SubmitParams),
        (Method.SET_DIFFICULTY, SetDifficultyParams),
        (Method.NOTIFY, NotifyParams),
        (Method.SET_EXTRANONCE, SetExtranonceParams),
        (Method.SET_VERSION_MASK, SetVersionMaskParams),
        (Method.RECONNECT, ReconnectParams),
        (Method.SHOW_MESSAGE, ShowMessageParams),
    )
}
#: Finds a request id in a line that did not parse, so the error reply can still carry it.
_ID_RE: Final = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"(?:[^"\\]|\\.){0,64}")')


_submit_decoder: Final = msgspec.json.Decoder(SubmitRequest)
_SUBMIT_NAME: Final = b'"mining.submit"'


def decode_submit(line: bytes) -> SubmitRequest | None:
    """``line`` as a ``mining.submit`` request, or ``None`` when it is anything else or not
    well-formed: such a line goes through ``envelope_decoder`` and ``decode_params``, whose
    errors (``... at $[2]``) are the ones the peer is told."""
    if _SUBMIT_NAME not in line:
        return None
    try:
        request = _submit_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return request if request.method == Method.SUBMIT else None


def decode_params(method: Method, raw: msgspec.Raw) -> Any:
    """``raw`` decoded as the params Struct of ``method``.

    Raises ``StratumError`` (20, with msgspec's message, ``... at $[2]``, saying what to fix)
    for params of the wrong shape; ``KeyError`` for a method that takes none (a caller bug).
    """
    try:
        return _PARAMS_DECODERS[method].decode(raw)
    except msgspec.ValidationError as exc:
        raise StratumError(StratumErrorCode.OTHER, f"Invalid params: {exc}") from None


def encode_line(message: Request | Response) -> bytes:
    """One message as a newline-terminated JSON line."""
    return encoder.encode(message) + b"\n"


def response_line(request_id: RequestId, result: Any) -> bytes:
    """A successful reply."""
    return encode_line(Response(id=request_id, result=result, error=None))


_TRUE_LINES: dict[RequestId, bytes] = {}


def true_line(request_id: RequestId) -> bytes:
    """``response_line(request_id, True)``, cached: cpuminer sends every submit with id 4."""
    line = _TRUE_LINES.get(request_id)
    if line is None:
        line = response_line(request_id, True)
        if len(_TRUE_LINES) < 4096:
            _TRUE_LINES[request_id] = line
    return line


def error_line(request_id: RequestId, error: StratumError) -> bytes:
    """An error reply; ``b""`` for a notification (``id`` null), which gets no reply."""
    if request_id is None:
        return b""
    return encode_line(Response(id=request_id, result=None, error=error.triple()))


def notification_line(method: Method, params: list[Any] | NotifyParams) -> bytes:
    """A notification (``id`` null)."""
    return encoder.encode(Request(id=None, method=method, params=params)) + b"\n"


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
