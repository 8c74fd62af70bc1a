"""The trio driver of the Stratum server: sockets, tasks and clocks around ``ServerSession``.

Each accepted connection gets one nursery with one reader and one writer task. The reader feeds
the sans-I/O session every read and carries out the outcomes of all the complete lines it
brought in order (record their shares, together, then queue each reply, then the first job or
vardiff follow-ups), then flushes once; shares the work source cannot record
(``ShareNotRecorded``: its storage is failing) are answered with that refusal instead, and the
connection goes on. The writer owns the socket, so lines never
interleave: bytes to send go to it through one bounded queue, except when it is idle with
nothing queued, when they are written at once with one non-blocking send (a batch's replies
then cost no task switch) and only what the kernel did not take is queued. If the queue grows past
``send_queue_bytes`` or a send blocks for ``send_timeout_s``, the peer is not reading and is
disconnected; nobody ever waits for it. An exception escaping a connection is logged and
closes that connection only. Every connection logs one ``conn.closed`` summary.

``Connection`` is the ``MinerLink`` a ``WorkSource`` gets: ``push_job`` and ``change_layout``
never block, and the marketplace may also ``show_message``, ``reconnect``, ``set_difficulty``,
``close`` or ``drop``.

Injected faults (``stratum.faults``, set as ``StratumServer.faults``) are asked where they
act: before a line goes out (junk before it; a latency that holds it back, in order, in a
queue of its own drained by a task started on first use), before a job is sent (a stall
withholds it), and by the session before a valid share is accepted (answered stale instead).
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog
import trio

from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, ShareNotRecorded, WorkSource
from stratum.core.messages import Method, notification_line
from stratum.core.registries import ExtranonceAllocator, JobIds, SubmittedShares
from stratum.core.session import ServerSession
from stratum.core.session_types import Outcome
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason, SessionState
from stratum.faults import JUNK_LINE, HeldLines, LinkFaults
from stratum.listeners import open_shared_listeners

Clock = Callable[[], int]

log = structlog.get_logger("stratum.server")

#: The answer to a share whose recording was cancelled before it began (the connection's
#: deadline or its closing came while the work source waited for room).
NOT_RECORDED: Final = "share not recorded, retry"


def trio_wall_clock() -> Clock:
    """Milliseconds since the epoch that advance with trio's clock (so MockClock drives them).

    Must be called inside ``trio.run``.
    """
    offset = time.time() - trio.current_time()
    return lambda: int((trio.current_time() + offset) * 1000)


@dataclass
class ServerStats:
    """Totals since the server started (live connections: ``StratumServer.live_connections``)."""

    connections_total: int = 0
    shares_accepted: int = 0
    shares_rejected: dict[str, int] = field(default_factory=dict)
    #: Submits the work source could not record (its storage failing), answered with its refusal.
    shares_not_recorded: int = 0
    closed: dict[str, int] = field(default_factory=dict)


class Connection:
    """One miner connection; the ``MinerLink`` its work source holds."""

    def __init__(
        self,
        *,
        server: StratumServer,
        stream: trio.SocketStream,
        conn_id: int,
        peer: str,
    ) -> None:
        config = server.config
        self._server = server
        self._stream = stream
        self._conn_id = conn_id
        self.peer = peer
        self.session = ServerSession(
            conn_id=conn_id,
            config=server.session_config,
            extranonces=server.extranonces,
            now_ms=server.clock(),
            job_ids=server.job_ids,
            submitted=server.submitted,
            layouts=server.work_source.layout_for,
        )
        self.session.submits.veto_share = self._veto_share
        #: When the connection opened, on trio's clock.
        self.opened_at = trio.current_time()
        self.reason: CloseReason | None = None
        self.bytes_sent = 0
        self._send_channel, self._receive_channel = trio.open_memory_channel[bytes](
            config.send_queue_items
        )
        self._queued_bytes = 0
        self._writer_busy = False  # the writer holds bytes it has not finished sending
        self._fd = stream.socket.fileno()  # -1 once the connection is over: no direct writes
        self._out = bytearray()
        self._in_batch = False
        self._shares_in_batch = 0
        self._linked = False
        self._reader_scope = trio.CancelScope()
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._held = HeldLines(self._write)  # what an injected latency holds back

    # ----------------------------------------------------------------------- MinerLink

    @property
    def conn_id(self) -> int:
        """The server-wide connection number."""
        return self._conn_id

    @property
    def account(self) -> str:
        """The account of the first authorized worker ("" before authorize)."""
        worker = self.session.first_worker
        return worker.account if worker else ""

    @property
    def worker(self) -> str:
        """The worker name of the first authorized worker ("" before authorize)."""
        worker = self.session.first_worker
        return worker.worker if worker else ""

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the writer (the kernel has not taken them yet)."""
        return self._queued_bytes

    @property
    def difficulty(self) -> float:
        """The share difficulty in force for the next job."""
        return self.session.difficulty

    @property
    def algorithm(self) -> Algorithm:
        """The listener's algorithm."""
        return self._server.config.algorithm

    @property
    def session_id(self) -> bytes:
        """The connection's own id, what a resuming miner asks for (b"" before subscribe)."""
        return self.session.session_id or b""

    @property
    def extranonce_subscribed(self) -> bool:
        """Whether the miner sent ``mining.extranonce.subscribe``."""
        return self.session.extranonce_subscribed

    def push_job(self, job: Job) -> None:
        """Queue ``job`` (with ``set_difficulty`` first if needed). Never blocks."""
        if self.session.state is SessionState.AUTHORIZED and not self._stalled():
            self._send(self.session.send_job(job, self._server.clock()))

    def show_message(self, text: str) -> None:
        """Queue a ``client.show_message``."""
        if self.session.state is not SessionState.CLOSED:
            self._send(notification_line(Method.SHOW_MESSAGE, [text]))

    def reconnect(
        self, *, host: str | None = None, port: int | None = None, wait_s: int = 0
    ) -> None:
        """Ask the miner to reconnect (to ``host``/``port``; default: the address it connected
        to), then close gracefully."""
        if self.session.state is not SessionState.CLOSED:
            if host is None:
                # cpuminer ignores a reconnect without host and port: name our own address.
                host, port = self.local_address
            self._send(notification_line(Method.RECONNECT, [host, port, wait_s]))
            self.close(CloseReason.KICKED)

    def set_difficulty(self, difficulty: float) -> None:
        """Set the share difficulty now (vardiff resumes from it) and send it with a job."""
        if self.session.state is not SessionState.CLOSED:
            self._send(self.session.set_difficulty(difficulty, self._server.clock()))

    @property
    def local_address(self) -> tuple[str, int]:
        """The address and port the miner connected to."""
        try:
            host, port = self._stream.socket.getsockname()[:2]
        except OSError:
            return self._server.config.host, self._server.port or 0
        return str(host), int(port)

    def change_layout(self, layout: Layout | None, job: Job) -> bool:
        """Move to ``layout`` and send ``job`` under it (``MinerLink.change_layout``); False,
        with nothing sent, when the miner cannot take a new extranonce in place. A connection
        that is not authorized (or no longer open) takes nothing, as with ``push_job``."""
        if self.session.state is not SessionState.AUTHORIZED:
            return True
        data = self.session.change_layout(layout, job, self._server.clock())
        if data is None:
            return False
        self._send(data)
        return True

    def close(self, reason: CloseReason = CloseReason.KICKED) -> None:
        """Stop reading, flush what is queued (bounded by the send timeout), then close."""
        if self.reason is None:
            self.reason = reason
        self._reader_scope.cancel()

    def drop(self) -> None:
        """Close at once, without flushing anything: an injected fault (the pool vanished)."""
        self._abort(CloseReason.DROPPED)

    # ----------------------------------------------------------------------- tasks

    async def run(self) -> None:
        """Serve the connection until it closes; returns normally on every kind of close."""
        config = self._server.config
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            self._nursery = nursery
            nursery.start_soon(self._writer)
            try:
                with self._reader_scope:
                    await self._reader()
                self._flush()
                self._held.release()
                self._send_channel.close()
                nursery.cancel_scope.deadline = min(
                    nursery.cancel_scope.deadline, trio.current_time() + config.send_timeout_s
                )
            finally:
                self._fd = -1

    async def _reader(self) -> None:
        """Receive and handle bytes until the connection must close; ``tick`` at deadlines.

        Reads the socket itself (``wait_readable``, then one ``os.read``) rather than through
        the stream: trio's ``receive_some`` tries a read first and yields after one that
        succeeds, so each request cost an extra read that failed and an extra trip through
        the scheduler. Waiting first also keeps a connection that floods lines from starving
        the others.

        One cancel scope carries the session's next deadline across many receives (entering a
        scope per receive costs more than the rest of a share's handling). It is moved only
        when the session's deadline comes earlier: a deadline that passes early finds nothing
        due (``tick`` answers ``None``) and the scope is set again. It also spans the shares'
        recording, which it cannot cut short: ``record_shares`` can be cancelled only before
        it records anything (see ``_handle``), and after that the deadline waits for it.
        """
        fd = self._fd
        size = self._server.config.receive_size
        while True:
            data: bytes | None = None
            with trio.CancelScope(deadline=self._deadline()) as waiting:
                while True:
                    await trio.lowlevel.wait_readable(fd)
                    try:
                        data = os.read(fd, size)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._set_reason(CloseReason.PEER_GONE)
                        return
                    if waiting.cancel_called:
                        break  # the deadline passed as the bytes came: handle them outside
                    # Handed over: a deadline that cuts the handling short must not see them.
                    received, data = data, None
                    if await self._handle(received):
                        return
                    deadline = self._deadline()
                    if deadline < waiting.deadline:
                        waiting.deadline = deadline
            if await self._handle(data):
                return

    def _deadline(self) -> float:
        """The session's next deadline on trio's clock."""
        session_ms = self.session.next_deadline_ms() - self._server.clock()
        return trio.current_time() + session_ms / 1000

    async def _handle(self, data: bytes | None) -> bool:
        """Feed ``data`` to the session (``None``: its deadline passed), carry out what it says
        for every complete line, then flush; True when the connection must close.

        The lines are handled as one batch: the shares among them are recorded together (one
        command, one durable write) and everything the batch answers goes out in line order
        with one write, so a miner that pipelines its submits costs one wake-up, one record
        and one send per read, not per line. What the lines before the first share answer
        goes out before the record, as anything pushed meanwhile does; the rest waits for it.
        """
        session = self.session
        clock = self._server.clock
        self._in_batch = True
        self._shares_in_batch = 0
        observer = self._server.share_ack_observer
        received = 0.0 if observer is None else time.perf_counter()
        try:
            if data is None:
                outcome = session.tick(clock())
                return outcome is not None and self._carry_out(outcome)
            session.receive_data(data)
            now = clock()
            batch: list[Outcome] = []
            recorded: list[Outcome] = []
            while (outcome := session.next_outcome(now)) is not None:
                if outcome.share is not None:
                    recorded.append(outcome)
                if recorded:
                    batch.append(outcome)
                elif self._carry_out(outcome):
                    return True
            if recorded:
                self._shares_in_batch = len(recorded)
                try:
                    await self._record(recorded)
                except trio.Cancelled:
                    # Before anything was recorded (``_record`` answered the shares as not
                    # recorded): the batch is answered all the same, then the cancellation
                    # (a deadline, or the connection closing) goes on.
                    for outcome in batch:
                        self._carry_out(outcome)
                    raise
            return any(self._carry_out(outcome) for outcome in batch)
        finally:
            self._in_batch = False
            self._flush()
            if self._shares_in_batch and observer is not None:
                observer(time.perf_counter() - received, self._shares_in_batch)

    def _carry_out(self, outcome: Outcome) -> bool:
        """Do what one outcome says (its share already recorded); True when the connection
        must close."""
        if outcome.refused_submit is not None:
            self._count_rejected(outcome.refused_submit)
        self._out += outcome.reply
        if outcome.start_work:
            worker = self.session.first_worker
            structlog.contextvars.bind_contextvars(
                worker=f"{worker.account}.{worker.worker}" if worker else None
            )
            job = self._server.work_source.connect(self)
            self._linked = True
            if job is not None and not self._stalled():
                self._out += self.session.send_job(job, self._server.clock())
            log.info("conn.authorized", difficulty=self.session.difficulty)
        self._out += outcome.followups
        if outcome.error is not None and outcome.method != "mining.submit":
            log.info(
                "request.refused",
                method=outcome.method,
                code=int(outcome.error.code),
                message=outcome.error.message,
            )
        if outcome.close is not None:
            self._set_reason(outcome.close)
            if outcome.close is not CloseReason.PEER_CLOSED:
                log.warning("conn.closing", reason=outcome.close.value, detail=outcome.detail)
            return True
        return False

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Record the shares of ``outcomes`` in one call; a refusal becomes each one's reply.

        What was queued before goes out now; anything pushed while the shares are being
        recorded follows it directly, and the replies wait until the shares are durable.
        Cancelled, the work source has recorded none of them (``WorkSource.record_shares``):
        they are answered as not recorded, and the cancellation goes on.
        """
        shares = [outcome.share for outcome in outcomes if outcome.share is not None]
        stats = self._server.stats
        self._flush()
        self._in_batch = False
        try:
            await self._server.work_source.record_shares(shares)
        except trio.Cancelled:
            for outcome in reversed(outcomes):
                self.session.share_not_recorded(outcome, NOT_RECORDED)
            stats.shares_not_recorded += len(outcomes)
            raise
        except ShareNotRecorded as refused:
            # The miner hears why and may send them again; the connection and its jobs go on.
            for outcome in reversed(outcomes):
                self.session.share_not_recorded(outcome, refused.message)
            stats.shares_not_recorded += len(outcomes)
            log.debug("share.not_recorded", message=refused.message, shares=len(outcomes))
            return
        finally:
            self._in_batch = True
        for share in shares:
            if share.accepted:
                stats.shares_accepted += 1
            else:
                self._count_rejected(share.reason or "other", worker=share.worker)

    def _count_rejected(self, reason: str, *, worker: str | None = None) -> None:
        stats = self._server.stats
        stats.shares_rejected[reason] = stats.shares_rejected.get(reason, 0) + 1
        log.debug("share.rejected", reason=reason, worker=worker)

    async def _writer(self) -> None:
        receive = self._receive_channel
        timeout = self._server.config.send_timeout_s
        while True:
            try:
                chunks = [await receive.receive()]
            except trio.EndOfChannel:
                return
            self._writer_busy = True
            while True:
                try:
                    chunks.append(receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            data = b"".join(chunks)
            self._queued_bytes -= len(data)
            with trio.move_on_after(timeout) as scope:
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._abort(CloseReason.PEER_GONE)
                    return
            if scope.cancelled_caught:
                self._abort(CloseReason.SEND_TIMEOUT)
                return
            self.bytes_sent += len(data)
            self._writer_busy = False

    # ----------------------------------------------------------------------- queue

    def _send(self, data: bytes) -> None:
        if not data:
            return
        self._out += data
        if not self._in_batch:
            self._flush()

    def _flush(self) -> None:
        if not self._out or self.reason in _NO_FLUSH:
            self._out.clear()
            return
        data = bytes(self._out)
        self._out.clear()
        faults = self._server.faults
        if faults is not None:
            data = self._faulted(faults, data)
            if not data:
                return
        self._write(data)

    # ----------------------------------------------------------------------- faults

    def _veto_share(self) -> bool:
        faults = self._server.faults
        return faults is not None and faults.reject_share(self)

    def _stalled(self) -> bool:
        faults = self._server.faults
        return faults is not None and faults.stalled(self)

    def _faulted(self, faults: LinkFaults, data: bytes) -> bytes:
        """``data`` with junk lines injected; ``b""`` when an injected latency holds it back
        (behind whatever it already holds, so lines keep their order)."""
        out = bytearray()
        for line in data.splitlines(keepends=True):
            if faults.junk_before_line(self):
                out += JUNK_LINE
            out += line
        data = bytes(out)
        delay = faults.latency_s(self)
        held, nursery = self._held, self._nursery
        if (delay <= 0 and not held) or nursery is None or self._fd < 0:
            return data
        if not held.started:
            held.started = True
            nursery.start_soon(held.run)
        held.hold(data, delay_s=max(delay, 0.0))
        return b""

    def _write(self, data: bytes) -> None:
        """Write ``data`` at once if the writer is idle, else queue it for the writer."""
        if self._fd >= 0 and not self._writer_busy and not self._queued_bytes:
            # The writer is idle and nothing is queued: nothing can come between these bytes
            # and the ones already sent, so write them now and queue only the rest.
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._abort(CloseReason.PEER_GONE)
                return
            self.bytes_sent += sent
            if sent == len(data):
                return
            data = data[sent:]
        # Bytes the writer has not even picked up yet mean a peer that is not reading; one
        # batch of replies may exceed the bound on its own (the kernel buffer takes it).
        if self._queued_bytes > self._server.config.send_queue_bytes:
            self._abort(CloseReason.SEND_QUEUE_FULL)
            return
        try:
            self._send_channel.send_nowait(data)
        except trio.WouldBlock:
            self._abort(CloseReason.SEND_QUEUE_FULL)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # closing already; nothing more goes out
        self._queued_bytes += len(data)

    def _set_reason(self, reason: CloseReason) -> None:
        if self.reason is None:
            self.reason = reason

    def _abort(self, reason: CloseReason) -> None:
        """Close now, without flushing: the peer is gone or not reading."""
        self._set_reason(reason)
        self._reader_scope.cancel()
        if self._scope is not None:
            self._scope.cancel()

    def finish(self) -> None:
        """Release everything the connection held (extranonce, work source link). Idempotent."""
        self.session.close(self.reason or CloseReason.PEER_CLOSED)
        if self._linked:
            self._linked = False
            self._server.work_source.disconnect(self)


_NO_FLUSH = frozenset(
    {CloseReason.SEND_QUEUE_FULL, CloseReason.SEND_TIMEOUT, CloseReason.PEER_GONE}
)


class StratumServer:
    """A Stratum listener for one algorithm, handing work out from ``work_source``."""

    def __init__(
        self,
        *,
        config: StratumConfig,
        work_source: WorkSource,
        clock: Clock | None = None,
        conn_ids: Iterator[int] | None = None,
    ) -> None:
        if work_source.algorithm is not config.algorithm:
            raise ValueError("work source and config disagree on the algorithm")
        self.config = config
        self.session_config = config.session_config()
        self.work_source = work_source
        self.extranonces = ExtranonceAllocator(
            size=config.extranonce1_size, start=secrets.randbits(8 * config.extranonce1_size)
        )
        self.job_ids = JobIds(start=secrets.randbits(32))
        self.submitted = SubmittedShares()
        self.stats = ServerStats()
        #: Injected faults (``stratum.faults``); ``None``: none, at no cost.
        self.faults: LinkFaults | None = None
        #: Called with the seconds from a batch's bytes received to its replies written (or
        #: handed to the writer) and the number of shares in it, once per batch (its shares
        #: all waited that long); ``None``: not measured.
        self.share_ack_observer: Callable[[float, int], None] | None = None
        self.port: int | None = None
        self._clock = clock
        # Shared between listeners, connection ids are unique in a whole node.
        self._ids = conn_ids if conn_ids is not None else itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._shutdown = trio.Event()

    @property
    def clock(self) -> Clock:
        """The server's time source in epoch milliseconds."""
        if self._clock is None:
            self._clock = trio_wall_clock()
        return self._clock

    @property
    def live_connections(self) -> int:
        """Connections currently open."""
        return len(self._connections)

    def connections(self) -> list[Connection]:
        """A snapshot of the open connections."""
        return list(self._connections.values())

    def clock_jumped(self, delta_ms: int) -> None:
        """The clock jumped ``delta_ms`` forward: every session's peer timers move with it
        (``ServerSession.clock_jumped``), so no connection times out for it."""
        for conn in self._connections.values():
            conn.session.clock_jumped(delta_ms)

    def shutdown(self) -> None:
        """Stop accepting and close every connection within ``shutdown_grace_s``. Idempotent."""
        self._shutdown.set()

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``config.host``/``config.port`` until ``shutdown()`` (or cancellation).

        Reports the list of ``trio.SocketListener`` through ``task_status`` once listening, as
        ``trio.serve_tcp`` does (``config.port`` 0 picks a free port; see ``self.port``).
        Raises ``OSError`` if the address cannot be bound.
        """
        _ = self.clock
        if self.config.reuse_port:
            listeners = await open_shared_listeners(self.config.host, self.config.port)
        else:
            listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info(
            "stratum.listening",
            host=self.config.host,
            port=self.port,
            algorithm=self.config.algorithm.value,
        )
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as acceptor:
                acceptor.start_soon(
                    self._serve_listeners, listeners, connections, name="stratum-acceptor"
                )
                task_status.started(listeners)
                await self._shutdown.wait()
                acceptor.cancel_scope.cancel()
            log.info("stratum.shutting_down", connections=self.live_connections)
            for conn in self.connections():
                conn.close(CloseReason.SHUTDOWN)
            connections.cancel_scope.deadline = trio.current_time() + self.config.shutdown_grace_s
        log.info("stratum.stopped")

    async def _serve_listeners(
        self, listeners: list[trio.SocketListener], connections: trio.Nursery
    ) -> None:
        await trio.serve_listeners(self._handle, listeners, handler_nursery=connections)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn_id = next(self._ids)
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        structlog.contextvars.bind_contextvars(conn=conn_id, peer=peer)
        started = trio.current_time()
        self.stats.connections_total += 1
        conn: Connection | None = None
        try:
            conn = Connection(server=self, stream=stream, conn_id=conn_id, peer=peer)
            self._connections[conn_id] = conn
            await conn.run()
        except Exception:
            # Never let one connection take the listener down.
            log.exception("conn.crashed")
            if conn is not None:
                conn._set_reason(CloseReason.INTERNAL_ERROR)
        finally:
            self._connections.pop(conn_id, None)
            reason = CloseReason.INTERNAL_ERROR
            if conn is not None:
                reason = conn.reason or CloseReason.PEER_CLOSED
                try:
                    conn.finish()
                except Exception:
                    log.exception("conn.disconnect_failed")
                self._log_summary(conn, reason, trio.current_time() - started)
            self.stats.closed[reason.value] = self.stats.closed.get(reason.value, 0) + 1
            await trio.aclose_forcefully(stream)

    def _log_summary(self, conn: Connection, reason: CloseReason, duration: float) -> None:
        session = conn.session
        worker = session.first_worker
        log.info(
            "conn.closed",
            reason=reason.value,
            worker=f"{worker.account}.{worker.worker}" if worker else None,
            user_agent=session.user_agent,
            accepted=session.accepted,
            rejected=sum(session.rejected.values()),
            rejected_by_reason=dict(session.rejected),
            duration_s=round(duration, 3),
            bytes_sent=conn.bytes_sent,
        )


async def serve_stratum(
    *,
    config: StratumConfig,
    work_source: WorkSource,
    host: str | None = None,
    port: int | None = None,
    clock: Clock | None = None,
    conn_ids: Iterator[int] | None = None,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a ``StratumServer`` (``host``/``port`` override the config) until cancelled;
    ``conn_ids`` numbers its connections (default: from 1).

    ``task_status.started`` receives the ``StratumServer`` once it listens (its ``port`` set).
    """
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if overrides:
        config = msgspec.structs.replace(config, **overrides)
    server = StratumServer(config=config, work_source=work_source, clock=clock, conn_ids=conn_ids)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(server)
