"""The node's HTTP routes on the API port: ``POST /rpc`` (the API) and the web side.

Theory of operation
-------------------
``NodeSite`` is the ASGI app hypercorn serves. ``/rpc`` and, unless ``--no-nicehash-api``,
NiceHash's REST paths (``/api/v2/...``, ``/main/api/v2/...``) go to the API's own app
(``marketplace.api.app.ApiApp``) unchanged; ``GET`` (and ``HEAD``) of the others:

| path | answer |
|---|---|
| ``/`` | the dashboard page (``assets.py``), ``no-cache`` |
| ``/static/<name>`` | its assets, cached a year, ETag, gzip when accepted |
| ``/events`` | the live feed (``events.py``) |
| ``/metrics`` | Prometheus text (``marketplace.metrics``) |
| ``/healthz`` | 200 ``ok`` while the node serves |
| ``/readyz`` | 200 once every readiness check passes, else 503; JSON of the checks |

Anything else is 404, another method 405. ``market_frames`` builds the feed's events from the
same views and wire functions as ``market.stats`` and ``market.orderbook``, at one ``now``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import msgspec

from marketplace.api import wire, wire_history
from marketplace.api.app import ApiApp, AsgiScope, Receive, Send
from marketplace.core.views import MarketViews
from marketplace.metrics import CONTENT_TYPE, NodeMetrics
from marketplace.readiness import Readiness
from marketplace.web.assets import Asset, Assets
from marketplace.web.events import EventHub, sse_frame

_ENCODER: Final = msgspec.json.Encoder()


def market_frames(views: MarketViews, now_ms: Callable[[], int]) -> Callable[[], list[bytes]]:
    """A function giving one ``market`` SSE event per market, all read at one ``now``."""

    def frames() -> list[bytes]:
        now = now_ms()
        out = []
        for algorithm in views.fleet.algorithms():
            stats = wire.market_stats_out(views.market_stats(algorithm, now_ms=now))
            book = wire.orderbook_out(views.orderbook(algorithm, now_ms=now))
            best, fill = views.prices(algorithm)
            event = wire_history.market_event_out(
                stats=stats, book=book, best_price_msat=best, fill_price_msat=fill, time_ms=now
            )
            out.append(sse_frame("market", _ENCODER.encode(event)))
        return out

    return frames


class NodeSite:
    """The ASGI app of the API port (see the module doc)."""

    def __init__(
        self,
        *,
        api: ApiApp,
        hub: EventHub,
        readiness: Readiness,
        metrics: NodeMetrics | None = None,
        assets: Assets | None = None,
    ) -> None:
        self.api = api
        self.hub = hub
        self.readiness = readiness
        self.metrics = metrics
        self.assets = assets or Assets()

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.api.serves(scope["path"]):
            await self.api(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed: GET\n", extra=[(b"allow", b"GET")])
            return
        head = scope["method"] == "HEAD"
        if path in ("/", "/index.html"):
            await _asset(scope, send, self.assets.page(), head=head)
        elif path.startswith("/static/"):
            asset = self.assets.get(path.removeprefix("/static/"))
            if asset is None:
                await _answer(send, 404, b"no such asset\n")
            else:
                await _asset(scope, send, asset, head=head)
        elif path == "/events":
            await self.hub.serve(receive, send)
        elif path == "/metrics" and self.metrics is not None:
            await _answer(send, 200, self.metrics.exposition(), content_type=CONTENT_TYPE.encode())
        elif path == "/healthz":
            await _answer(send, 200, b"ok\n")
        elif path == "/readyz":
            ready = self.readiness.ready
            body = json.dumps({"ready": ready, "checks": self.readiness.report()}).encode()
            await _answer(send, 200 if ready else 503, body, content_type=b"application/json")
        else:
            await _answer(send, 404, b"not found\n")


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: AsgiScope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if bytes(key).lower() == name:
            return bytes(value)
    return b""


async def _asset(scope: AsgiScope, send: Send, asset: Asset, *, head: bool) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (b"etag", asset.etag),
        (b"cache-control", asset.cache_control),
        (b"vary", b"accept-encoding"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if asset.etag in [t.strip() for t in _header(scope, b"if-none-match").split(b",")]:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = asset.body
    if b"gzip" in _header(scope, b"accept-encoding"):
        body = asset.gzipped
        headers.append((b"content-encoding", b"gzip"))
    headers += [(b"content-type", asset.content_type), (b"content-length", str(len(body)).encode())]
    message: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": headers}
    await send(message)
    await send({"type": "http.response.body", "body": b"" if head else body})
