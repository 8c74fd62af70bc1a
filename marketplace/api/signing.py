"""Request signing: NiceHash's API v2 scheme, byte for byte.

Theory of operation
-------------------
A signed request carries ``X-Time`` (ms since the epoch), ``X-Nonce``, ``X-Organization-Id``
and ``X-Auth: <key_id>:<signature>``. The signature is the lowercase hex HMAC-SHA256, keyed
with the UTF-8 bytes of the key's secret, of the zero-byte-joined message

    key_id \\0 time \\0 nonce \\0 \\0 org_id \\0 \\0 METHOD \\0 path \\0 query [\\0 body]

(the two empty fields are NiceHash's; the body part is present only when there is a body).
The same functions serve the server (``verify``) and the client (``sign_headers``), so the two
can never disagree; ``tests/vectors/api-signing.json`` pins them to NiceHash's own example.
Verification compares in constant time (``hmac.compare_digest``) on bytes, so a header with
non-ASCII junk is simply a mismatch.

Layouts. ``POST /rpc`` is signed one way only (``Layout.ORGANIZATION``, path and query as they
arrived). The NiceHash door (nicehash-rest.md) accepts what NiceHash's own servers accept:
besides that layout, the same one with the path and query percent-decoded
(``Layout.DECODED``: NiceHash's Java demo signs ``URI.getPath()``/``getQuery()``, which decode),
and the older one with empty organisation slots (``Layout.NO_ORGANIZATION``), sent without an
``X-Organization-Id`` header, the account then being the key's. ``signing_messages`` gives the
messages a request may have signed; a signature that matches any of them is good.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import Enum
from typing import Final, NamedTuple
from urllib.parse import unquote

#: Nonces and request ids: 1-64 of ``[A-Za-z0-9_-]``.
TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_TOKEN: Final = re.compile(rb"[A-Za-z0-9_-]{1,64}")
_HEX64: Final = re.compile(rb"[0-9a-f]{64}")

RPC_PATH: Final = "/rpc"


class Layout(Enum):
    """Which message a signature may be over (see the module doc). ``DECODED`` is a variant
    of the other two: the same slots, the path and query percent-decoded."""

    ORGANIZATION = "organization"
    DECODED = "decoded"
    NO_ORGANIZATION = "no-organization"


class SignedTarget(NamedTuple):
    """What a request asked for, as its request line said it (``path`` and ``query`` as raw
    text, the query without its ``?``)."""

    method: str
    path: str
    query: str


#: ``POST /rpc``, the JSON-RPC door.
RPC_TARGET: Final = SignedTarget("POST", RPC_PATH, "")


def signing_message(
    *,
    key_id: str,
    time_ms: str,
    nonce: str,
    org_id: str,
    method: str,
    path: str,
    query: str,
    body: bytes | None,
) -> bytes:
    """The exact bytes that are signed (see the module doc)."""
    parts = [
        key_id.encode(),
        time_ms.encode(),
        nonce.encode(),
        b"",
        org_id.encode(),
        b"",
        method.encode(),
        path.encode(),
        query.encode(),
    ]
    if body is not None:
        parts.append(body)
    return b"\x00".join(parts)


def _decoded(text: str) -> str:
    # As Java's URI.getPath()/getQuery(): %XX decoded as UTF-8, '+' left alone.
    return unquote(text, errors="replace")


def signing_messages(
    *,
    key_id: str,
    time_ms: str,
    nonce: str,
    org_id: str | None,
    target: SignedTarget,
    body: bytes | None,
    layouts: frozenset[Layout],
) -> list[bytes]:
    """The messages a request may have signed under ``layouts`` (see the module doc), without
    repeats; none when its headers fit no layout. ``org_id`` is the ``X-Organization-Id``
    header: present, ``Layout.ORGANIZATION`` must be allowed; ``None`` (no header),
    ``Layout.NO_ORGANIZATION``. ``Layout.DECODED`` adds the decoded path and query to
    whichever of those applies."""
    fits = Layout.ORGANIZATION if org_id is not None else Layout.NO_ORGANIZATION
    if fits not in layouts:
        return []
    forms = [(target.path, target.query)]
    if Layout.DECODED in layouts:
        forms.append((_decoded(target.path), _decoded(target.query)))
    messages: list[bytes] = []
    for path, query in forms:
        message = signing_message(
            key_id=key_id,
            time_ms=time_ms,
            nonce=nonce,
            org_id=org_id or "",
            method=target.method,
            path=path,
            query=query,
            body=body,
        )
        if message not in messages:
            messages.append(message)
    return messages


def signature(secret: str, message: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of ``message`` keyed with ``secret``'s UTF-8 bytes."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_headers(
    *,
    key_id: str,
    secret: str,
    org_id: str,
    time_ms: int,
    nonce: str,
    body: bytes,
    request_id: str | None = None,
) -> dict[str, str]:
    """The headers that sign ``POST /rpc`` with ``body``. Raises ``ValueError`` for a nonce or
    request id outside ``[A-Za-z0-9_-]{1,64}``."""
    if not is_token(nonce.encode()):
        raise ValueError("nonce must be 1-64 of [A-Za-z0-9_-]")
    message = signing_message(
        key_id=key_id,
        time_ms=str(time_ms),
        nonce=nonce,
        org_id=org_id,
        method="POST",
        path=RPC_PATH,
        query="",
        body=body or None,
    )
    headers = {
        "X-Time": str(time_ms),
        "X-Nonce": nonce,
        "X-Organization-Id": org_id,
        "X-Auth": f"{key_id}:{signature(secret, message)}",
    }
    if request_id is not None:
        if not is_token(request_id.encode()):
            raise ValueError("request id must be 1-64 of [A-Za-z0-9_-]")
        headers["X-Request-Id"] = request_id
    return headers


def verify(secret: str, message: bytes, given: bytes) -> bool:
    """Whether ``given`` (the hex from ``X-Auth``) signs ``message``; constant-time."""
    expected = signature(secret, message).encode()
    # compare_digest's time depends only on the length, which the format fixes anyway.
    return hmac.compare_digest(expected, given) and _HEX64.fullmatch(given) is not None


def is_token(value: bytes) -> bool:
    """Whether ``value`` is a valid nonce / request id."""
    return _TOKEN.fullmatch(value) is not None
