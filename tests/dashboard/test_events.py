"""``GET /events``: one ``market`` event per market per tick; a reader that never reads is
dropped once its bounded buffer is full, memory stays bounded, and the other readers keep
getting events all along."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import trio

from marketplace.api.app import ApiSettings
from marketplace.core.model import OrderType
from marketplace.web.events import EventHub, HubSettings
from stratum.core.shares import Algorithm
from tests.marketplace_io.test_assembly import serving, settings

BTC = 10**11


async def _big_book(node: object, orders: int) -> None:
    """Many orders on the sha256d book, so each event is large and buffers fill fast."""
    core = node.core  # type: ignore[attr-defined]
    market, now = core.market, core.clock.now_ms()

    def seed() -> None:
        market.create_account(account="buyer", now_ms=now)
        market.deposit(account="buyer", amount_msat=orders * BTC, now_ms=now)
        for i in range(orders):
            market.create_order(
                account="buyer",
                algorithm=Algorithm.SHA256D,
                type=OrderType.STANDARD,
                price_msat=10**6 + i,
                limit_hs=10**4 + i,
                amount_msat=10**8,
                duration_s=None,
                now_ms=now,
                fleet=core.fleet,
            )

    await core.engine.execute(seed)


async def test_events_are_one_market_event_per_market_per_tick(tmp_path: Path) -> None:
    web = HubSettings(interval_s=0.05, heartbeat_s=0.2)
    async with serving(settings(tmp_path / "m.db"), web=web) as node, httpx.AsyncClient() as http:
        url = f"http://127.0.0.1:{node.api_port}/events"
        events: list[dict[str, object]] = []
        heartbeats = 0
        with trio.fail_after(20):
            async with http.stream("GET", url) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                assert response.headers["cache-control"] == "no-cache"
                async for line in response.aiter_lines():
                    if line.startswith(": heartbeat"):
                        heartbeats += 1
                    elif line.startswith("data: "):
                        events.append(json.loads(line.removeprefix("data: ")))
                    if len(events) >= 10 and heartbeats:
                        break
    algorithms = [e["algorithm"] for e in events]
    assert algorithms[:4] == ["sha256d", "scrypt", "sha256d", "scrypt"]
    assert set(events[0]) == {
        "algorithm", "unit", "time_ms", "accepted_speed", "workers", "shares_per_s",
        "rejected_per_s", "best_price", "fill_price", "total_speed", "orders",
    }  # fmt: skip
    times = [e["time_ms"] for e in events if e["algorithm"] == "sha256d"]
    assert times == sorted(times)


async def test_a_reader_that_never_reads_is_dropped_and_the_others_keep_reading(
    tmp_path: Path,
) -> None:
    # A tick every 10 ms, and 2.5 s of slack for a reader that reads (this process runs the
    # node and both readers on one loop, on a busy machine).
    web = HubSettings(interval_s=0.01, max_queued=256)
    config = settings(tmp_path / "m.db")
    # The stalled reader: a raw socket with a small receive buffer that never reads.
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with (
        serving(config, web=web, api=ApiSettings(send_timeout_s=2.0)) as node,
        httpx.AsyncClient() as http,
    ):
        try:
            with trio.fail_after(60):
                await _big_book(node, 200)  # about 25 kB a tick
                assert node.site is not None
                hub = node.site.hub
                await trio.to_thread.run_sync(stalled.connect, ("127.0.0.1", node.api_port))
                stalled.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                after_drop = await _read_until_dropped(http, node.api_port, hub)
                assert hub.dropped == 1, "only the stalled reader is dropped"
                assert after_drop >= 50
                # What the hub held for its readers never passed their bounded channels: two
                # readers, at most max_queued frames each plus the frames a new one starts with.
                frame_size = max(len(f) for f in hub._latest)
                assert hub.peak_queued_bytes <= 2 * (web.max_queued + 2) * frame_size
                # The server lets go of the stalled connection by itself: its writer was stuck
                # in a write, and the kernel aborts a connection whose data sat unread for the
                # send timeout. Only the other reader's response is left, and it ended too.
                await hub.wait_streams(at_most=0)
        finally:
            # Before the node stops: a writer stuck on this socket would hold the shutdown.
            stalled.close()


async def _read_until_dropped(http: httpx.AsyncClient, port: int, hub: EventHub) -> int:
    """Read ``/events`` as fast as it comes (raw bytes: no parsing to fall behind) until 50
    events after the hub dropped a reader; how many were read after the drop."""
    after_drop = 0
    async with http.stream("GET", f"http://127.0.0.1:{port}/events") as good:
        async for chunk in good.aiter_raw():
            if hub.dropped:
                after_drop += chunk.count(b"\n\n")
                if after_drop >= 50:
                    return after_drop
    raise AssertionError("the stream ended before a reader was dropped")
