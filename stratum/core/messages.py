"""Every Stratum v1 wire message as a typed msgspec Struct.

Theory of operation
-------------------
A line is decoded in two steps: first the envelope (``id``, ``method``, ``params`` as raw JSON),
then the params with the method's own positional Struct (``array_like=True``). A request whose
params are wrong therefore still has a recoverable id and gets an error reply that carries it,
with msgspec's message (``Expected `str`, got `int` - at `$[1]```) telling the peer what to fix.

Both sides use this module: the server decodes requests and encodes replies and notifications;
the client does the reverse. Hex fields are validated by pattern here, once.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

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
    params: list[Any] | tuple[Any, ...]


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


# --------------------------------------------------------------------------- server -> client


class NotifyParams(msgspec.Struct, frozen=True, array_like=True):
    job_id: str
    prevhash: Hex32
    coinb1: Hex
    coinb2: Hex
    merkle_branch: list[Hex32]
    version: Hex4
    nbits: Hex4
    ntime: Hex4
    clean_jobs: bool


class SetDifficultyParams(msgspec.Struct, frozen=True, array_like=True):
    difficulty: float


class SetExtranonceParams(msgspec.Struct, frozen=True, array_like=True):
    extranonce1: Hex
    extranonce2_size: int


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


def encode_line(message: Request | Response) -> bytes:
    """One message as a newline-terminated JSON line."""
    return encoder.encode(message) + b"\n"
