"""The trio side of the hashing processes: start them, hand out work, collect results.

``HashingPool`` runs as a service (``await nursery.start(pool.run)``): it spawns the processes
(``spawn`` context: safe with trio, nothing inherited but what we pass), waits until each says
``Ready``, then reads every process's pipe with ``trio.lowlevel.wait_readable`` so no thread is
needed. ``set_work(slot, work)`` bumps the shared generation *before* sending the new set, so a
process notices within one chunk even before the message is read (see ``workers.hasher``).

Shares come back tagged with the ``work_id`` they were found on. A slot's submittable work ids
are kept here: a clean job, a new extranonce or a disconnect empties the set, so a share found
on stale work is dropped here and never reaches the server. Accepted shares go to the slot's
channel (``found_channel(slot)``); a slot that does not keep up loses shares, it never blocks
the pool.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any, Final

import structlog
import trio

from workers.hasher import Found, HashCount, Ready, SetWork, Stop, Switched, hasher_main
from workers.hashing import Work

log = structlog.get_logger("workers.processes")

#: A non-clean job keeps older jobs of the slot submittable; only this many of them.
_KEEP_JOBS: Final = 4


class HashingProcessDied(Exception):
    """A hashing process exited while the pool was running."""


class HashingPool:
    """``processes`` hashing processes shared by every fleet slot."""

    def __init__(
        self,
        *,
        processes: int,
        chunk_seconds: float = 0.02,
        report_seconds: float = 0.25,
        start_timeout: float = 60.0,
    ) -> None:
        if processes < 1:
            raise ValueError("at least one hashing process is needed")
        self.processes = processes
        self._chunk_seconds = chunk_seconds
        self._report_seconds = report_seconds
        self._start_timeout = start_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._generation_value: Any = self._ctx.Value("Q", 0, lock=False)
        self._generation = 0
        self._works: dict[int, Work] = {}
        self._valid: dict[int, list[int]] = {}
        self._found: dict[int, trio.MemorySendChannel[Found]] = {}
        self._conns: list[Connection] = []
        self._procs: list[SpawnProcess] = []
        #: Hashes done per slot since start.
        self.hashes_by_slot: dict[int, int] = {}
        #: Shares dropped because their work went stale before they arrived.
        self.stale_dropped = 0
        self.pids: list[int] = []
        #: Per process: the generation it hashes now.
        self.acknowledged: dict[int, int] = {}
        #: Seconds between ``set_work`` and each process's switch, the latest per process.
        self.switch_latency: dict[int, float] = {}
        self._set_at: dict[int, float] = {}

    # ------------------------------------------------------------------ API

    @property
    def generation(self) -> int:
        """The number of the current work set."""
        return self._generation

    @property
    def total_hashes(self) -> int:
        """Hashes done by all processes for all slots."""
        return sum(self.hashes_by_slot.values())

    def found_channel(self, slot: int, *, buffer: int = 64) -> trio.MemoryReceiveChannel[Found]:
        """A fresh channel of the slot's valid shares (replaces any earlier one)."""
        send, receive = trio.open_memory_channel[Found](buffer)
        old = self._found.get(slot)
        if old is not None:
            old.close()
        self._found[slot] = send
        return receive

    def set_work(self, slot: int, work: Work | None, *, clean: bool = True) -> None:
        """Make ``work`` the slot's work (None: the slot stops hashing).

        ``clean`` false keeps shares of the slot's previous jobs submittable (a ``mining.notify``
        with ``clean_jobs=false``); true drops them from now on.
        """
        if work is None:
            self._works.pop(slot, None)
            self._valid[slot] = []
        else:
            if work.slot != slot:
                raise ValueError(f"work for slot {work.slot} given to slot {slot}")
            self._works[slot] = work
            kept = [] if clean else self._valid.get(slot, [])[-(_KEEP_JOBS - 1) :]
            self._valid[slot] = [*kept, work.work_id]
        self._generation += 1
        self._set_at = {self._generation: time.perf_counter()}
        self._generation_value.value = self._generation
        message = SetWork(self._generation, tuple(self._works.values()))
        for conn in self._conns:
            try:
                conn.send(message)
            except OSError as exc:  # the reader of that pipe will report the death
                log.warning("hasher.send_failed", error=str(exc))

    def is_submittable(self, found: Found) -> bool:
        """True while the share's work is still valid for its slot (not made stale)."""
        return found.work_id in self._valid.get(found.slot, ())

    def current_work(self, slot: int) -> Work | None:
        """The slot's work being hashed, if any."""
        return self._works.get(slot)

    # ------------------------------------------------------------------ service

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the processes, report started once all are ready, run until cancelled.

        Raises ``HashingProcessDied`` if a process dies, ``trio.TooSlowError`` if they do not
        start within ``start_timeout``. Processes are stopped on the way out.
        """
        try:
            ready = trio.Event()

            def one_ready() -> None:
                if len(self.pids) == self.processes:
                    ready.set()

            async with trio.open_nursery() as nursery:
                for index in range(self.processes):
                    parent_end, child_end = self._ctx.Pipe(duplex=True)
                    proc = self._ctx.Process(
                        target=hasher_main,
                        args=(
                            child_end,
                            self._generation_value,
                            index,
                            self.processes,
                            self._chunk_seconds,
                            self._report_seconds,
                        ),
                        name=f"hasher-{index}",
                        daemon=True,
                    )
                    await trio.to_thread.run_sync(proc.start)
                    child_end.close()
                    self._conns.append(parent_end)
                    self._procs.append(proc)
                    nursery.start_soon(self._read, index, parent_end, one_ready)
                with trio.fail_after(self._start_timeout):
                    await ready.wait()
                if self._works:  # work set before the processes were up
                    message = SetWork(self._generation, tuple(self._works.values()))
                    for conn in self._conns:
                        conn.send(message)
                log.info("hasher.started", processes=self.processes, pids=self.pids)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self._stop()

    async def _read(self, index: int, conn: Connection, on_ready: Callable[[], None]) -> None:
        while True:
            await trio.lowlevel.wait_readable(conn.fileno())
            while conn.poll():
                try:
                    message = conn.recv()
                except (EOFError, OSError) as exc:
                    raise HashingProcessDied(f"hashing process {index} exited") from exc
                self._handle(message, on_ready)

    def _handle(self, message: object, on_ready: Callable[[], None]) -> None:
        if isinstance(message, HashCount):
            for slot, count in message.counts.items():
                self.hashes_by_slot[slot] = self.hashes_by_slot.get(slot, 0) + count
        elif isinstance(message, Found):
            if not self.is_submittable(message):
                self.stale_dropped += 1
                log.debug("share.stale_dropped", slot=message.slot, job=message.job_id)
                return
            channel = self._found.get(message.slot)
            if channel is None:
                return
            try:
                channel.send_nowait(message)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("share.dropped", slot=message.slot, reason="consumer not keeping up")
        elif isinstance(message, Switched):
            self.acknowledged[message.index] = message.generation
            set_at = self._set_at.get(message.generation)
            if set_at is not None:
                self.switch_latency[message.index] = time.perf_counter() - set_at
        elif isinstance(message, Ready):
            self.pids.append(message.pid)
            on_ready()

    async def _stop(self) -> None:
        # A generation that is never sent makes every process read its pipe, and find Stop.
        self._generation_value.value = self._generation + 1
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(Stop())
        deadline = trio.current_time() + 2.0
        for proc in self._procs:
            left = max(0.0, deadline - trio.current_time())
            await trio.to_thread.run_sync(proc.join, left)
            if proc.is_alive():
                proc.terminate()
                await trio.to_thread.run_sync(proc.join, 1.0)
            if proc.is_alive():  # pragma: no cover - terminate is enough on Unix
                proc.kill()
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._procs.clear()


def default_processes() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
