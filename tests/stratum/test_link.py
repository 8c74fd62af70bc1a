"""The gateway link's frames and handshake values (``stratum.link``): every split, junk,
oversize frames, the HMAC proofs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, Share
from stratum.core.shares import Algorithm
from stratum.link import (
    HEADER_BYTES,
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    ChangeLayout,
    HandshakeError,
    Hello,
    Join,
    Kick,
    LinkError,
    Proof,
    PushJob,
    Shares,
    Welcome,
    check_hello,
    check_proof,
    encode,
    gateway_decoder,
    gateway_proof,
    market_decoder,
    market_proof,
)

SHARE = Share(
    conn_id=1 << 40 | 7,
    account="seller",
    worker="rig1",
    algorithm=Algorithm.SHA256D,
    source="o-000001",
    difficulty=1e-7,
    accepted=True,
    reason=None,
    time_ms=1_700_000_000_000,
    hash_hex="00" * 32,
    job_seq=3,
    extranonce1="01000002",
    extranonce2="00000000",
    ntime="65000000",
    nonce="0000abcd",
)
JOB = Job(
    source="o-000001",
    seq=3,
    height=10,
    prevhash="00" * 32,
    coinb1="01",
    coinb2="02",
    merkle_branch=("aa" * 32,),
    version="20000000",
    nbits="1d00ffff",
    ntime="65000000",
    clean_jobs=True,
)
HELLO = Hello(
    version=PROTOCOL_VERSION, gateway="g1", incarnation="i1", nonce=b"n" * NONCE_BYTES, prefix=3
)
FROM_GATEWAY = [
    HELLO,
    Proof(mac=b"m" * 32),
    Join(
        algorithm=Algorithm.SHA256D,
        conn=5,
        account="seller",
        worker="rig1",
        session_id=b"\x01\x00\x00\x05",
        extranonce_subscribed=True,
        difficulty=0.5,
        peer="127.0.0.1:5000",
        user_agent=None,
        version_mask=0x1FFFE000,
        local_host="127.0.0.1",
        local_port=3333,
        layout=Layout(extranonce1=b"\xaa\xbb", extranonce2_size=2),
    ),
    Shares(algorithm=Algorithm.SHA256D, first=41, shares=[SHARE, SHARE]),
]
FROM_MARKET = [
    Welcome(
        mac=b"m" * 32,
        prefix=2,
        settings=[StratumConfig(start_difficulty=1e-7, min_difficulty=1e-7)],
    ),
    Ack(first=41),
    Ack(first=42, refusal="storage unavailable, retry"),
    PushJob(conn=5, job=JOB),
    ChangeLayout(conn=5, layout=None, job=JOB),
    Kick(conn=5, drop=True),
]


def test_messages_round_trip_both_ways() -> None:
    gateway_side, market_side = market_decoder(), gateway_decoder()
    market_side.receive_data(b"".join(encode(m) for m in FROM_GATEWAY))
    gateway_side.receive_data(b"".join(encode(m) for m in FROM_MARKET))
    assert [market_side.next_message() for _ in FROM_GATEWAY] == FROM_GATEWAY
    assert [gateway_side.next_message() for _ in FROM_MARKET] == FROM_MARKET
    assert market_side.next_message() is None
    assert gateway_side.next_message() is None


@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=20))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    data = b"".join(encode(m) for m in FROM_GATEWAY)
    decoder = gateway_decoder()
    got = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        decoder.receive_data(data[last:cut])
        last = cut
        while (message := decoder.next_message()) is not None:
            got.append(message)
    assert got == FROM_GATEWAY


@given(st.binary(max_size=2000))
def test_junk_is_refused_never_crashes(junk: bytes) -> None:
    """Whatever arrives, the decoder answers a message, ``None`` (more to come) or
    ``LinkError``: never another exception."""
    for decoder in (gateway_decoder(), market_decoder()):
        decoder.receive_data(junk)
        for _ in range(len(junk) + 1):
            try:
                if decoder.next_message() is None:
                    break
            except LinkError:
                break


def test_a_frame_from_the_wrong_side_is_refused() -> None:
    decoder = gateway_decoder()
    decoder.receive_data(encode(Ack(first=1)))
    with pytest.raises(LinkError, match="bad frame"):
        decoder.next_message()


def test_an_oversize_frame_is_refused_from_its_header() -> None:
    decoder = market_decoder()
    decoder.receive_data((MAX_FRAME_BYTES + 1).to_bytes(HEADER_BYTES, "big"))
    with pytest.raises(LinkError, match="over"):
        decoder.next_message()


def test_a_batch_with_a_bad_share_is_refused() -> None:
    frame = bytearray(encode(Shares(algorithm=Algorithm.SHA256D, first=0, shares=[SHARE])))
    at = frame.index(b"sha256d")
    frame[at : at + 7] = b"sha257d"
    decoder = gateway_decoder()
    decoder.receive_data(bytes(frame))
    with pytest.raises(LinkError):
        decoder.next_message()


def test_proofs_need_the_secret_and_are_bound_to_the_hello() -> None:
    challenge = b"c" * NONCE_BYTES
    proof = gateway_proof(b"secret", HELLO, challenge)
    check_proof(gateway_proof(b"secret", HELLO, challenge), proof)
    with pytest.raises(HandshakeError, match="wrong gateway secret"):
        check_proof(gateway_proof(b"other", HELLO, challenge), proof)
    with pytest.raises(HandshakeError):
        check_proof(gateway_proof(b"secret", HELLO, b"d" * NONCE_BYTES), proof)
    # The market's answer is not the gateway's proof replayed.
    assert market_proof(b"secret", HELLO, challenge) != proof
    assert b"secret" not in encode(Proof(mac=proof))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": PROTOCOL_VERSION + 1}, "protocol version"),
        ({"nonce": b"short"}, "nonce"),
        ({"gateway": ""}, "1-64"),
        ({"prefix": 256}, "prefix"),
    ],
)
def test_a_bad_hello_is_refused(change: dict[str, object], message: str) -> None:
    fields = {
        "version": HELLO.version,
        "gateway": HELLO.gateway,
        "incarnation": HELLO.incarnation,
        "nonce": HELLO.nonce,
        "prefix": HELLO.prefix,
    }
    fields.update(change)
    with pytest.raises(HandshakeError, match=message):
        check_hello(Hello(**fields))  # type: ignore[arg-type]
    check_hello(HELLO)
