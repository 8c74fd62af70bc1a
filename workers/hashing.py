"""Pure hashing for the CPU worker: work units, header prefixes and nonce scans.

Theory of operation
-------------------
A ``Work`` is one job as one connection must hash it: the notify fields as bytes, the
connection's extranonce1 and extranonce2 size, and the share target of the difficulty the job
arrived with. For a given extranonce2 the header's first 76 bytes are fixed
(``header_prefix_for``, built with ``stratum.core.shares`` so the worker and the server agree
byte for byte); only the nonce (the last 4 bytes, little-endian) changes.

``scan_sha256d`` is the hot loop. SHA-256 works on 64-byte blocks, so the state after the first
64 header bytes (the midstate) is computed once per extranonce2 and ``copy()``-ed per nonce;
each nonce then costs one compression for the last 16 bytes plus the second SHA-256. The
result is compared with the target as bytes: the digest's last byte is the most significant
byte of the little-endian hash, so one byte comparison rejects almost every nonce and the full
(big-endian) comparison runs only for the rest. ``scan_scrypt`` is the same contract for
Litecoin's scrypt (N=1024, r=1, p=1); it is thousands of times slower per hash.

A nonce ``n`` is laid in the header as ``n.to_bytes(4, "little")`` and submitted as the hex
``f"{n:08x}"``, which is how cpuminer does it (the header holds the submit hex reversed).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from stratum.core.shares import (
    Algorithm,
    build_coinbase,
    header_prefix,
    merkle_root,
    target_for,
)

NONCE_SPACE: Final = 2**32
_NONCE: Final = struct.Struct("<I")


@dataclass(frozen=True, slots=True, kw_only=True)
class Work:
    """One job for one connection, everything a hashing process needs (picklable).

    ``work_id`` is unique per miner run: a process keeps its scan position for a slot as long
    as the slot's ``work_id`` is unchanged. ``target`` is ``floor(T1 / difficulty)``.
    """

    work_id: int
    slot: int
    algorithm: Algorithm
    job_id: str
    prevhash: bytes
    coinb1: bytes
    coinb2: bytes
    merkle_branch: tuple[bytes, ...]
    version: bytes
    nbits: bytes
    ntime: bytes
    extranonce1: bytes
    extranonce2_size: int
    difficulty: float
    target: int

    @classmethod
    def from_notify(
        cls,
        *,
        work_id: int,
        slot: int,
        algorithm: Algorithm,
        job_id: str,
        prevhash: str,
        coinb1: str,
        coinb2: str,
        merkle_branch: tuple[str, ...] | list[str],
        version: str,
        nbits: str,
        ntime: str,
        extranonce1: str,
        extranonce2_size: int,
        difficulty: float,
    ) -> Work:
        """Build from the hex strings of ``mining.notify`` and the subscribe reply.

        Raises ``ValueError`` for bad hex or a non-positive difficulty.
        """
        return cls(
            work_id=work_id,
            slot=slot,
            algorithm=algorithm,
            job_id=job_id,
            prevhash=bytes.fromhex(prevhash),
            coinb1=bytes.fromhex(coinb1),
            coinb2=bytes.fromhex(coinb2),
            merkle_branch=tuple(bytes.fromhex(b) for b in merkle_branch),
            version=bytes.fromhex(version),
            nbits=bytes.fromhex(nbits),
            ntime=bytes.fromhex(ntime),
            extranonce1=bytes.fromhex(extranonce1),
            extranonce2_size=extranonce2_size,
            difficulty=difficulty,
            target=target_for(algorithm, difficulty),
        )

    @property
    def ntime_hex(self) -> str:
        """ntime as submitted (the notify hex, unchanged)."""
        return self.ntime.hex()

    @property
    def extranonce2_space(self) -> int:
        """How many extranonce2 values exist (1 when the size is 0)."""
        return 1 << (8 * self.extranonce2_size)

    def extranonce2_hex(self, value: int) -> str:
        """``value`` as the extranonce2 hex of the right size (big-endian digits)."""
        return value.to_bytes(self.extranonce2_size, "big").hex()


def header_prefix_for(work: Work, extranonce2: int) -> bytes:
    """The first 76 header bytes for ``extranonce2`` (everything but the nonce)."""
    coinbase = build_coinbase(
        work.coinb1,
        work.extranonce1,
        extranonce2.to_bytes(work.extranonce2_size, "big"),
        work.coinb2,
    )
    return header_prefix(
        version=work.version,
        prevhash=work.prevhash,
        merkle=merkle_root(coinbase, work.merkle_branch),
        ntime=work.ntime,
        nbits=work.nbits,
    )


def nonce_hex(nonce: int) -> str:
    """The submit hex for a nonce scanned as ``nonce`` (see the module docstring)."""
    return f"{nonce:08x}"


def header_with_nonce(prefix: bytes, nonce: int) -> bytes:
    """The full 80-byte header."""
    return prefix + _NONCE.pack(nonce)


def scan_sha256d(prefix: bytes, start: int, stop: int, target: int) -> list[int]:
    """Nonces in ``[start, stop)`` whose sha256d(header), as a little-endian int, <= target.

    Uses the midstate of ``prefix[:64]``; ``prefix`` must be 76 bytes.
    """
    if len(prefix) != 76:
        raise ValueError("the header prefix must be 76 bytes")
    target_be = min(target, 2**256 - 1).to_bytes(32, "big")
    top = target_be[0]
    copy = hashlib.sha256(prefix[:64]).copy
    tail = prefix[64:]
    pack = _NONCE.pack
    sha256 = hashlib.sha256
    found: list[int] = []
    for nonce in range(start, stop):
        inner = copy()
        inner.update(tail + pack(nonce))
        digest = sha256(inner.digest()).digest()
        if digest[31] <= top and digest[::-1] <= target_be:
            found.append(nonce)
    return found


def scan_scrypt(prefix: bytes, start: int, stop: int, target: int) -> list[int]:
    """Nonces in ``[start, stop)`` whose scrypt(header), as a little-endian int, <= target."""
    if len(prefix) != 76:
        raise ValueError("the header prefix must be 76 bytes")
    target_be = min(target, 2**256 - 1).to_bytes(32, "big")
    top = target_be[0]
    pack = _NONCE.pack
    scrypt = hashlib.scrypt
    found: list[int] = []
    for nonce in range(start, stop):
        header = prefix + pack(nonce)
        digest = scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)
        if digest[31] <= top and digest[::-1] <= target_be:
            found.append(nonce)
    return found


def scan(algorithm: Algorithm, prefix: bytes, start: int, stop: int, target: int) -> list[int]:
    """``scan_sha256d`` or ``scan_scrypt`` for ``algorithm``."""
    if algorithm is Algorithm.SHA256D:
        return scan_sha256d(prefix, start, stop, target)
    return scan_scrypt(prefix, start, stop, target)


def nonce_range(index: int, count: int) -> tuple[int, int]:
    """The slice ``[start, stop)`` of the 32-bit nonce space that process ``index`` of
    ``count`` scans. Raises ``ValueError`` for an index outside ``range(count)``."""
    if not 0 <= index < count:
        raise ValueError(f"process index {index} outside 0..{count - 1}")
    size = NONCE_SPACE // count
    start = index * size
    stop = NONCE_SPACE if index == count - 1 else start + size
    return start, stop
