"""Bitcoin-like block templates: an emulated chain per algorithm and job streams on top of it.

Theory of operation
-------------------
``EmulatedChain`` pretends to be a network: a tip (height, previous block hash, nbits) that
moves to a new block every ``block_interval_ms``. Hashes are derived deterministically from a
seed and the height, so two chains with the same seed agree and tests can predict them; the
block hash has trailing zero bytes in internal order, as a real one would.

``JobStream(tag)`` makes the ``Job`` values one stream of work hands out (in the marketplace one
per order, tag = order id; ``"pool"`` for the standalone pool). Each job is a real template:
version ``20000000``; a coinbase transaction in legacy serialisation (what Stratum miners hash)
whose scriptSig holds the BIP34 height push, a ``/hashmarket/<tag>/`` marker (``tag_for``;
``order_from_coinbase`` reads it back, as the worker does to show what it serves) and one push of
``extranonce_size`` bytes that the split between ``coinb1`` and ``coinb2`` leaves for
extranonce1 + extranonce2; outputs paying the block subsidy to a P2WPKH script and a witness
commitment. The merkle branch is the coinbase's path through a tree of a few fake transaction
hashes, built the way pools build it. ``clean_jobs`` is true for a stream's first job and
whenever the chain tip moved since the previous one. Time is passed in (``now_ms``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from stratum.core.jobs import Job
from stratum.core.shares import Algorithm, sha256d, swap_words

#: BIP9 version with no deployment bits, as every modern template has.
TEMPLATE_VERSION: Final = 0x20000000

#: Realistic network parameters per algorithm: start height, nbits, subsidy halving interval.
_NETWORK: Final = {
    Algorithm.SHA256D: (840_000, 0x17034219, 210_000),
    Algorithm.SCRYPT: (2_700_000, 0x1A0D6F2E, 840_000),
}

#: Longest tag marker that still fits one single-byte push and a 100-byte scriptSig.
MAX_TAG_BYTES: Final = 64
_TAG_PREFIX: Final = b"/hashmarket/"
COIN: Final = 100_000_000


def script_num(value: int) -> bytes:
    """Minimal CScriptNum encoding of a non-negative integer (BIP34 height push payload)."""
    if value < 0:
        raise ValueError("only non-negative numbers are needed here")
    if value == 0:
        return b""
    data = value.to_bytes((value.bit_length() + 7) // 8, "little")
    if data[-1] & 0x80:
        data += b"\x00"
    return data


def push_data(data: bytes) -> bytes:
    """A script push of ``data`` (up to 75 bytes: one length byte as opcode)."""
    if len(data) > 75:
        raise ValueError("push_data supports pushes of up to 75 bytes")
    return bytes([len(data)]) + data


def varint(value: int) -> bytes:
    """Bitcoin's CompactSize encoding."""
    if value < 0xFD:
        return bytes([value])
    if value <= 0xFFFF:
        return b"\xfd" + value.to_bytes(2, "little")
    if value <= 0xFFFFFFFF:
        return b"\xfe" + value.to_bytes(4, "little")
    return b"\xff" + value.to_bytes(8, "little")


def tx_output(value: int, script: bytes) -> bytes:
    """One serialised transaction output."""
    return value.to_bytes(8, "little") + varint(len(script)) + script


def merkle_branch(txids: list[bytes]) -> list[bytes]:
    """The coinbase's merkle path given the other transactions' hashes (internal byte order).

    Folding ``sha256d(coinbase)`` with each entry in turn (``shares.merkle_root``) yields the
    root of the full tree ``[coinbase] + txids`` with Bitcoin's duplicate-the-last rule.
    """
    branch: list[bytes] = []
    level: list[bytes] = [b"", *txids]  # slot 0 stands for the coinbase path
    while len(level) > 1:
        branch.append(level[1])
        if len(level) % 2:
            level.append(level[-1])
        level = [b""] + [sha256d(level[i] + level[i + 1]) for i in range(2, len(level), 2)]
    return branch


def tag_for(order_id: str) -> bytes:
    """The coinbase marker of a stream: ``/hashmarket/<order id>/``, cut to ``MAX_TAG_BYTES``
    (the closing ``/`` kept)."""
    marker = _TAG_PREFIX + order_id.encode() + b"/"
    if len(marker) > MAX_TAG_BYTES:
        marker = marker[: MAX_TAG_BYTES - 1] + b"/"
    return marker


def order_from_coinbase(coinb1_hex: str) -> str | None:
    """The order id (or ``pool``, or the idle tag) a ``tag_for`` marker in ``coinb1`` names.

    ``None`` when coinb1 is not hex or carries no such marker (other pools have their own).
    """
    try:
        data = bytes.fromhex(coinb1_hex)
    except ValueError:
        return None
    marker = data.find(_TAG_PREFIX)
    if marker < 0:
        return None
    start = marker + len(_TAG_PREFIX)
    end = data.find(b"/", start)
    tag = data[start : end if end >= 0 else None].decode("latin-1")
    return tag if tag.isprintable() and tag else None


def _derive(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


@dataclass(frozen=True, slots=True)
class ChainTip:
    """The block miners build on: its height, hash in Stratum wire form, and nbits hex."""

    height: int
    prevhash: str
    nbits: str
    since_ms: int


class EmulatedChain:
    """A fake network for one algorithm: a new block every ``block_interval_ms``."""

    def __init__(
        self,
        *,
        algorithm: Algorithm,
        block_interval_ms: int,
        now_ms: int,
        seed: str = "hashmarket",
        start_height: int | None = None,
    ) -> None:
        if block_interval_ms <= 0:
            raise ValueError("block_interval_ms must be positive")
        height, nbits, halving = _NETWORK[algorithm]
        self.algorithm = algorithm
        self.block_interval_ms = block_interval_ms
        self.halving_interval = halving
        self._seed = seed
        self._nbits = f"{nbits:08x}"
        self._tip = self._make_tip(start_height if start_height is not None else height, now_ms)
        self._next_block_ms = now_ms + block_interval_ms

    @property
    def tip(self) -> ChainTip:
        """The current tip (call ``advance`` first to bring it up to date)."""
        return self._tip

    @property
    def next_block_ms(self) -> int:
        """When the emulated network finds its next block."""
        return self._next_block_ms

    def advance(self, now_ms: int) -> bool:
        """Bring the tip up to ``now_ms``; True if at least one block was found since."""
        if now_ms < self._next_block_ms:
            return False
        blocks = (now_ms - self._next_block_ms) // self.block_interval_ms + 1
        found_at = self._next_block_ms + (blocks - 1) * self.block_interval_ms
        self._tip = self._make_tip(self._tip.height + blocks, found_at)
        self._next_block_ms = found_at + self.block_interval_ms
        return True

    def find_block(self, now_ms: int) -> ChainTip:
        """The network finds a block now (an operator's ``admin.block.new``): the tip moves
        one up at ``now_ms`` and the next block is one interval later. Returns the new tip."""
        self.advance(now_ms)
        self._tip = self._make_tip(self._tip.height + 1, now_ms)
        self._next_block_ms = now_ms + self.block_interval_ms
        return self._tip

    def subsidy(self, height: int) -> int:
        """The block subsidy in satoshi at ``height``."""
        halvings = height // self.halving_interval
        return 0 if halvings >= 64 else (50 * COIN) >> halvings

    def _make_tip(self, height: int, since_ms: int) -> ChainTip:
        # The previous block's hash, internal byte order, with the trailing zeros of real work.
        internal = _derive(self._seed, self.algorithm, height - 1)[:24] + bytes(8)
        return ChainTip(height, swap_words(internal).hex(), self._nbits, since_ms)


class JobStream:
    """The jobs of one stream of work (one order, or the whole standalone pool)."""

    def __init__(self, tag: str, *, chain: EmulatedChain, extranonce_size: int = 8) -> None:
        if not 1 <= extranonce_size <= 32:
            raise ValueError("extranonce_size must be 1..32 bytes")
        self.tag = tag
        self.chain = chain
        self.extranonce_size = extranonce_size
        self._seq = 0
        self._height: int | None = None
        self._current: Job | None = None
        self._marker = tag_for(tag)
        self._payout = b"\x00\x14" + _derive("payout", tag)[:20]  # P2WPKH

    @property
    def current(self) -> Job | None:
        """The last job made, if any."""
        return self._current

    def next_job(self, now_ms: int) -> Job:
        """A new template at ``now_ms``; ``clean_jobs`` when the tip moved (or first job)."""
        self.chain.advance(now_ms)
        tip = self.chain.tip
        clean = self._height != tip.height
        self._height = tip.height
        self._seq += 1
        coinb1, coinb2 = self._coinbase_halves(tip.height, self._seq)
        txids = [
            sha256d(_derive("tx", self.tag, tip.height, self._seq, i))
            for i in range(2 + self._seq % 5)
        ]
        job = Job(
            source=self.tag,
            seq=self._seq,
            height=tip.height,
            prevhash=tip.prevhash,
            coinb1=coinb1.hex(),
            coinb2=coinb2.hex(),
            merkle_branch=tuple(node.hex() for node in merkle_branch(txids)),
            version=f"{TEMPLATE_VERSION:08x}",
            nbits=tip.nbits,
            ntime=f"{(now_ms // 1000) & 0xFFFFFFFF:08x}",
            clean_jobs=clean,
        )
        self._current = job
        return job

    def _coinbase_halves(self, height: int, seq: int) -> tuple[bytes, bytes]:
        script_head = push_data(script_num(height)) + push_data(self._marker)
        script_len = len(script_head) + 1 + self.extranonce_size
        coinb1 = (
            (1).to_bytes(4, "little")  # tx version
            + b"\x01"  # one input
            + bytes(32)
            + b"\xff\xff\xff\xff"  # null outpoint
            + varint(script_len)
            + script_head
            + bytes([self.extranonce_size])  # push opcode; extranonce1 + extranonce2 follow
        )
        fees = 1_000_000 + (seq * 7919) % 5_000_000
        commitment = b"\x6a\x24\xaa\x21\xa9\xed" + _derive("witness", self.tag, height, seq)
        coinb2 = (
            b"\xff\xff\xff\xff"  # sequence
            + varint(2)
            + tx_output(self.chain.subsidy(height) + fees, self._payout)
            + tx_output(0, commitment)
            + bytes(4)  # lock time
        )
        return coinb1, coinb2
