"""The seam through which a Stratum server misbehaves on purpose: injected faults.

A test of a miner or a proxy needs a pool that goes slow, drops connections, answers stale,
stops sending work or sends junk, on cue and repeatably (the marketplace's control.md).
``StratumServer.faults`` holds an object with these four questions, asked per connection at
the moment they matter; ``None`` (the default) injects nothing and costs nothing. The answers
(and their randomness) are the implementer's (``marketplace.control.faults``); dropping a
connection after a while needs no hook here: the implementer calls ``Connection.drop``.
``HeldLines`` is how a connection carries out a latency: the lines it holds back, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import trio

from stratum.core.jobs import MinerLink

#: What precedes a line when ``junk_before_line`` says so: not JSON, as a broken pool sends.
JUNK_LINE: Final = b"}{ injected fault: this line is not JSON\n"


class LinkFaults(Protocol):
    """Injected misbehaviour towards one connection's miner."""

    def latency_s(self, link: MinerLink) -> float:
        """How long every line sent to ``link`` is held back now (0: not at all)."""
        ...

    def junk_before_line(self, link: MinerLink) -> bool:
        """Whether the next line sent to ``link`` is preceded by ``JUNK_LINE``."""
        ...

    def reject_share(self, link: MinerLink) -> bool:
        """Whether ``link``'s next otherwise valid share is answered 21 stale (uncharged)."""
        ...

    def stalled(self, link: MinerLink) -> bool:
        """Whether new jobs for ``link`` are withheld, as a dead pool would."""
        ...


class HeldLines:
    """Chunks of lines an injected latency holds back, each with the time it is due, let go in
    order by ``run`` (a task the connection starts on first use) through ``write``."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._chunks: deque[tuple[float, bytes]] = deque()
        self._wakeup = trio.Event()
        #: Whether the connection has started ``run``.
        self.started = False

    def __bool__(self) -> bool:
        """Whether anything is held: later lines must queue behind it to keep their order."""
        return bool(self._chunks)

    def hold(self, data: bytes, *, delay_s: float) -> None:
        """Hold ``data`` back for ``delay_s`` from now (and behind everything held before)."""
        self._chunks.append((trio.current_time() + delay_s, data))
        self._wakeup.set()

    async def run(self) -> None:
        """Write each chunk when it is due, in order, until cancelled."""
        while True:
            while not self._chunks:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            due, data = self._chunks[0]
            await trio.sleep_until(due)
            if self._chunks and self._chunks[0][1] is data:
                self._chunks.popleft()
                self._write(data)

    def release(self) -> None:
        """The connection is closing: everything held goes out now, in order."""
        while self._chunks:
            self._write(self._chunks.popleft()[1])
