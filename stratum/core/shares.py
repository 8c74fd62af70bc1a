"""Share math: headers, targets and proof-of-work hashes, exactly as the miners compute them.

Theory of operation
-------------------
A miner builds an 80-byte block header from a ``mining.notify`` job, the connection's
extranonce1 and its own extranonce2, ntime and nonce. The byte order follows cpuminer (see
``tests/vectors/README.md``): version, ntime, nbits and nonce are the notify hex with their bytes
reversed; prevhash has each 4-byte word reversed; the merkle root is used exactly as computed.
The proof-of-work hash, read as a little-endian integer, must be at most the share target,
``floor(T1 / difficulty)``, computed with exact rational arithmetic from the difficulty's binary
float value (the JSON number the miner received).

Everything here is pure and synchronous; the server, the workers and the tests share it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from enum import StrEnum
from fractions import Fraction
from typing import Final


class Algorithm(StrEnum):
    """The two markets. Each has its own Stratum port and difficulty-1 target."""

    SHA256D = "sha256d"
    SCRYPT = "scrypt"


#: Difficulty-1 targets. Miners treat scrypt difficulty as 65536 times coarser.
T1: Final[dict[Algorithm, int]] = {
    Algorithm.SHA256D: 0xFFFF * 2**208,
    Algorithm.SCRYPT: 0xFFFF * 2**224,
}

#: Hashes that one share of difficulty 1 proves, on average: 2**256 / T1 rounded, as cpuminer,
#: Litecoin pools and NiceHash count it (work = difficulty * 2**32 for sha256d, * 2**16 for
#: scrypt).
HASHES_PER_DIFF1: Final[dict[Algorithm, int]] = {
    Algorithm.SHA256D: 2**32,
    Algorithm.SCRYPT: 2**16,
}

MAX_TARGET: Final = 2**256 - 1


def sha256d(data: bytes) -> bytes:
    """Bitcoin's double SHA-256."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def scrypt_hash(header: bytes) -> bytes:
    """Litecoin's proof of work: scrypt N=1024, r=1, p=1, the header as password and salt."""
    return hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)


def pow_hash(algorithm: Algorithm, header: bytes) -> bytes:
    """The proof-of-work hash of an 80-byte header for ``algorithm``."""
    return POW_HASH[algorithm](header)


#: The proof-of-work hash function of each algorithm.
POW_HASH: Final[dict[Algorithm, Callable[[bytes], bytes]]] = {
    Algorithm.SHA256D: sha256d,
    Algorithm.SCRYPT: scrypt_hash,
}


def hash_to_int(digest: bytes) -> int:
    """A 32-byte hash read as the little-endian integer that is compared with the target."""
    return int.from_bytes(digest, "little")


def target_for(algorithm: Algorithm, difficulty: float) -> int:
    """``floor(T1 / difficulty)``, exact, capped at 2**256 - 1.

    Raises ``ValueError`` for a difficulty that is not a positive finite number.
    """
    if not difficulty > 0 or difficulty == float("inf"):
        raise ValueError(f"difficulty must be a positive finite number, not {difficulty!r}")
    target = int(Fraction(T1[algorithm]) / Fraction(difficulty))
    return min(target, MAX_TARGET)


def difficulty_of_hash(algorithm: Algorithm, value: int) -> float:
    """The highest difficulty a hash (as an integer) would satisfy; for logs and statistics."""
    return T1[algorithm] / max(value, 1)


@functools.lru_cache(maxsize=1024)
def work_for(algorithm: Algorithm, difficulty: float) -> Fraction:
    """Hashes credited for one accepted share of ``difficulty``, exact: ``difficulty * 2**32``
    for sha256d, ``difficulty * 2**16`` for scrypt (``HASHES_PER_DIFF1``).

    Cached: a server sees few distinct difficulties and a share should not cost a ``Fraction``.
    """
    return Fraction(difficulty) * HASHES_PER_DIFF1[algorithm]


def swap_words(data: bytes) -> bytes:
    """Reverse the bytes of each 4-byte word, keeping the words in order (prevhash layout)."""
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def merkle_root(coinbase: bytes, branch: list[bytes] | tuple[bytes, ...]) -> bytes:
    """The merkle root a miner computes: sha256d(coinbase), folded with each branch entry."""
    root = sha256d(coinbase)
    for node in branch:
        root = sha256d(root + node)
    return root


class CoinbasePrefix:
    """The SHA-256 state after a coinbase's fixed first part (coinb1 + extranonce1), computed
    once per job sent: the merkle root of each extranonce2 then hashes only the rest (a
    midstate, as miners use one)."""

    __slots__ = ("_state",)

    def __init__(self, prefix: bytes) -> None:
        self._state = hashlib.sha256(prefix)

    def merkle_root(self, suffix: bytes, branch: tuple[bytes, ...]) -> bytes:
        """``merkle_root(prefix + suffix, branch)``; ``suffix`` is extranonce2 + coinb2."""
        state = self._state.copy()
        state.update(suffix)
        root = hashlib.sha256(state.digest()).digest()
        for node in branch:
            root = sha256d(root + node)
        return root


def build_coinbase(coinb1: bytes, extranonce1: bytes, extranonce2: bytes, coinb2: bytes) -> bytes:
    """coinb1 + extranonce1 + extranonce2 + coinb2."""
    return coinb1 + extranonce1 + extranonce2 + coinb2


class HeaderLayout:
    """The header fields one job fixes, laid out once in header byte order.

    Everything that puts bytes into an 80-byte header goes through here (the server's share
    check per submission, the worker's hashing per extranonce2), so both lay it out the same.
    """

    __slots__ = ("_nbits", "_prevhash")

    def __init__(self, *, prevhash: bytes, nbits: bytes) -> None:
        self._prevhash = swap_words(prevhash)
        self._nbits = nbits[::-1]

    def prefix(self, *, version: int, merkle: bytes, ntime: bytes) -> bytes:
        """The first 76 bytes (everything but the nonce); ``ntime`` as wire bytes."""
        return version.to_bytes(4, "little") + self._prevhash + merkle + ntime[::-1] + self._nbits

    def header(self, *, version: int, merkle: bytes, ntime: bytes, nonce: bytes) -> bytes:
        """The full header; ``ntime`` and ``nonce`` as wire bytes (the submit's hex)."""
        # ``prefix`` + the nonce, written out: this runs for every share the server checks.
        return (
            version.to_bytes(4, "little")
            + self._prevhash
            + merkle
            + ntime[::-1]
            + self._nbits
            + nonce[::-1]
        )


def header_prefix(
    *, version: bytes, prevhash: bytes, merkle: bytes, ntime: bytes, nbits: bytes
) -> bytes:
    """The first 76 bytes of the header (everything but the nonce).

    ``version``, ``prevhash``, ``ntime`` and ``nbits`` are the bytes of the notify hex strings
    (``bytes.fromhex`` of what went on the wire); ``merkle`` is the root as computed.
    """
    layout = HeaderLayout(prevhash=prevhash, nbits=nbits)
    return layout.prefix(version=int.from_bytes(version, "big"), merkle=merkle, ntime=ntime)


def build_header(
    *,
    version: bytes,
    prevhash: bytes,
    merkle: bytes,
    ntime: bytes,
    nbits: bytes,
    nonce: bytes,
) -> bytes:
    """The 80-byte header exactly as cpuminer lays it out (all inputs as wire bytes)."""
    layout = HeaderLayout(prevhash=prevhash, nbits=nbits)
    return layout.header(
        version=int.from_bytes(version, "big"), merkle=merkle, ntime=ntime, nonce=nonce
    )


def rolled_version(version: int, version_bits: int, mask: int) -> int:
    """BIP 310: the block version with the miner's rolled bits applied under ``mask``."""
    return (version & ~mask) | (version_bits & mask)
