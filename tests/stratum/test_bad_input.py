"""Bad input over real sockets: each gets the spec's answer or is closed, with a logged reason,
while a well-behaved miner on another connection keeps getting jobs and accepted shares."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import msgspec
import structlog
import trio
import trio.testing

from stratum.server import StratumServer

from .helpers import TEST_CONFIG, Miner, connect, start_pool


def closing_reasons(logs: list[dict[str, Any]]) -> list[str]:
    return [e["reason"] for e in logs if e["event"] == "conn.closed"]


async def wait_closed(server: StratumServer, reason: str, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while server.stats.closed.get(reason, 0) == 0:
            await trio.sleep(0.005)


async def good_miner_still_works(miner: Miner, pool: Any) -> None:
    pool.new_job()
    notify = await miner.read_until("mining.notify")
    assert notify["params"][0] == miner.last_job
    reply = await miner.submit(miner.share(username="good.rig"))
    assert reply["result"] is True


async def test_bad_clients_do_not_disturb_a_good_miner(nursery: trio.Nursery) -> None:
    config = msgspec.structs.replace(TEST_CONFIG, send_queue_bytes=256 * 1024, send_timeout_s=30.0)
    server, pool, listeners = await start_pool(nursery, config)
    good = await connect(listeners)
    await good.login("good.rig")
    accepted_before = pool.stats.accepted

    with structlog.testing.capture_logs() as logs:
        # 1. Garbage bytes: not JSON, no id to recover: closed.
        bad = await connect(listeners)
        await bad.send_raw(b"\x00\xff\xfe GET / HTTP/1.1\r\n\r\n")
        await bad.expect_eof()
        assert bad.received == []
        await good_miner_still_works(good, pool)

        # 2. Invalid JSON with a recoverable id: an error reply with it, then closed.
        bad = await connect(listeners)
        await bad.send_raw(b'{"id": 42, "method": "mining.subscribe", "params": [\n')
        await bad.expect_eof()
        assert bad.received[0]["id"] == 42
        assert bad.received[0]["error"][0] == 20
        assert "Parse error" in bad.received[0]["error"][1]
        await good_miner_still_works(good, pool)

        # 3. Wrong param types: answered with what to fix; the connection stays usable.
        bad = await connect(listeners)
        reply = await bad.call("mining.subscribe", [123])
        assert reply["error"][0] == 20
        assert "$[0]" in reply["error"][1]
        reply = await bad.call("mining.subscribe", {"not": "a list"})
        assert reply["error"][0] == 20
        await bad.subscribe()
        reply = await bad.call("mining.authorize", [["x"], None])
        assert reply["error"][0] == 20
        reply = await bad.call("mining.submit", ["a.b", 1, 2, 3, 4])
        assert reply["error"][0] == 24  # state check: not authorized
        await bad.authorize("bad.rig")
        reply = await bad.call("mining.submit", ["bad.rig", 1, 2, 3, 4])
        assert reply["error"][0] == 20
        assert "Expected `str`" in reply["error"][1]
        await good_miner_still_works(good, pool)

        # 4. A 1 MiB line: error reply with its id, closed; never buffered whole.
        bad = await connect(listeners)
        with contextlib.suppress(trio.BrokenResourceError):  # it may close before reading all
            await bad.send_raw(
                b'{"id": 7, "method": "mining.subscribe", "params": ["' + b"a" * 2**20
            )
        await bad.expect_eof()
        assert bad.received[0]["id"] == 7
        assert "too long" in bad.received[0]["error"][1]
        await good_miner_still_works(good, pool)

        # 5a. 10,000 junk requests (unknown methods): each answered "Not supported.", still open.
        bad = await connect(listeners)
        async with trio.open_nursery() as sender:
            sender.start_soon(
                bad.send_raw, b'{"id":1,"method":"junk.method","params":[]}\n' * 10_000
            )
            for _ in range(10_000):
                message = await bad.read_message()
                assert message["error"] == [20, "Not supported.", None]
        assert (await bad.subscribe())["error"] is None
        await good_miner_still_works(good, pool)

        # 5b. 10,000 junk lines that are not JSON: closed at the first one.
        bad = await connect(listeners)
        with contextlib.suppress(trio.BrokenResourceError):
            await bad.send_raw(b"junk junk junk\n" * 10_000)
        await bad.expect_eof()
        await good_miner_still_works(good, pool)

        # 6. A client that never reads its socket: disconnected, never waited for.
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(listeners[0].socket.getsockname())
        stream = trio.SocketStream(sock)
        batch = b'{"id":1,"method":"junk.method","params":[]}\n' * 500
        with trio.fail_after(20):
            for _ in range(2000):
                if server.stats.closed.get("send_queue_full") or server.stats.closed.get(
                    "send_timeout"
                ):
                    break
                try:
                    await stream.send_all(batch)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
            await wait_closed(server, "send_queue_full")
        await stream.aclose()
        await good_miner_still_works(good, pool)

    reasons = closing_reasons(logs)
    for reason in ("bad_json", "line_too_long", "send_queue_full"):
        assert reason in reasons, reasons
    assert reasons.count("bad_json") == 3
    closing = [e for e in logs if e["event"] == "conn.closing"]
    assert {e["reason"] for e in closing} >= {"bad_json", "line_too_long"}
    refused = [e for e in logs if e["event"] == "request.refused"]
    assert any("$[0]" in e["message"] for e in refused)
    # The good miner was never disturbed: still connected, every share accepted.
    assert pool.stats.accepted - accepted_before == 7
    assert any(c.worker == "rig" for c in server.connections())


async def test_silent_client_is_closed_after_the_subscribe_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _server, _pool, listeners = await start_pool(nursery)
    good = await connect(listeners)
    good.timeout = 100.0
    await good.login()
    with structlog.testing.capture_logs() as logs:
        silent = await connect(listeners)
        silent.timeout = 100.0
        start = trio.current_time()
        await silent.expect_eof()
        assert 30 <= trio.current_time() - start < 31
    assert closing_reasons(logs) == ["subscribe_timeout"]
    assert silent.received == []
    # Meanwhile the pool's job task kept the good miner fed (job_interval 30 s).
    await good.read_until("mining.notify")
    assert (await good.submit(good.share()))["result"] is True


async def test_subscribed_idle_client_is_closed_after_idle_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    _, _, listeners = await start_pool(nursery)
    idle = await connect(listeners)
    idle.timeout = 1000.0
    await idle.subscribe()
    start = trio.current_time()
    with structlog.testing.capture_logs() as logs:
        await idle.expect_eof()
    assert 600 <= trio.current_time() - start < 601
    assert closing_reasons(logs) == ["idle_timeout"]


async def test_too_many_rejects_closes_with_a_message(nursery: trio.Nursery) -> None:
    config = msgspec.structs.replace(TEST_CONFIG, max_consecutive_rejects=5)
    _, _, listeners = await start_pool(nursery, config)
    miner = await connect(listeners)
    await miner.login()
    for i in range(5):
        reply = await miner.submit(["acct.rig1", "zzz", "00000000", "00000000", f"{i:08x}"])
        assert reply["error"][0] == 21
    with structlog.testing.capture_logs() as logs:
        reply = await miner.submit(["acct.rig1", "zzz", "00000000", "00000000", "ffffffff"])
        assert reply["error"][0] == 21
        message = await miner.read_message()
        assert message["method"] == "client.show_message"
        assert "rejected" in message["params"][0]
        await miner.expect_eof()
    assert closing_reasons(logs) == ["too_many_rejects"]


async def test_a_crashing_work_source_closes_only_that_connection(nursery: trio.Nursery) -> None:
    _server, pool, listeners = await start_pool(nursery)
    good = await connect(listeners)
    await good.login("good.rig")
    original = pool.connect

    def explode(link: Any) -> Any:
        raise RuntimeError("boom")

    pool.connect = explode  # type: ignore[method-assign]
    with structlog.testing.capture_logs() as logs:
        bad = await connect(listeners)
        await bad.subscribe()
        await bad.send("mining.authorize", ["bad.rig", "x"])
        await bad.expect_eof()
    pool.connect = original  # type: ignore[method-assign]
    assert any(e["event"] == "conn.crashed" for e in logs)
    assert closing_reasons(logs) == ["internal_error"]
    await good_miner_still_works(good, pool)
    # The listener still accepts.
    again = await connect(listeners)
    await again.login("again.rig")
