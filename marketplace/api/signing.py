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
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

#: Nonces and request ids: 1-64 of ``[A-Za-z0-9_-]``.
TOKEN_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_TOKEN: Final = re.compile(rb"[A-Za-z0-9_-]{1,64}")
_HEX64: Final = re.compile(rb"[0-9a-f]{64}")

RPC_PATH: Final = "/rpc"


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
