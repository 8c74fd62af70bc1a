"""``GET /events``: Server-Sent Events of public market data, one ``market`` event per market
per interval, with heartbeats as comments.

Theory of operation
-------------------
An ``EventHub`` has one ticker task (``run``): every ``interval_s`` it asks ``frames()`` for
the events of every market, encoded once, and offers the same bytes objects to every reader.
A reader is one HTTP response (``serve``) with its own bounded memory channel of frames; a
writer task moves frames from the channel to the connection. Offering never waits: when a
reader's channel is full (it is not reading, so its socket and then its channel filled up) the
reader is dropped: its channel is closed, what it had queued is discarded and its response is
ended (a browser's EventSource then reconnects), and the ticker goes on to the next reader. A
stalled reader therefore holds at most ``max_queued`` frames, and those are the very bytes
objects every other reader holds too; a node serves at most ``max_readers``. A writer stuck
in a write to a peer that takes nothing stays stuck until the peer reads or the kernel aborts
the connection (``api.server``'s send timeout), holding one frame.

A new reader gets the latest frames at once, so a page has data before the next tick; every
``heartbeat_s`` a comment line keeps idle proxies from closing the stream. ``close`` (the
node's shutdown) ends every response, so a graceful stop never waits for a stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog
import trio

log = structlog.get_logger("marketplace.web")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_HEARTBEAT: Final = b": heartbeat\n\n"


class HubSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How often the hub ticks and how much it lets one reader hold."""

    interval_s: float = 1.0
    heartbeat_s: float = 15.0
    #: Frames one reader may have queued before it is dropped.
    max_queued: int = 16
    max_readers: int = 64


def sse_frame(event: str, data: bytes) -> bytes:
    """One SSE event (``data`` is one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class _Reader:
    __slots__ = ("channel", "dropped", "queued_bytes")

    def __init__(self, channel: trio.MemorySendChannel[bytes]) -> None:
        self.channel = channel
        self.dropped = False
        self.queued_bytes = 0


class EventHub:
    """The live feed's ticker and its readers (see the module doc)."""

    def __init__(
        self, *, frames: Callable[[], list[bytes]], settings: HubSettings | None = None
    ) -> None:
        self._frames = frames
        self.settings = settings or HubSettings()
        self._readers: set[_Reader] = set()
        self._latest: list[bytes] = []
        self._closed = False
        self._streams = 0
        self._streams_changed = trio.Event()
        #: Readers dropped for not keeping up, since start.
        self.dropped = 0
        #: The most bytes all readers' channels held at once (a test reads it).
        self.peak_queued_bytes = 0

    @property
    def readers(self) -> int:
        """Readers being offered frames now."""
        return len(self._readers)

    @property
    def streams(self) -> int:
        """Responses still open, a dropped reader's included until its connection lets go."""
        return self._streams

    async def wait_streams(self, *, at_most: int) -> None:
        """Wait until at most ``at_most`` responses are open."""
        while self._streams > at_most:
            await self._streams_changed.wait()

    def queued_bytes(self) -> int:
        """Bytes waiting in every reader's channel now (shared frames counted per reader)."""
        return sum(r.queued_bytes for r in self._readers)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Tick until cancelled (see the module doc)."""
        settings = self.settings
        next_heartbeat = trio.current_time() + settings.heartbeat_s
        self._latest = self._frames()
        task_status.started()
        deadline = trio.current_time()
        while True:
            deadline += settings.interval_s
            await trio.sleep_until(deadline)
            self._latest = self._frames()
            self._offer(self._latest)
            if trio.current_time() >= next_heartbeat:
                next_heartbeat += settings.heartbeat_s
                self._offer([_HEARTBEAT])

    def _offer(self, frames: list[bytes]) -> None:
        for reader in list(self._readers):
            for frame in frames:
                try:
                    reader.channel.send_nowait(frame)
                except trio.WouldBlock:
                    self._drop(reader)
                    break
                except trio.BrokenResourceError:  # its response is over
                    break
                reader.queued_bytes += len(frame)
        self.peak_queued_bytes = max(self.peak_queued_bytes, self.queued_bytes())

    def _drop(self, reader: _Reader) -> None:
        # What it has queued is discarded: its writer ends the response instead of sending it.
        self._readers.discard(reader)
        reader.dropped = True
        reader.channel.close()
        self.dropped += 1
        log.info("events.reader_dropped", queued_bytes=reader.queued_bytes)

    def close(self) -> None:
        """End every response and refuse new readers (the node is stopping)."""
        self._closed = True
        for reader in list(self._readers):
            self._readers.discard(reader)
            reader.channel.close()

    async def serve(self, receive: Receive, send: Send) -> None:
        """Answer one ``GET /events`` until the client goes, is dropped, or ``close``. A
        dropped reader's response is ended (the client may reconnect and start afresh)."""
        if self._closed or len(self._readers) >= self.settings.max_readers:
            body = b"too many readers\n" if not self._closed else b"stopping\n"
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        sender, frames = trio.open_memory_channel[bytes](self.settings.max_queued)
        reader = _Reader(sender)
        self._readers.add(reader)
        self._streams += 1
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            for frame in self._latest:
                sender.send_nowait(frame)
                reader.queued_bytes += len(frame)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                async with frames:
                    async for frame in frames:
                        if reader.dropped:
                            break
                        reader.queued_bytes -= len(frame)
                        await send({"type": "http.response.body", "body": frame, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                nursery.cancel_scope.cancel()
        finally:
            self._readers.discard(reader)
            sender.close()
            self._streams -= 1
            self._streams_changed.set()
            self._streams_changed = trio.Event()


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
