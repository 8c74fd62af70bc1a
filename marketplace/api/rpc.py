"""JSON-RPC 2.0 codec: request bodies in, calls out; results and errors in, bytes out.

Theory of operation
-------------------
Decoding happens in steps, so that a bad call still gets an error with its id when it has one:

1. the whole body must be valid JSON (UTF-8, no lone surrogates, sane nesting), else one
   -32700 answer with ``id: null`` whose ``data.detail`` says what is wrong: "empty body",
   "invalid UTF-8 at byte N", "lone surrogate \\ud800 at byte N", or msgspec's message;
2. an array is a batch (empty: one -32600), anything else a single call;
3. each element is decoded into ``Envelope`` (``jsonrpc: "2.0"``, ``method``, ``params`` kept
   as raw JSON, ``id`` absent for a notification); a bad element becomes a ``BadCall`` (-32600)
   that keeps its id if one could be read;
4. the method's params type is decoded later, by the dispatcher, from ``Call.params``.

Answers are encoded one by one and joined; notifications get none, so a batch made only of
notifications (or a single notification) answers nothing at all (HTTP 204). Nothing here does
I/O or knows about methods.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, NamedTuple

import msgspec

from marketplace.api.errors import ApiCode, ErrorData, RpcError

#: A JSON-RPC id: a number without fraction, a string, or null.
RequestId = int | str | None
_NO_PARAMS: Final = msgspec.Raw(b"{}")


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    jsonrpc: Literal["2.0"]
    method: str
    params: msgspec.Raw = _NO_PARAMS
    id: RequestId | msgspec.UnsetType = msgspec.UNSET


class Call(NamedTuple):
    """One well-formed call. ``notification``: no ``id`` member, no answer."""

    position: int
    id: RequestId
    notification: bool
    method: str
    params: bytes


class BadCall(NamedTuple):
    """An element that is not a valid request: answered with -32600."""

    position: int
    id: RequestId
    error: RpcError


class ParsedBody(NamedTuple):
    batch: bool
    items: list[Call | BadCall]


class _ErrorObject(msgspec.Struct, frozen=True, kw_only=True):
    code: int
    message: str
    data: ErrorData | msgspec.UnsetType = msgspec.UNSET


class _ErrorResponse(msgspec.Struct, frozen=True, kw_only=True):
    jsonrpc: str = "2.0"
    error: _ErrorObject
    id: RequestId


class _Response(msgspec.Struct, frozen=True, kw_only=True):
    jsonrpc: str = "2.0"
    result: msgspec.Raw
    id: RequestId


_envelope_decoder: Final = msgspec.json.Decoder(Envelope)
_raw_decoder: Final = msgspec.json.Decoder(msgspec.Raw)
_raw_list_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_any_decoder: Final = msgspec.json.Decoder()
_encoder: Final = msgspec.json.Encoder()
#: A run of backslashes and the ``u`` escape after it (odd run: the last one starts it).
_ESCAPE: Final = re.compile(rb"(\\+)u([0-9A-Fa-f]{4})")


def _what_is_wrong(body: bytes, message: str) -> str:
    """What is wrong with a body that is not JSON, given msgspec's ``message`` about it.
    msgspec says "Input data was truncated" for an empty body and for a lone surrogate escape
    alike, and names no position for invalid UTF-8: say which it is and where."""
    if not body.strip(b" \t\r\n"):
        return "empty body"
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8 at byte {exc.start}"
    if "truncated" in message:
        at = _lone_surrogate(body)
        if at is not None:
            return f"lone surrogate {body[at : at + 6].decode()} at byte {at}: not a character"
    return message


def _lone_surrogate(body: bytes) -> int | None:
    """The offset of the first ``\\uXXXX`` escape of a surrogate without its partner."""
    pending: int | None = None  # a high surrogate waiting for its low half
    for match in _ESCAPE.finditer(body):
        if len(match.group(1)) % 2 == 0:
            continue  # the backslashes escape each other: no \\u escape here
        at = match.start(2) - 2
        unit = int(match.group(2), 16)
        if pending is not None and (at != pending + 6 or not 0xDC00 <= unit <= 0xDFFF):
            return pending
        if 0xD800 <= unit <= 0xDBFF:
            pending = at
        elif 0xDC00 <= unit <= 0xDFFF and pending is None:
            return at
        else:
            pending = None
    return pending


def _salvage_id(element: Any) -> RequestId:
    """The id of an invalid element when it can be read unambiguously, else ``None``."""
    if isinstance(element, dict):
        value = element.get("id")
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return None


def _element(index: int, raw: msgspec.Raw, plain: Any) -> Call | BadCall:
    try:
        env = _envelope_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        error = RpcError(ApiCode.INVALID_REQUEST, "invalid request", {"detail": str(exc)})
        return BadCall(index, _salvage_id(plain), error)
    notification = env.id is msgspec.UNSET
    call_id = None if isinstance(env.id, msgspec.UnsetType) else env.id
    return Call(index, call_id, notification, env.method, bytes(env.params))


def parse_body(body: bytes) -> ParsedBody:
    """Split a request body into calls. Raises ``RpcError`` -32700 for a body that is not
    JSON and -32600 for an empty batch (both answered once, with ``id: null``)."""
    try:
        plain = _any_decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        if isinstance(exc, RecursionError):
            detail = "nesting too deep"
        else:
            detail = _what_is_wrong(body, str(exc))
        raise RpcError(ApiCode.PARSE_ERROR, "parse error", {"detail": detail[:200]}) from None
    if isinstance(plain, list):
        if not plain:
            raise RpcError(ApiCode.INVALID_REQUEST, "empty batch", {"detail": "batch is empty"})
        raws = _raw_list_decoder.decode(body)
        pairs = enumerate(zip(raws, plain, strict=True))
        return ParsedBody(True, [_element(i, r, p) for i, (r, p) in pairs])
    return ParsedBody(False, [_element(0, _raw_decoder.decode(body), plain)])


def encode_result(call_id: RequestId, result: bytes) -> bytes:
    """A success answer whose result is the already-encoded JSON ``result``."""
    return _encoder.encode(_Response(result=msgspec.Raw(result), id=call_id))


def encode_error(call_id: RequestId, error: RpcError) -> bytes:
    """An error answer; ``data`` is left out when empty."""
    data: ErrorData | msgspec.UnsetType = error.data if error.data else msgspec.UNSET
    obj = _ErrorObject(code=int(error.code), message=error.message, data=data)
    try:
        return _encoder.encode(_ErrorResponse(error=obj, id=call_id))
    except (TypeError, ValueError, UnicodeEncodeError):  # data that cannot be JSON: drop it
        bare = _ErrorObject(code=int(error.code), message=error.message)
        return _encoder.encode(_ErrorResponse(error=bare, id=call_id))


def join_answers(batch: bool, answers: list[bytes]) -> bytes | None:
    """The response body: one answer, an array of them, or ``None`` when there is none."""
    if not answers:
        return None
    if not batch:
        return answers[0]
    return b"[" + b",".join(answers) + b"]"


def encode(value: msgspec.Struct) -> bytes:
    """A result Struct as JSON."""
    return _encoder.encode(value)
