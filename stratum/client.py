"""The trio driver around ``stratum.core.client_protocol``: one Stratum connection.

``open_stratum_client(host, port)`` connects and yields a ``StratumClient``. Inside, one reader
task feeds the protocol and routes events (responses wake the request that waits for them,
everything else goes to ``client.events``), and one writer task is the only caller of
``send_all``. Requests are ``await``-ed for their answer: ``subscribe``, ``authorize``,
``extranonce_subscribe``, ``configure``, ``suggest_difficulty`` and ``submit``, each bounded
by ``ClientConfig.request_timeout``. When the connection ends (EOF, an error, the idle timeout,
a protocol violation) every waiting request raises ``ConnectionLost``, ``client.events`` ends,
and leaving the ``async with`` block re-raises nothing but what the body raised.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import structlog
import trio

from stratum.core.client_events import (
    Authorized,
    Configured,
    ConnectionClosed,
    DifficultySuggested,
    Event,
    ExtranonceSubscribed,
    RequestFailed,
    ResponseEvent,
    StratumFailure,
    SubmitResult,
    Subscribed,
)
from stratum.core.client_protocol import DEFAULT_USER_AGENT, ClientProtocol, RemoteProtocolError
from stratum.core.framing import NEED_DATA

log = structlog.get_logger("stratum.client")

R = TypeVar("R", bound=ResponseEvent)


class StratumClientError(Exception):
    """Base of the client's errors."""


class ConnectionLost(StratumClientError):
    """The connection ended before the request was answered (or could be sent)."""


class RequestRejected(StratumClientError):
    """The server answered a request with an error."""

    def __init__(self, failure: StratumFailure) -> None:
        super().__init__(f"[{failure.code}] {failure.message}")
        self.failure = failure


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Timeouts and identity of one connection (seconds)."""

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 10.0
    request_timeout: float = 30.0
    #: No line at all for this long ends the connection (cpuminer reconnects after 120 s).
    idle_timeout: float = 150.0
    send_timeout: float = 10.0
    #: Notifications buffered for a slow consumer before the connection is dropped.
    event_buffer: int = 256


class _Waiter:
    __slots__ = ("done", "event")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.event: ResponseEvent | None = None


class StratumClient:
    """One live connection. Create it with ``open_stratum_client``."""

    def __init__(self, stream: trio.abc.Stream, config: ClientConfig) -> None:
        self._stream = stream
        self._config = config
        self._protocol = ClientProtocol(user_agent=config.user_agent)
        self._waiters: dict[int, _Waiter] = {}
        self._out_send, self._out_recv = trio.open_memory_channel[bytes](math.inf)
        self._ev_send, self._ev_recv = trio.open_memory_channel[Event](config.event_buffer)
        self._closed = trio.Event()
        #: Why the connection ended (None while it is up, or after a clean EOF).
        self.close_reason: str | None = None
        #: The server broke the protocol (a line that is not JSON, a response to nothing...).
        self.protocol_error: RemoteProtocolError | None = None

    # ------------------------------------------------------------------ public API

    @property
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """Notifications (jobs, difficulty, extranonce, reconnect, messages) in arrival order.

        The channel ends when the connection does; its last item is a ``ConnectionClosed``
        when the server closed the connection.
        """
        return self._ev_recv

    @property
    def extranonce1(self) -> str | None:
        """The extranonce1 in force (from subscribe or the latest ``set_extranonce``)."""
        return self._protocol.extranonce1

    @property
    def extranonce2_size(self) -> int | None:
        """The extranonce2 size in force."""
        return self._protocol.extranonce2_size

    @property
    def session_id(self) -> str | None:
        """The id to resume the session with on the next connection."""
        return self._protocol.session_id

    @property
    def is_closed(self) -> bool:
        """True once the connection has ended."""
        return self._closed.is_set()

    async def subscribe(self, *, session_id: str | None = None) -> Subscribed:
        """Subscribe (resuming ``session_id`` if given). Raises ``RequestRejected``,
        ``ConnectionLost`` or ``trio.TooSlowError``."""
        return await self._call(lambda: self._protocol.subscribe(session_id=session_id), Subscribed)

    async def authorize(self, username: str, password: str = "x") -> Authorized:
        """Authorize a worker; a refusal is ``Authorized(ok=False)``, not an exception.
        Raises ``ConnectionLost`` or ``trio.TooSlowError``."""
        return await self._call(lambda: self._protocol.authorize(username, password), Authorized)

    async def extranonce_subscribe(self) -> bool:
        """Ask for ``mining.set_extranonce``; False when the server does not support it."""
        result = await self._call(self._protocol.extranonce_subscribe, ExtranonceSubscribed)
        return result.ok

    async def configure(self, extensions: list[str], options: dict[str, str | int]) -> Configured:
        """BIP 310 ``mining.configure``. Raises ``RequestRejected`` if the server refuses."""
        return await self._call(lambda: self._protocol.configure(extensions, options), Configured)

    async def suggest_difficulty(self, difficulty: float) -> bool:
        """``mining.suggest_difficulty``; True when the server took it."""
        result = await self._call(
            lambda: self._protocol.suggest_difficulty(difficulty), DifficultySuggested
        )
        return result.ok

    async def submit(
        self,
        *,
        username: str,
        job_id: str,
        extranonce2: str,
        ntime: str,
        nonce: str,
        version_bits: str | None = None,
    ) -> SubmitResult:
        """Submit a share and wait for the verdict (a rejection is a result, not an error).

        Raises ``ConnectionLost`` or ``trio.TooSlowError`` (no answer within the timeout).
        """
        return await self._call(
            lambda: self._protocol.submit(
                username=username,
                job_id=job_id,
                extranonce2=extranonce2,
                ntime=ntime,
                nonce=nonce,
                version_bits=version_bits,
            ),
            SubmitResult,
        )

    # ------------------------------------------------------------------ internals

    async def _call(self, build: Callable[[], tuple[int, bytes]], expected: type[R]) -> R:
        if self._closed.is_set():
            raise ConnectionLost(self.close_reason or "connection closed")
        request_id, line = build()
        waiter = _Waiter()
        self._waiters[request_id] = waiter
        try:
            self._out_send.send_nowait(line)
            with trio.fail_after(self._config.request_timeout):
                await waiter.done.wait()
        finally:
            self._waiters.pop(request_id, None)
        event = waiter.event
        if event is None:
            raise ConnectionLost(self.close_reason or "connection closed")
        if isinstance(event, RequestFailed):
            raise RequestRejected(event.failure)
        if not isinstance(event, expected):  # pragma: no cover - the protocol pairs them
            raise StratumClientError(f"unexpected answer {event!r}")
        return event

    async def _writer(self) -> None:
        async for line in self._out_recv:
            # Lines queued meanwhile go out in the same write (a proxy pipelines submits).
            lines = [line]
            while True:
                try:
                    lines.append(self._out_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            with trio.fail_after(self._config.send_timeout):
                await self._stream.send_all(b"".join(lines))

    async def _reader(self) -> None:
        protocol = self._protocol
        while True:
            with trio.move_on_after(self._config.idle_timeout) as idle:
                data = await self._stream.receive_some(65536)
            if idle.cancelled_caught:
                raise ConnectionLost(f"no data from server for {self._config.idle_timeout} s")
            protocol.receive_data(data)
            while True:
                event = protocol.next_event()
                if event is NEED_DATA:
                    break
                self._route(event)
                if isinstance(event, ConnectionClosed):
                    return
            owed = protocol.data_to_send()
            if owed:
                self._out_send.send_nowait(owed)

    def _route(self, event: Event) -> None:
        request_id = getattr(event, "request_id", None)
        if request_id is not None:
            waiter = self._waiters.get(request_id)
            if waiter is not None:
                waiter.event = event  # type: ignore[assignment]
                waiter.done.set()
            return
        try:
            self._ev_send.send_nowait(event)
        except trio.WouldBlock:
            raise ConnectionLost("event consumer too slow") from None

    def _finish(self, reason: str | None) -> None:
        if self._closed.is_set():
            return
        self.close_reason = reason
        self._closed.set()
        for waiter in self._waiters.values():
            waiter.done.set()
        self._ev_send.close()
        self._out_send.close()

    async def _guarded(self, body: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        # Errors are caught in the task that hit them, so they never become exception groups.
        try:
            await body()
        except RemoteProtocolError as exc:
            self.protocol_error = exc
            self._lost(str(exc))
        except (ConnectionLost, trio.TooSlowError) as exc:
            self._lost(str(exc) or type(exc).__name__)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._lost(f"{type(exc).__name__}: {exc}")
        finally:
            scope.cancel()

    def _lost(self, reason: str) -> None:
        if self.close_reason is None and not self._closed.is_set():
            self.close_reason = reason
            log.warning("stratum.connection_lost", reason=reason)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._writer, nursery.cancel_scope)
                task_status.started()
                await self._guarded(self._reader, nursery.cancel_scope)
        finally:
            self._finish(self.close_reason or "closed")
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self._stream)


@asynccontextmanager
async def open_stratum_client(
    host: str, port: int, *, config: ClientConfig | None = None
) -> AsyncIterator[StratumClient]:
    """Connect to a Stratum server and run the connection for the body of the block.

    Raises ``OSError`` or ``trio.TooSlowError`` if the connection cannot be made within
    ``config.connect_timeout``. On leaving the block the connection is closed.
    """
    config = config or ClientConfig()
    with trio.fail_after(config.connect_timeout):
        stream = await trio.open_tcp_stream(host, port)
    async with stream_client(stream, config=config) as client:
        yield client


@asynccontextmanager
async def stream_client(
    stream: trio.abc.Stream, *, config: ClientConfig | None = None
) -> AsyncIterator[StratumClient]:
    """Run a ``StratumClient`` over an already open stream (tests use in-memory streams)."""
    client = StratumClient(stream, config or ClientConfig())
    # The body's own exception is re-raised as it is, not wrapped in the nursery's group, so
    # callers can ``except ConnectionLost`` around the block.
    body_error: Exception | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(client._run)
        try:
            yield client
        except Exception as exc:
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
