"""TOTP codes (RFC 6238) and recovery codes: the arithmetic, with every time passed in.

Theory of operation
-------------------
An authenticator app and the server share a secret; both compute, for the 30-second step
``floor(unix_time / 30)``, the RFC 4226 code of that step (HMAC-SHA1, dynamic truncation, six
digits). The code function is pyotp's (``code_at``), called with the step, never with "now":
pyotp's own clock-reading helpers are not used, so this module stays a pure core (time comes in
as ``wall_ms``). ``match_step`` says which step within one either side of ``wall_ms`` a code
belongs to, comparing in constant time; what a match means (used up, replayed) is
``second_factor.py``'s business.

Nothing here is stored. A secret is *derived* from a key the node holds outside the journal
(``derive_secret``: HMAC-SHA256 of the account and an enrollment id, the first 20 bytes as
base32), like an API key's secret (``keys.derive_secret``); the journal keeps the enrollment
id only. Recovery codes are derived the same way (``derive_recovery_codes``), so a retried
``account.2fa.confirm`` can show the same codes again, and the journal keeps only their keyed
hashes (``recovery_hash``), which is what a check compares. A stolen database yields neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

import pyotp

STEP_MS: Final = 30_000
DIGITS: Final = 6
#: Steps accepted either side of the server's (clock drift, a code typed as it changed).
WINDOW_STEPS: Final = 1
RECOVERY_CODES: Final = 10
ISSUER: Final = "hashmarket"
_SECRET_BYTES: Final = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA1
_CODE: Final = re.compile(r"[0-9]{6}")
#: Recovery codes: 3 groups of 4 of base32's alphabet, e.g. ``k3vd-7qaz-m2xp`` (60 bits).
_RECOVERY_GROUPS: Final = 3
_RECOVERY: Final = re.compile(r"[a-z2-7]{4}(?:-?[a-z2-7]{4}){2}")


def step_at(wall_ms: int) -> int:
    """The TOTP step (RFC 6238's counter) of the wall-clock time ``wall_ms``."""
    return wall_ms // STEP_MS


def code_at(secret: str, step: int) -> str:
    """The six-digit code of base32 ``secret`` for ``step`` (RFC 6238 with SHA-1).
    Raises ``ValueError`` for a secret that is not base32 of at least 112 bits."""
    return pyotp.HOTP(secret, digits=DIGITS).at(step)


def is_totp_code(text: str) -> bool:
    """Whether ``text`` has the shape of an authenticator code (six digits)."""
    return _CODE.fullmatch(text) is not None


def match_step(secret: str, code: str, *, wall_ms: int) -> int | None:
    """The step within ``WINDOW_STEPS`` of ``wall_ms`` whose code is ``code``, the latest if
    several are (``None``: no step's). Every candidate is compared, in constant time."""
    now = step_at(wall_ms)
    found = None
    for step in range(now - WINDOW_STEPS, now + WINDOW_STEPS + 1):
        if step >= 0 and hmac.compare_digest(code_at(secret, step), code):
            found = step
    return found


def _derive(key: bytes, purpose: bytes, *parts: str) -> bytes:
    message = b"\x00".join([purpose, *(p.encode() for p in parts)])
    return hmac.new(key, message, hashlib.sha256).digest()


def derive_secret(key: bytes, *, account: str, enrollment: str) -> str:
    """The base32 TOTP secret of ``account``'s enrollment ``enrollment`` under ``key``."""
    raw = _derive(key, b"totp", account, enrollment)[:_SECRET_BYTES]
    return base64.b32encode(raw).decode()


def otpauth_uri(secret: str, *, account: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (usually from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def derive_recovery_codes(key: bytes, *, account: str, enrollment: str) -> list[str]:
    """The ``RECOVERY_CODES`` recovery codes of ``account``'s enrollment under ``key``."""
    codes = []
    for index in range(RECOVERY_CODES):
        raw = _derive(key, b"recovery", account, enrollment, str(index))
        text = base64.b32encode(raw).decode().lower()[: 4 * _RECOVERY_GROUPS]
        codes.append("-".join(text[i : i + 4] for i in range(0, len(text), 4)))
    return codes


def normalize_recovery_code(text: str) -> str | None:
    """``text`` as a recovery code in its canonical form (lower case, dashes between the
    groups; typed without dashes or in capitals is fine), or ``None`` if it cannot be one."""
    lowered = text.strip().lower()
    if _RECOVERY.fullmatch(lowered) is None:
        return None
    bare = lowered.replace("-", "")
    return "-".join(bare[i : i + 4] for i in range(0, len(bare), 4))


def recovery_hash(key: bytes, code: str) -> str:
    """The keyed hash of a canonical recovery code: what the journal keeps instead of it."""
    return _derive(key, b"recovery-hash", code).hex()
