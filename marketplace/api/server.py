"""Serving the API with hypercorn's trio worker.

``serve_api`` binds, reports the bound port through ``task_status`` (so ``port=0`` works
with ``nursery.start``), and serves until cancelled or until ``shutdown`` returns: then it
stops accepting, lets requests in flight finish (up to ``GRACEFUL_S``), closes idle keep-alive
connections and returns. Hypercorn's own logs are switched off; the app logs one
``api.request`` event per request through structlog.

A peer that stops reading must not hold the server: hypercorn writes each response with a
shielded ``send_all``, which no cancellation can end, so one stalled reader (of ``/events``,
say) would block its task, and the graceful shutdown with it, until the peer reads. The
listening sockets therefore carry ``TCP_USER_TIMEOUT`` (inherited by every accepted
connection): when data we sent stays unacknowledged, or cannot be sent into a zero window,
for ``send_timeout_s``, the kernel aborts the connection and the write fails.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio import serve

from marketplace.api.app import AsgiScope, Receive, Send

#: An ASGI application (``ApiApp``, or the node's ``NodeSite`` around it).
Asgi = Callable[[AsgiScope, Receive, Send], Awaitable[None]]

#: How long requests in flight may take to finish once a graceful shutdown has begun.
GRACEFUL_S: Final = 2.0
#: How long a peer may leave what we sent unread before its connection is aborted.
SEND_TIMEOUT_S: Final = 30.0


class _Config(Config):
    """Hypercorn's config, whose listening sockets abort stalled peers (see the module doc)."""

    send_timeout_s: float = SEND_TIMEOUT_S

    def create_sockets(self) -> Sockets:
        sockets: Sockets = super().create_sockets()
        timeout_ms = max(1, int(self.send_timeout_s * 1000))
        for sock in sockets.insecure_sockets + sockets.secure_sockets:
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux; elsewhere only the kernel's own
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        return sockets


def _port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1].rstrip("/"))


async def serve_api(
    *,
    app: Asgi,
    host: str,
    port: int,
    shutdown: Callable[[], Awaitable[None]] | None = None,
    send_timeout_s: float = SEND_TIMEOUT_S,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port``; ``task_status.started(bound_port)``. Returns after a
    graceful shutdown once ``await shutdown()`` returns (see the module doc); runs until
    cancelled without one. A peer that leaves what we sent unread for ``send_timeout_s`` is
    disconnected.

    Raises ``OSError`` if the address cannot be bound.
    """
    config = _Config()
    config.send_timeout_s = send_timeout_s
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = GRACEFUL_S
    config.keep_alive_timeout = 30.0

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await serve(
            cast(Any, app),
            config,
            mode="asgi",
            shutdown_trigger=shutdown,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        task_status.started(_port_of(binds[0]))
