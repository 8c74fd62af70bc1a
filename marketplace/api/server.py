"""Serving the API with hypercorn's trio worker.

``serve_api`` binds, reports the bound port through ``task_status`` (so ``port=0`` works
with ``nursery.start``), and serves until cancelled or until ``shutdown`` returns: then it
stops accepting, lets requests in flight finish (up to ``GRACEFUL_S``), closes idle keep-alive
connections and returns. Hypercorn's own logs are switched off; the app logs one
``api.request`` event per request through structlog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from marketplace.api.app import AsgiScope, Receive, Send

#: An ASGI application (``ApiApp``, or the node's ``NodeSite`` around it).
Asgi = Callable[[AsgiScope, Receive, Send], Awaitable[None]]

#: How long requests in flight may take to finish once a graceful shutdown has begun.
GRACEFUL_S: Final = 2.0


def _port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1].rstrip("/"))


async def serve_api(
    *,
    app: Asgi,
    host: str,
    port: int,
    shutdown: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port``; ``task_status.started(bound_port)``. Returns after a
    graceful shutdown once ``await shutdown()`` returns (see the module doc); runs until
    cancelled without one.

    Raises ``OSError`` if the address cannot be bound.
    """
    config = Config()
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
