"""The NiceHash v2 signature: both published vectors, and tampering always detected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.api.signing import (
    is_token,
    sign_headers,
    signature,
    signing_message,
    verify,
)

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "api-signing.json").read_text())[
    "vectors"
]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["method"] for v in VECTORS])
def test_vectors_reproduce(vector: dict[str, str | None]) -> None:
    body = vector["body"]
    message = signing_message(
        key_id=str(vector["key_id"]),
        time_ms=str(vector["time"]),
        nonce=str(vector["nonce"]),
        org_id=str(vector["org_id"]),
        method=str(vector["method"]),
        path=str(vector["path"]),
        query=str(vector["query"]),
        body=None if body is None else body.encode(),
    )
    assert signature(str(vector["secret"]), message) == vector["signature"]
    assert verify(str(vector["secret"]), message, str(vector["signature"]).encode())


def test_sign_headers_matches_the_rpc_vector() -> None:
    vector = VECTORS[1]
    headers = sign_headers(
        key_id=vector["key_id"],
        secret=vector["secret"],
        org_id=vector["org_id"],
        time_ms=int(vector["time"]),
        nonce=vector["nonce"],
        body=vector["body"].encode(),
    )
    assert headers == {
        "X-Time": vector["time"],
        "X-Nonce": vector["nonce"],
        "X-Organization-Id": vector["org_id"],
        "X-Auth": f"{vector['key_id']}:{vector['signature']}",
    }


def test_sign_headers_refuses_bad_tokens() -> None:
    with pytest.raises(ValueError, match="nonce"):
        sign_headers(key_id="k", secret="s", org_id="o", time_ms=1, nonce="a b", body=b"")
    with pytest.raises(ValueError, match="request id"):
        sign_headers(
            key_id="k", secret="s", org_id="o", time_ms=1, nonce="n", body=b"", request_id="x" * 65
        )


@given(
    body=st.binary(min_size=1, max_size=200), flip=st.integers(min_value=0), bit=st.integers(0, 7)
)
def test_any_flipped_body_bit_fails(body: bytes, flip: int, bit: int) -> None:
    message = signing_message(
        key_id="k",
        time_ms="1",
        nonce="n",
        org_id="o",
        method="POST",
        path="/rpc",
        query="",
        body=body,
    )
    good = signature("secret", message).encode()
    assert verify("secret", message, good)
    tampered = bytearray(body)
    tampered[flip % len(body)] ^= 1 << bit
    other = signing_message(
        key_id="k",
        time_ms="1",
        nonce="n",
        org_id="o",
        method="POST",
        path="/rpc",
        query="",
        body=bytes(tampered),
    )
    assert not verify("secret", other, good)
    assert not verify("other-secret", message, good)


@given(given_sig=st.binary(max_size=80))
def test_junk_signatures_never_verify(given_sig: bytes) -> None:
    message = b"k\x001\x00n\x00\x00o\x00\x00POST\x00/rpc\x00"
    assert verify("secret", message, given_sig) == (
        given_sig == signature("secret", message).encode()
    )


def test_tokens() -> None:
    assert is_token(b"9675d0f8-1325-484b-9594-c9d6d3268890")
    assert is_token(b"a" * 64)
    assert not is_token(b"a" * 65)
    assert not is_token(b"")
    assert not is_token(b"a.b")
