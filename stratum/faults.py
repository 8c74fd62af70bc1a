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

import random
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

import trio

from stratum.core.jobs import MinerLink
from stratum.core.shares import Algorithm

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


class FaultSpec(Protocol):
    """One Stratum fault as set (control.md): where it applies, its seed, what it injects
    (``None``: not that). The operator API's ``StratumFault`` and the gateway link's
    ``LinkFault`` both are one."""

    @property
    def algorithm(self) -> Algorithm | None: ...
    @property
    def worker(self) -> str | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def latency_ms(self) -> int | None: ...
    @property
    def drop_after_s(self) -> float | None: ...
    @property
    def reject_rate(self) -> float | None: ...
    @property
    def stall(self) -> bool | None: ...
    @property
    def junk_rate(self) -> float | None: ...


class Named(Protocol):
    """What a fault is matched against: a connection's id and first worker."""

    @property
    def conn_id(self) -> int: ...
    @property
    def account(self) -> str: ...
    @property
    def worker(self) -> str: ...


class Droppable(Named, Protocol):
    """A connection a ``drop_after_s`` fault may close."""

    @property
    def opened_at(self) -> float: ...


C = TypeVar("C", bound=Droppable)


class Streams:
    """One seeded random stream per (kind of decision, worker)."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._streams: dict[tuple[str, str], random.Random] = {}

    def chance(self, kind: str, worker: str, rate: float | None) -> bool:
        """True with probability ``rate`` (the stream of ``kind`` and ``worker``)."""
        if not rate:
            return False
        stream = self._streams.get((kind, worker))
        if stream is None:
            stream = self._streams[(kind, worker)] = random.Random(f"{self._seed}/{kind}/{worker}")
        return stream.random() < rate


def _worker_of(link: Named) -> str:
    """The name a connection's decisions are drawn for: its worker, else anonymous."""
    return f"{link.account}.{link.worker}" if link.account else ""


class _StratumFault:
    """One Stratum fault in force, with its random streams."""

    def __init__(self, params: FaultSpec, *, set_at: float) -> None:
        self.params = params
        self.set_at = set_at
        self.streams = Streams(params.seed)

    def applies(self, link: Named, algorithm: Algorithm | None) -> bool:
        params = self.params
        if params.algorithm is not None and params.algorithm is not algorithm:
            return False
        if params.worker is None:
            return True
        if params.worker.startswith("conn:"):
            return params.worker == f"conn:{link.conn_id}"
        return params.worker == _worker_of(link)


class StratumTarget:
    """The Stratum faults in force, as the servers ask them (``stratum.faults.LinkFaults``)."""

    def __init__(self) -> None:
        self.faults: dict[tuple[Algorithm | None, str | None], _StratumFault] = {}

    def set(self, params: FaultSpec, *, set_at: float) -> None:
        """Inject ``params`` from trio time ``set_at`` (replacing one for the same place)."""
        self.faults[(params.algorithm, params.worker)] = _StratumFault(params, set_at=set_at)

    def _applying(self, link: Named) -> Iterable[_StratumFault]:
        algorithm: Algorithm | None = getattr(link, "algorithm", None)
        return (f for f in self.faults.values() if f.applies(link, algorithm))

    def latency_s(self, link: MinerLink) -> float:
        return max((f.params.latency_ms or 0 for f in self._applying(link)), default=0) / 1000

    def junk_before_line(self, link: MinerLink) -> bool:
        worker = _worker_of(link)
        return any(
            f.streams.chance("junk", worker, f.params.junk_rate) for f in self._applying(link)
        )

    def reject_share(self, link: MinerLink) -> bool:
        worker = _worker_of(link)
        return any(
            f.streams.chance("reject", worker, f.params.reject_rate) for f in self._applying(link)
        )

    def stalled(self, link: MinerLink) -> bool:
        return any(f.params.stall for f in self._applying(link))

    def due_drops(self, connections: Iterable[C], now: float) -> list[C]:
        """The connections a ``drop_after_s`` fault wants closed at trio time ``now``."""
        due = []
        for conn in connections:
            for fault in self._applying(conn):
                after = fault.params.drop_after_s
                if after is not None and max(conn.opened_at, fault.set_at) + after <= now:
                    due.append(conn)
                    break
        return due

    @property
    def drops(self) -> bool:
        """Whether a ``drop_after_s`` fault is set."""
        return any(f.params.drop_after_s is not None for f in self.faults.values())
