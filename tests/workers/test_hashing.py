"""Pure hashing: the worker's header layout and scans agree with the server's share math."""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum.core.shares import (
    Algorithm,
    build_coinbase,
    build_header,
    hash_to_int,
    merkle_root,
    pow_hash,
    sha256d,
    target_for,
)
from workers.hashing import (
    NONCE_SPACE,
    Work,
    header_prefix_for,
    header_with_nonce,
    nonce_hex,
    nonce_range,
    scan,
    scan_scrypt,
    scan_sha256d,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "shares.json").read_text()
)["vectors"]

JOB = {
    "job_id": "j1",
    "prevhash": "abcdef01" * 5 + "00000000" * 3,
    "coinb1": "01000000010000000000000000000000ffffffff17",
    "coinb2": "ffffffff0100f2052a0100000000000000",
    "merkle_branch": ("d1" * 32, "0b" * 32),
    "version": "20000000",
    "nbits": "1d00ffff",
    "ntime": "6b0afc41",
}


def make_work(
    *, difficulty: float, algorithm: Algorithm = Algorithm.SHA256D, size: int = 4
) -> Work:
    return Work.from_notify(
        work_id=1,
        slot=0,
        algorithm=algorithm,
        extranonce1="f000000d",
        extranonce2_size=size,
        difficulty=difficulty,
        **JOB,  # type: ignore[arg-type]
    )


def server_accepts(work: Work, extranonce2: int, nonce: int) -> bool:
    """The check a server makes, written only with stratum.core.shares (no worker code)."""
    coinbase = build_coinbase(
        work.coinb1, work.extranonce1, bytes.fromhex(work.extranonce2_hex(extranonce2)), work.coinb2
    )
    header = build_header(
        version=work.version,
        prevhash=work.prevhash,
        merkle=merkle_root(coinbase, work.merkle_branch),
        ntime=work.ntime,
        nbits=work.nbits,
        nonce=bytes.fromhex(nonce_hex(nonce)),
    )
    digest = pow_hash(work.algorithm, header)
    return hash_to_int(digest) <= target_for(work.algorithm, work.difficulty)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['algorithm']}-{v['accepted']}")
def test_vectors_reproduce_through_the_worker_path(vector: dict[str, Any]) -> None:
    notify = vector["notify"]
    submit = vector["submit"]
    algorithm = Algorithm(vector["algorithm"])
    work = Work.from_notify(
        work_id=1,
        slot=0,
        algorithm=algorithm,
        job_id=notify[0],
        prevhash=notify[1],
        coinb1=notify[2],
        coinb2=notify[3],
        merkle_branch=notify[4],
        version=notify[5],
        nbits=notify[6],
        ntime=notify[7],
        extranonce1=vector["extranonce1"],
        extranonce2_size=len(submit[2]) // 2,
        difficulty=vector["difficulty"],
    )
    assert submit[3] == work.ntime_hex
    extranonce2 = int(submit[2], 16)
    assert work.extranonce2_hex(extranonce2) == submit[2]
    prefix = header_prefix_for(work, extranonce2)
    nonce = int(submit[4], 16)
    assert nonce_hex(nonce) == submit[4]
    assert header_with_nonce(prefix, nonce).hex() == vector["header_hex"]
    assert work.target == int(vector["target_hex_be"], 16)
    found = scan(algorithm, prefix, nonce, nonce + 1, work.target)
    assert (found == [nonce]) is vector["accepted"]


def test_midstate_scan_equals_plain_sha256d() -> None:
    work = make_work(difficulty=1.0)
    prefix = header_prefix_for(work, 7)
    # The target that exactly admits the hash of nonce 1000: it is found, its neighbours are
    # found only if their hashes are not larger.
    hashes = {n: hash_to_int(sha256d(prefix + struct.pack("<I", n))) for n in range(990, 1010)}
    target = hashes[1000]
    expected = [n for n, h in hashes.items() if h <= target]
    assert scan_sha256d(prefix, 990, 1010, target) == expected
    assert 1000 in expected
    # Midstate copy + tail gives the same digest as hashing all 80 bytes.
    mid = hashlib.sha256(prefix[:64])
    inner = mid.copy()
    inner.update(prefix[64:] + struct.pack("<I", 1000))
    assert hashlib.sha256(inner.digest()).digest() == sha256d(prefix + struct.pack("<I", 1000))


@settings(max_examples=40, deadline=None)
@given(
    extranonce2=st.integers(0, 2**32 - 1),
    start=st.integers(0, NONCE_SPACE - 300),
    target_bits=st.integers(240, 256),
)
def test_scan_finds_exactly_what_the_server_accepts(
    extranonce2: int, start: int, target_bits: int
) -> None:
    work = make_work(difficulty=1.0)
    target = 2**target_bits - 1
    prefix = header_prefix_for(work, extranonce2)
    found = scan_sha256d(prefix, start, start + 256, target)
    expected = [
        n
        for n in range(start, start + 256)
        if hash_to_int(sha256d(header_with_nonce(prefix, n))) <= target
    ]
    assert found == expected


def test_tiny_difficulty_share_is_accepted_by_server_math() -> None:
    work = make_work(difficulty=1e-5)
    prefix = header_prefix_for(work, 3)
    found = scan_sha256d(prefix, 0, 200_000, work.target)
    # Difficulty 1 is one share per 2**32 hashes; 1e-5 one per ~43,000: about 4.6 here.
    assert found
    for nonce in found:
        assert server_accepts(work, 3, nonce)
    assert not server_accepts(work, 3, next(n for n in range(200_000) if n not in found))


def test_scrypt_share_is_accepted_by_server_math() -> None:
    # scrypt T1 is about 2**240: difficulty 2**-15 is a target near 2**255, half the hashes.
    work = make_work(difficulty=2.0**-15, algorithm=Algorithm.SCRYPT)
    prefix = header_prefix_for(work, 0)
    found = scan_scrypt(prefix, 0, 16, work.target)
    assert 0 < len(found) < 16
    for nonce in range(16):
        assert server_accepts(work, 0, nonce) is (nonce in found)


def test_nonce_ranges_partition_the_nonce_space() -> None:
    for count in (1, 2, 3, 7):
        ranges = [nonce_range(i, count) for i in range(count)]
        assert ranges[0][0] == 0
        assert ranges[-1][1] == NONCE_SPACE
        for (_, stop), (start, _) in itertools.pairwise(ranges):
            assert stop == start
    with pytest.raises(ValueError, match="outside"):
        nonce_range(2, 2)


def test_bad_prefix_length_is_refused() -> None:
    with pytest.raises(ValueError, match="76"):
        scan_sha256d(b"\0" * 75, 0, 1, 1)
