"""Secrets the node must keep but never hold in clear: sealed under a key derived from the master
key, so the database and the logs only ever see ciphertext.

Theory of operation
-------------------
API key secrets need no storage at all (``keys.derive_secret``), but a buyer's pool password
is a value the buyer chose, which the node must send again on every reconnect, also after a
restart: it has to be stored. It is stored sealed (authenticated encryption built from the
standard library's HMAC-SHA256, the only primitive a pure core may use here):

- ``derive_key(master_key, purpose)``: one key per purpose, ``HMAC(master_key, purpose)``;
  from it an encryption key and a MAC key, each ``HMAC(key, label)``;
- ``seal``: ciphertext = plaintext XOR a keystream of ``HMAC(enc_key, nonce || counter)``
  blocks (HMAC as a pseudo-random function in counter mode), then a tag
  ``HMAC(mac_key, context || nonce || ciphertext)`` (encrypt-then-MAC); the sealed value is
  ``nonce || ciphertext || tag``;
- ``unseal`` checks the tag (in constant time) before anything else, so a value that was
  altered, or moved to another ``context`` (another pool's record), is refused.

The nonce must never repeat under one key: the driver draws it at random (16 bytes) and passes
it in, since a core draws no randomness. Losing the master key makes every sealed value
unreadable (the buyer then creates the pool again).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

NONCE_BYTES: Final = 16
TAG_BYTES: Final = 32
_BLOCK: Final = hashlib.sha256().digest_size


class SealError(ValueError):
    """A sealed value that is not intact (wrong key, altered, or another context's)."""


def derive_key(master_key: bytes, purpose: str) -> bytes:
    """The key for one ``purpose`` (e.g. ``"pool-password"``) under ``master_key``."""
    return hmac.new(master_key, b"hashmarket sealing\x00" + purpose.encode(), "sha256").digest()


def _keys(key: bytes) -> tuple[bytes, bytes]:
    return (
        hmac.new(key, b"encrypt", "sha256").digest(),
        hmac.new(key, b"authenticate", "sha256").digest(),
    )


def _keystream(enc_key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = (length + _BLOCK - 1) // _BLOCK
    stream = b"".join(
        hmac.new(enc_key, nonce + i.to_bytes(4, "big"), "sha256").digest() for i in range(blocks)
    )
    return stream[:length]


def _tag(mac_key: bytes, context: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    message = len(context).to_bytes(4, "big") + context + nonce + ciphertext
    return hmac.new(mac_key, message, "sha256").digest()


def seal(key: bytes, plaintext: bytes, *, nonce: bytes, context: bytes) -> bytes:
    """``plaintext`` sealed under ``key`` for ``context``: ``nonce || ciphertext || tag``.

    Raises ``ValueError`` for a nonce that is not ``NONCE_BYTES`` long.
    """
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the nonce must be {NONCE_BYTES} bytes")
    enc_key, mac_key = _keys(key)
    stream = _keystream(enc_key, nonce, len(plaintext))
    ciphertext = bytes(a ^ b for a, b in zip(plaintext, stream, strict=True))
    return nonce + ciphertext + _tag(mac_key, context, nonce, ciphertext)


def unseal(key: bytes, sealed: bytes, *, context: bytes) -> bytes:
    """The plaintext of a ``seal`` result. Raises ``SealError`` unless it was sealed under
    ``key`` for ``context`` and is unaltered."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SealError("sealed value too short")
    nonce, ciphertext, tag = (
        sealed[:NONCE_BYTES],
        sealed[NONCE_BYTES:-TAG_BYTES],
        sealed[-TAG_BYTES:],
    )
    enc_key, mac_key = _keys(key)
    if not hmac.compare_digest(tag, _tag(mac_key, context, nonce, ciphertext)):
        raise SealError("sealed value is not intact")
    stream = _keystream(enc_key, nonce, len(ciphertext))
    return bytes(a ^ b for a, b in zip(ciphertext, stream, strict=True))
