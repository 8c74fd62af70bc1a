"""The gateway link's frames on a trio stream, for both ends (``stratum.gateway`` and
``marketplace.gateways``): read messages, write queued frames, and notice a silent peer.

A peer whose machine died sends no FIN: without help the other end would hold its link (and a
market its workers) for as long as the kernel retries. ``keep_alive`` makes the kernel probe an
idle link after 5 s (every 2 s, 3 times) and give up on data unacknowledged for 15 s, so either
end sees the link broken within about 15 s and acts as on any lost link.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

import trio

from stratum.link import FrameDecoder, HandshakeError, LinkError, Refused

T = TypeVar("T")
M = TypeVar("M")

RECEIVE_BYTES = 65536
KEEPALIVE_IDLE_S = 5
KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_PROBES = 3
USER_TIMEOUT_MS = 15_000


def keep_alive(stream: trio.SocketStream) -> None:
    """Have the kernel notice a silent peer on ``stream`` (see the module doc); options a
    platform lacks are left out."""
    sock = stream.socket
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
    ):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


async def receive_message(
    stream: trio.abc.ReceiveStream, decoder: FrameDecoder[M], expected: type[T]
) -> T:
    """The next message, which must be an ``expected``. Raises ``HandshakeError`` for a
    ``Refused`` (with its reason), ``LinkError`` for another message or a bad frame,
    ``trio.BrokenResourceError`` when the peer closed."""
    while True:
        message = decoder.next_message()
        if message is not None:
            if isinstance(message, Refused):
                raise HandshakeError(message.reason)
            if not isinstance(message, expected):
                raise LinkError(f"expected {expected.__name__}, got {type(message).__name__}")
            return message
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            raise trio.BrokenResourceError("the peer closed the link")
        decoder.receive_data(data)


async def read_messages(
    stream: trio.abc.ReceiveStream, decoder: FrameDecoder[M], handle: Callable[[M], None]
) -> None:
    """``handle`` every message until the peer closes. Raises ``LinkError`` for a bad frame
    (and whatever ``handle`` raises)."""
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return
        decoder.receive_data(data)
        while (message := decoder.next_message()) is not None:
            handle(message)


async def write_frames(
    stream: trio.abc.SendStream, frames: trio.MemoryReceiveChannel[bytes]
) -> None:
    """Send queued frames, all that wait in one write, until the channel closes. Raises
    ``trio.BrokenResourceError`` when the peer is gone."""
    async for frame in frames:
        chunks = [frame]
        while True:
            try:
                chunks.append(frames.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        await stream.send_all(b"".join(chunks))
