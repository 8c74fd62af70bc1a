"""The gateway link: what a Stratum gateway and its market say to each other, as bytes.

Theory of operation
-------------------
A gateway (``hashmarket gateway``) runs the Stratum listeners; the market keeps the order
book, allocation and the journal (``../shared/spec/cluster.md``). They talk over one TCP
connection in frames: a 4-byte big-endian length, then that many bytes of msgpack holding one
typed message (a ``msgspec.Struct`` tagged in the field ``t``). ``encode(message)`` makes a
frame; a ``FrameDecoder`` takes bytes in any split (``receive_data``) and hands out whole
messages (``next_message``), raising ``LinkError`` for a frame that is too long or does not
decode as a message of the peer's side: the peer's fault, so the connection closes.

The handshake, in order: the gateway says ``Hello`` (protocol version, its id, its
incarnation, a random nonce, the extranonce1 prefix it had); the market answers
``Challenge`` (its version and nonce) or ``Refused``; the gateway proves it knows the shared
secret with ``Proof`` (``gateway_proof``: an HMAC-SHA256 over both nonces and its id, never the
secret itself); the market checks it and answers ``Welcome`` (its own proof over the same
values, so the gateway knows it reached a market with the secret too, the extranonce1 prefix
the gateway owns, and every Stratum setting, so one configuration rules every gateway) or
``Refused``. ``HandshakeError`` names what failed.

Then, gateway to market: ``Listening`` (its Stratum ports are bound), ``Join`` and ``Leave``
(a connection's first worker authorized; the connection is gone), ``Shares`` (a batch of
checked shares of one algorithm, numbered ``first``, ``first + 1``...: with the gateway's id
and incarnation that is each share's id). Market to gateway: ``Ack`` (a batch is durable, or
was refused with a message the miners hear with code 20), ``PushJob``, ``ChangeLayout``,
``Reserve`` (the layout a miner resuming a session will be given, on whichever gateway it
lands), ``Kick``, ``Reconnect``, ``Message``, ``Difficulty``.

Pure (no sockets, clocks or randomness: nonces come in as arguments); outside ``stratum.core``
only because ``Welcome`` carries the ``StratumConfig`` of ``stratum.config``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final, Generic, TypeVar

import msgspec

from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, Share
from stratum.core.shares import Algorithm
from stratum.faults import FaultSpec

#: Bumped when a message changes shape; a peer of another version is refused in the hello.
PROTOCOL_VERSION: Final = 3
#: A batch of 1,000 shares is about 300 kB; anything far beyond is not a peer of ours.
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
NONCE_BYTES: Final = 16
HEADER_BYTES: Final = 4
#: At most this many shares in one ``Shares`` batch (cluster.md).
MAX_BATCH_SHARES: Final = 1000


class LinkError(Exception):
    """The peer sent bytes that are not a frame of this protocol (its fault: close)."""


class HandshakeError(Exception):
    """The hello failed: the message says why (version, secret, the peer's refusal)."""


# ------------------------------------------------------------------ gateway to market


class Hello(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="hello"):
    """A gateway's first frame. ``prefix`` is the extranonce1 prefix it owned before (its live
    connections still hold values under it), ``None`` on its first connection."""

    version: int
    gateway: str
    incarnation: str
    nonce: bytes
    prefix: int | None = None


class Proof(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="proof"):
    """``gateway_proof`` over the hello's values and the market's challenge."""

    mac: bytes


class Listening(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="listening"):
    """The gateway's Stratum listeners are bound (port per algorithm value)."""

    ports: dict[str, int]


class Join(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="join"):
    """A connection's first worker authorized (``WorkSource.connect``): what the market's
    ``MinerLink`` for it knows. ``layout`` is the one reserved for its session that it was
    given at subscribe (``None``: its own)."""

    algorithm: Algorithm
    conn: int
    account: str
    worker: str
    session_id: bytes
    extranonce_subscribed: bool
    difficulty: float
    peer: str
    user_agent: str | None
    version_mask: int
    local_host: str
    local_port: int
    layout: Layout | None = None


class Leave(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="leave"):
    """The connection is gone (``WorkSource.disconnect``)."""

    conn: int


class Shares(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="shares"):
    """Checked shares of one algorithm; share ``i`` has the id ``first + i`` within the
    gateway's incarnation."""

    algorithm: Algorithm
    first: int
    shares: list[Share]


GatewayMessage = Hello | Proof | Listening | Join | Leave | Shares


# ------------------------------------------------------------------ market to gateway


class Challenge(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="challenge"):
    version: int
    nonce: bytes


class Welcome(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="welcome"):
    """The gateway is in: ``mac`` proves the market knows the secret, ``prefix`` is the first
    byte of every extranonce1 the gateway hands out, ``settings`` one Stratum configuration
    per algorithm (the gateway listens on its own host and ports)."""

    mac: bytes
    prefix: int
    settings: list[StratumConfig]
    #: Market time's lead over wall time (control.md), which the gateway's clock keeps too.
    offset_ms: int = 0


class Refused(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="refused"):
    reason: str


class Ack(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="ack"):
    """The batch that began at ``first`` is durable (``refusal`` ``None``), or none of it was
    recorded (the miners are answered ``[20, refusal]``)."""

    first: int
    refusal: str | None = None


class PushJob(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="job"):
    conn: int
    job: Job


class ChangeLayout(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="layout"):
    conn: int
    layout: Layout | None
    job: Job


class Reserve(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="reserve"):
    """A miner told to reconnect resumes ``session_id`` with ``layout`` (for ``for_s``)."""

    algorithm: Algorithm
    session_id: bytes
    layout: Layout | None
    for_s: float


class Kick(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="kick"):
    conn: int
    #: Close at once without flushing (an injected drop) instead of gracefully.
    drop: bool = False


class Reconnect(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="reconnect"):
    conn: int
    host: str | None
    port: int | None
    wait_s: int


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="message"):
    conn: int
    text: str


class Difficulty(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="difficulty"):
    conn: int
    difficulty: float


class LinkFault(msgspec.Struct, frozen=True, kw_only=True):
    """One Stratum fault the operator set (control.md), as the gateway carries it out: the
    per-line ones (``latency_ms``, ``junk_rate``, ``reject_rate``, ``stall``). The market
    itself closes connections a ``drop_after_s`` fault names, on every gateway."""

    algorithm: Algorithm | None = None
    worker: str | None = None
    seed: int = 0
    latency_ms: int | None = None
    reject_rate: float | None = None
    stall: bool | None = None
    junk_rate: float | None = None
    drop_after_s: float | None = None


def link_fault(spec: FaultSpec) -> LinkFault:
    """``spec`` (the operator's ``StratumFault``) as the link carries it."""
    return LinkFault(
        algorithm=spec.algorithm,
        worker=spec.worker,
        seed=spec.seed,
        latency_ms=spec.latency_ms,
        reject_rate=spec.reject_rate,
        stall=spec.stall,
        junk_rate=spec.junk_rate,
        drop_after_s=spec.drop_after_s,
    )


class Faults(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="faults"):
    """The Stratum faults in force now (empty: none), replacing what was sent before."""

    faults: list[LinkFault]


class ClockOffset(msgspec.Struct, frozen=True, kw_only=True, tag_field="t", tag="clock"):
    """Market time moved on (``admin.time.advance``): its lead over wall time is now
    ``offset_ms``; the gateway's shares are checked (ntime) and timed on that clock."""

    offset_ms: int


MarketMessage = (
    Challenge
    | Welcome
    | Refused
    | Ack
    | PushJob
    | ChangeLayout
    | Reserve
    | Kick
    | Reconnect
    | Message
    | Difficulty
    | ClockOffset
    | Faults
)

_ENCODER: Final = msgspec.msgpack.Encoder()


def encode(message: GatewayMessage | MarketMessage) -> bytes:
    """One frame: the length, then the message as msgpack. Raises ``LinkError`` for a message
    over ``MAX_FRAME_BYTES`` (a bug of ours: batches are bounded)."""
    body = _ENCODER.encode(message)
    if len(body) > MAX_FRAME_BYTES:
        raise LinkError(f"frame of {len(body)} bytes over {MAX_FRAME_BYTES}")
    return len(body).to_bytes(HEADER_BYTES, "big") + body


M = TypeVar("M")


class FrameDecoder(Generic[M]):
    """Frames in, messages out, for one side's messages (``gateway_decoder`` for what a
    gateway sends, ``market_decoder`` for what a market sends). Bytes may come split anyhow.
    """

    def __init__(self, decoder: msgspec.msgpack.Decoder[M]) -> None:
        self._decoder = decoder
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray) -> None:
        """Take bytes as they came off the connection."""
        self._buffer += data

    def next_message(self) -> M | None:
        """The next whole message, ``None`` until one is complete. Raises ``LinkError`` for a
        frame longer than ``MAX_FRAME_BYTES`` or whose body is not a message of this side (the
        bad frame stays: the connection is over)."""
        buffer = self._buffer
        if len(buffer) < HEADER_BYTES:
            return None
        size = int.from_bytes(buffer[:HEADER_BYTES], "big")
        if size > MAX_FRAME_BYTES:
            raise LinkError(f"frame of {size} bytes over {MAX_FRAME_BYTES}")
        end = HEADER_BYTES + size
        if len(buffer) < end:
            return None
        try:
            message = self._decoder.decode(memoryview(buffer)[HEADER_BYTES:end])
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise LinkError(f"bad frame: {error}") from error
        del buffer[:end]
        return message


def gateway_decoder() -> FrameDecoder[GatewayMessage]:
    """A decoder for the frames a gateway sends (the market's side)."""
    return FrameDecoder(msgspec.msgpack.Decoder(GatewayMessage))


def market_decoder() -> FrameDecoder[MarketMessage]:
    """A decoder for the frames a market sends (the gateway's side)."""
    return FrameDecoder(msgspec.msgpack.Decoder(MarketMessage))


# ------------------------------------------------------------------ the shared secret


def _mac(secret: bytes, role: bytes, hello: Hello, challenge: bytes) -> bytes:
    message = b"|".join(
        (
            b"hashmarket-gateway",
            str(PROTOCOL_VERSION).encode(),
            role,
            hello.gateway.encode(),
            hello.incarnation.encode(),
            hello.nonce,
            challenge,
        )
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


def gateway_proof(secret: bytes, hello: Hello, challenge: bytes) -> bytes:
    """What the gateway sends to prove it holds ``secret`` (bound to both nonces and its id)."""
    return _mac(secret, b"gateway", hello, challenge)


def market_proof(secret: bytes, hello: Hello, challenge: bytes) -> bytes:
    """What the market sends back to prove it holds ``secret`` too."""
    return _mac(secret, b"market", hello, challenge)


def check_proof(expected: bytes, got: bytes) -> None:
    """Raises ``HandshakeError`` unless ``got`` is ``expected`` (compared in constant time)."""
    if not hmac.compare_digest(expected, got):
        raise HandshakeError("wrong gateway secret")


def check_hello(hello: Hello) -> None:
    """Raises ``HandshakeError`` for a hello this market cannot take (another version, a
    nonce of the wrong size, an empty or over-long id, a prefix out of range)."""
    if hello.version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"gateway protocol version {hello.version}, this market speaks {PROTOCOL_VERSION}"
        )
    if len(hello.nonce) != NONCE_BYTES:
        raise HandshakeError(f"the hello's nonce must be {NONCE_BYTES} bytes")
    if not 1 <= len(hello.gateway) <= 64 or not 1 <= len(hello.incarnation) <= 64:
        raise HandshakeError("gateway id and incarnation must be 1-64 characters")
    if hello.prefix is not None and not 0 <= hello.prefix <= 255:
        raise HandshakeError("extranonce1 prefix must be 0-255")
