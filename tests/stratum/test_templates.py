"""Templates: the coinbase parses as a transaction, the merkle branch is the coinbase's path."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stratum.core.shares import Algorithm, merkle_root, sha256d, swap_words
from stratum.core.templates import (
    MAX_TAG_BYTES,
    EmulatedChain,
    JobStream,
    merkle_branch,
    order_from_coinbase,
    script_num,
    tag_for,
)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def parse_tx(data: bytes) -> dict[str, object]:
    """A minimal legacy transaction parser (independent of the generator)."""
    pos = 4
    version = int.from_bytes(data[:4], "little")
    n_in, pos = read_varint(data, pos)
    inputs = []
    for _ in range(n_in):
        outpoint = data[pos : pos + 36]
        pos += 36
        length, pos = read_varint(data, pos)
        script = data[pos : pos + length]
        pos += length
        sequence = data[pos : pos + 4]
        pos += 4
        inputs.append((outpoint, script, sequence))
    n_out, pos = read_varint(data, pos)
    outputs = []
    for _ in range(n_out):
        value = int.from_bytes(data[pos : pos + 8], "little")
        pos += 8
        length, pos = read_varint(data, pos)
        outputs.append((value, data[pos : pos + length]))
        pos += length
    locktime = data[pos : pos + 4]
    pos += 4
    assert pos == len(data), "trailing bytes"
    return {"version": version, "inputs": inputs, "outputs": outputs, "locktime": locktime}


def full_tree_root(txids: list[bytes]) -> bytes:
    level = list(txids)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def make_stream(tag: str = "order-42", now_ms: int = 1_800_000_000_000) -> JobStream:
    chain = EmulatedChain(algorithm=Algorithm.SHA256D, block_interval_ms=600_000, now_ms=now_ms)
    return JobStream(tag, chain=chain, extranonce_size=8)


def test_coinbase_parses_with_bip34_height_tag_and_extranonce() -> None:
    stream = make_stream()
    job = stream.next_job(1_800_000_000_000)
    extranonce = bytes.fromhex("f000000d00000001")
    coinbase = bytes.fromhex(job.coinb1) + extranonce + bytes.fromhex(job.coinb2)
    tx = parse_tx(coinbase)
    assert tx["version"] == 1
    ((outpoint, script, sequence),) = tx["inputs"]  # type: ignore[misc]
    assert outpoint == bytes(32) + b"\xff" * 4
    assert sequence == b"\xff" * 4
    assert 2 <= len(script) <= 100
    # BIP34: the first push is the height.
    height_len = script[0]
    assert int.from_bytes(script[1 : 1 + height_len], "little") == job.height
    assert b"/hashmarket/order-42/" in script
    assert script.endswith(bytes([8]) + extranonce)  # the extranonce is one push at the end
    outputs = tx["outputs"]
    assert outputs[0][0] >= 312_500_000
    assert outputs[0][1][:2] == b"\x00\x14"
    assert outputs[1] == (0, outputs[1][1])
    assert outputs[1][1].startswith(b"\x6a\x24\xaa\x21\xa9\xed")


def test_long_tags_are_truncated_to_fit_the_script() -> None:
    job = make_stream(tag="x" * 500).next_job(1_800_000_000_000)
    coinbase = bytes.fromhex(job.coinb1) + bytes(8) + bytes.fromhex(job.coinb2)
    ((_, script, _),) = parse_tx(coinbase)["inputs"]  # type: ignore[misc]
    assert len(script) <= 100
    # The cut tag still reads back: the prefix of the order id that fits.
    assert tag_for("x" * 500) == b"/hashmarket/" + b"x" * (MAX_TAG_BYTES - 13) + b"/"
    assert order_from_coinbase(job.coinb1) == "x" * (MAX_TAG_BYTES - 13)


def test_the_tag_written_is_the_tag_read() -> None:
    assert tag_for("o-000017") == b"/hashmarket/o-000017/"
    job = make_stream(tag="o-000017").next_job(1_800_000_000_000)
    assert order_from_coinbase(job.coinb1) == "o-000017"
    assert order_from_coinbase(b"\x03abc/some-pool/xyz".hex()) is None
    assert order_from_coinbase("zz") is None


@given(
    st.lists(st.binary(min_size=32, max_size=32), max_size=12), st.binary(min_size=10, max_size=80)
)
def test_merkle_branch_gives_the_full_tree_root(txids: list[bytes], coinbase: bytes) -> None:
    branch = merkle_branch(txids)
    assert merkle_root(coinbase, branch) == full_tree_root([sha256d(coinbase), *txids])


def test_job_fields_and_clean_jobs_on_new_blocks() -> None:
    now = 1_800_000_000_000
    stream = make_stream(now_ms=now)
    first = stream.next_job(now)
    assert first.clean_jobs
    assert first.version == "20000000"
    assert first.source == "order-42"
    assert first.ntime == f"{now // 1000:08x}"
    # Job n carries 2 + n % 5 transactions besides the coinbase: 4 leaves, a branch of 2.
    assert len(first.merkle_branch) == 2
    second = stream.next_job(now + 30_000)
    assert not second.clean_jobs
    assert second.height == first.height
    assert second.seq == 2
    assert len(second.merkle_branch) == 3  # 5 leaves
    assert second.coinb2 != first.coinb2 or second.merkle_branch != first.merkle_branch
    third = stream.next_job(now + 600_000)
    assert third.clean_jobs
    assert third.height == first.height + 1
    assert third.prevhash != first.prevhash
    # The block hash has the trailing zeros of real work (internal order).
    assert swap_words(bytes.fromhex(third.prevhash)).endswith(bytes(8))
    # A long gap finds several blocks at once.
    fourth = stream.next_job(now + 600_000 * 5)
    assert fourth.height == first.height + 5


def test_streams_share_the_chain() -> None:
    chain = EmulatedChain(algorithm=Algorithm.SCRYPT, block_interval_ms=1000, now_ms=0)
    a = JobStream("a", chain=chain)
    b = JobStream("b", chain=chain)
    ja, jb = a.next_job(0), b.next_job(0)
    assert ja.prevhash == jb.prevhash
    assert ja.nbits == jb.nbits
    assert ja.coinb1 != jb.coinb1
    assert chain.subsidy(ja.height) == 625_000_000  # LTC after three halvings


def test_script_num() -> None:
    assert script_num(1) == b"\x01"
    assert script_num(0x80) == b"\x80\x00"
    assert script_num(840_000) == (840_000).to_bytes(3, "little")


def test_a_block_found_on_demand_moves_the_tip_and_the_next_block() -> None:
    chain = EmulatedChain(algorithm=Algorithm.SHA256D, block_interval_ms=600_000, now_ms=0)
    stream = JobStream("o-1", chain=chain)
    first = stream.next_job(1_000)
    tip = chain.find_block(2_000)
    assert tip.height == first.height + 1
    assert chain.next_block_ms == 602_000  # one interval after the block found now
    second = stream.next_job(3_000)
    assert second.clean_jobs
    assert second.height == tip.height
    assert second.prevhash != first.prevhash
