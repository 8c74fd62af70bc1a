"""``GET /events``: one ``market`` event per market per tick; a reader that never reads is
dropped once its bounded buffer is full, memory stays bounded, and the other readers keep
getting events all along."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import trio

from marketplace.core.model import OrderType
from marketplace.web.events import HubSettings
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
    web = HubSettings(interval_s=0.01, max_queued=8)
    async with serving(settings(tmp_path / "m.db"), web=web) as node, httpx.AsyncClient() as http:
        await _big_book(node, 400)
        assert node.site is not None
        hub = node.site.hub
        # The stalled reader: a raw socket with a small receive buffer that never reads.
        stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        with trio.fail_after(60):
            try:
                stalled.connect(("127.0.0.1", node.api_port))
            except BlockingIOError:
                await trio.lowlevel.wait_writable(stalled)
            stalled.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            frame_sizes: list[int] = []
            after_drop = 0
            async with http.stream("GET", f"http://127.0.0.1:{node.api_port}/events") as good:
                async for line in good.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    frame_sizes.append(len(line))
                    if hub.dropped:
                        after_drop += 1
                        if after_drop >= 50:
                            break
            # The stalled reader was dropped: the server closed its connection (it reads the
            # rest of what the kernel held, then the end).
            received = 0
            while True:
                await trio.lowlevel.wait_readable(stalled)
                chunk = stalled.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
        stalled.close()
        assert hub.dropped == 1
        assert hub.readers == 0
        # What the hub held for its readers never passed their bounded channels (two readers,
        # at most max_queued frames each, plus the latest frames a new reader starts with).
        assert hub.peak_queued_bytes <= 2 * (web.max_queued + 2) * max(frame_sizes)
        # The stalled reader got less than the others: the rest was never buffered for it.
        assert received < sum(frame_sizes)
