"""TOTP arithmetic (``marketplace.core.totp``): RFC 6238's own vectors, derivation, shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest

from marketplace.core import totp

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "totp.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: str(v["unix_time"]))
def test_rfc_6238_vectors(vector: dict[str, object]) -> None:
    assert VECTORS["step_s"] * 1000 == totp.STEP_MS
    step = totp.step_at(int(str(vector["unix_time"])) * 1000)
    assert step == vector["counter"]
    assert totp.code_at(VECTORS["secret_base32"], step) == vector["code6"]
    # The six digits an app shows are the last six of the RFC's eight.
    assert str(vector["code8"]).endswith(str(vector["code6"]))


def test_the_base32_secret_is_the_rfc_ascii_secret() -> None:
    assert pyotp.HOTP(VECTORS["secret_base32"]).byte_secret() == VECTORS["secret_ascii"].encode()


def test_match_step_accepts_one_step_either_side_and_says_which() -> None:
    secret = VECTORS["secret_base32"]
    wall = 1_111_111_111_000
    now = totp.step_at(wall)
    for offset in (-1, 0, 1):
        code = totp.code_at(secret, now + offset)
        assert totp.match_step(secret, code, wall_ms=wall) == now + offset
    for offset in (-2, 2, -3, 3):
        assert totp.match_step(secret, totp.code_at(secret, now + offset), wall_ms=wall) is None
    # At the epoch there is no step -1 to try (pyotp refuses a negative counter).
    assert totp.match_step(secret, totp.code_at(secret, 1), wall_ms=0) == 1


def test_derived_secrets_differ_by_key_account_and_enrollment_and_are_stable() -> None:
    key = b"k" * 32
    one = totp.derive_secret(key, account="alice", enrollment="e-1")
    assert one == totp.derive_secret(key, account="alice", enrollment="e-1")
    others = {
        totp.derive_secret(b"j" * 32, account="alice", enrollment="e-1"),
        totp.derive_secret(key, account="bob", enrollment="e-1"),
        totp.derive_secret(key, account="alice", enrollment="e-2"),
    }
    assert one not in others
    assert len(others) == 3
    assert len(pyotp.TOTP(one).byte_secret()) == 20  # 160 bits
    uri = totp.otpauth_uri(one, account="alice")
    assert uri == f"otpauth://totp/hashmarket:alice?secret={one}&issuer=hashmarket"


def test_recovery_codes_shape_normalisation_and_hashes() -> None:
    key = b"k" * 32
    codes = totp.derive_recovery_codes(key, account="alice", enrollment="e-1")
    assert len(codes) == len(set(codes)) == totp.RECOVERY_CODES
    assert codes == totp.derive_recovery_codes(key, account="alice", enrollment="e-1")
    for code in codes:
        assert totp.normalize_recovery_code(code) == code
        assert totp.normalize_recovery_code(code.replace("-", "").upper()) == code
        assert not totp.is_totp_code(code)
    assert totp.normalize_recovery_code("123456") is None
    assert totp.normalize_recovery_code("abcd-efgh") is None
    hashed = totp.recovery_hash(key, codes[0])
    assert hashed != codes[0]
    assert codes[0] not in hashed
    assert hashed != totp.recovery_hash(b"j" * 32, codes[0])
    assert totp.is_totp_code("012345")
    assert not totp.is_totp_code("12345")
