"""The loop that runs inside each hashing process, and the messages it exchanges.

Theory of operation
-------------------
The trio main (``workers.processes``) owns the work. It numbers every change of the work set
with a *generation*, stores that number in a shared integer, then sends the whole set
(``SetWork``: one ``Work`` per fleet slot that has work) down each process's pipe. A process
hashes its own slice of the nonce space (``hashing.nonce_range``) for every slot in turn, one
chunk at a time, rolling extranonce2 when its slice is exhausted. Between chunks it reads the
shared generation: a memory read, so it can afford to do it every chunk. Chunks are sized from
their measured duration to take about ``chunk_seconds`` (20 ms), so stale work stops within
that time after a change, far inside the 100 ms the brief allows. When the generation moved,
the process reads messages until it has the set of that generation; a slot whose ``work_id``
is unchanged keeps its scan position (restarting it would re-find the same shares: duplicates).

Up the pipe go ``Switched`` (the generation now hashed), ``Found`` (one share, tagged with its
generation and ``work_id`` so the main can drop stale ones) and ``HashCount`` (hashes per slot
since the last report, every ``report_seconds``). A process exits on ``Stop``, on EOF of its
pipe, or when its parent is gone.

Nothing here imports trio: the process starts fast and stays small.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from stratum.core.shares import Algorithm
from workers.hashing import Work, header_prefix_for, nonce_hex, nonce_range, scan

#: Initial nonces per chunk; adapted from the measured speed after the first chunk.
_FIRST_CHUNK: Final = {Algorithm.SHA256D: 2048, Algorithm.SCRYPT: 4}
_MAX_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class SetWork:
    """Main -> process: the whole work set of ``generation`` (slots without work omitted)."""

    generation: int
    works: tuple[Work, ...]


@dataclass(frozen=True, slots=True)
class Stop:
    """Main -> process: exit now."""


@dataclass(frozen=True, slots=True)
class Ready:
    """Process -> main: started, waiting for work."""

    index: int
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """Process -> main: a nonce that meets the work's target."""

    generation: int
    work_id: int
    slot: int
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str


@dataclass(frozen=True, slots=True)
class Switched:
    """Process -> main: now hashing the set of ``generation`` (lets the main measure how fast
    stale work stops)."""

    index: int
    generation: int


@dataclass(frozen=True, slots=True)
class HashCount:
    """Process -> main: hashes done per slot since the previous report."""

    index: int
    counts: dict[int, int] = field(default_factory=dict)


class SlotScan:
    """One slot's position inside this process's slice: extranonce2 and next nonce."""

    __slots__ = ("exhausted", "extranonce2", "next_nonce", "prefix", "start", "stop", "work")

    def __init__(self, work: Work, start: int, stop: int) -> None:
        self.work = work
        self.start = start
        self.stop = stop
        self.extranonce2 = 0
        self.next_nonce = start
        self.prefix = header_prefix_for(work, 0)
        self.exhausted = False

    def take(self, count: int) -> tuple[bytes, int, int, int]:
        """Claim the next ``count`` nonces: (prefix, extranonce2, start, stop)."""
        first = self.next_nonce
        last = min(first + count, self.stop)
        claimed = (self.prefix, self.extranonce2, first, last)
        self.next_nonce = last
        if last >= self.stop:
            self._roll_extranonce2()
        return claimed

    def _roll_extranonce2(self) -> None:
        self.extranonce2 += 1
        if self.extranonce2 >= self.work.extranonce2_space:
            # Every (extranonce2, nonce) of this slice is done: wait for the next job.
            self.exhausted = True
            return
        self.prefix = header_prefix_for(self.work, self.extranonce2)
        self.next_nonce = self.start


def hasher_main(
    conn: Connection,
    generation: Any,
    index: int,
    count: int,
    chunk_seconds: float = 0.02,
    report_seconds: float = 0.25,
) -> None:
    """Process entry point: hash until told to stop (see the module docstring).

    ``generation`` is a shared ``multiprocessing`` unsigned integer (``.value``).
    """
    # Ctrl-C reaches the whole process group: the main decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    start, stop = nonce_range(index, count)
    scans: dict[int, SlotScan] = {}
    current = 0
    chunk = dict(_FIRST_CHUNK)
    counts: dict[int, int] = {}
    turn = 0
    perf = time.perf_counter
    last_report = perf()
    conn.send(Ready(index, os.getpid()))
    try:
        while True:
            active = [s for s in scans.values() if not s.exhausted]
            wanted = generation.value
            if current != wanted or not active:
                if counts:
                    conn.send(HashCount(index, counts))
                    counts = {}
                # Block until the set of the wanted generation is here (or any, when idle).
                while True:
                    message = conn.recv()
                    if isinstance(message, Stop):
                        return
                    if isinstance(message, SetWork):
                        current = message.generation
                        scans = _rebuild(scans, message.works, start, stop)
                    if current >= generation.value and not conn.poll():
                        break
                conn.send(Switched(index, current))
                continue
            scan_state = active[turn % len(active)]
            turn += 1
            work = scan_state.work
            algorithm = work.algorithm
            prefix, extranonce2, first, last = scan_state.take(chunk[algorithm])
            began = perf()
            nonces = scan(algorithm, prefix, first, last, work.target)
            elapsed = perf() - began
            counts[work.slot] = counts.get(work.slot, 0) + (last - first)
            for nonce in nonces:
                conn.send(
                    Found(
                        generation=current,
                        work_id=work.work_id,
                        slot=work.slot,
                        job_id=work.job_id,
                        extranonce2=work.extranonce2_hex(extranonce2),
                        ntime=work.ntime_hex,
                        nonce=nonce_hex(nonce),
                    )
                )
            if last - first == chunk[algorithm]:
                chunk[algorithm] = _next_chunk(chunk[algorithm], elapsed, chunk_seconds)
            now = perf()
            if now - last_report >= report_seconds:
                last_report = now
                if counts:
                    conn.send(HashCount(index, counts))
                    counts = {}
                if os.getppid() != parent:
                    return
    except (EOFError, BrokenPipeError, ConnectionResetError):
        # The main is gone or stopping us: nothing to report to.
        return


def _rebuild(
    scans: dict[int, SlotScan], works: tuple[Work, ...], start: int, stop: int
) -> dict[int, SlotScan]:
    rebuilt: dict[int, SlotScan] = {}
    for work in works:
        kept = scans.get(work.slot)
        if kept is not None and kept.work.work_id == work.work_id:
            rebuilt[work.slot] = kept
        else:
            rebuilt[work.slot] = SlotScan(work, start, stop)
    return rebuilt


def _next_chunk(chunk: int, elapsed: float, chunk_seconds: float) -> int:
    # Move towards the size that takes chunk_seconds, by at most x2 or /2 per step (noise).
    ideal = chunk * 2 if elapsed <= 0 else int(chunk * chunk_seconds / elapsed)
    return max(1, chunk // 2, min(ideal, chunk * 2, _MAX_CHUNK))
