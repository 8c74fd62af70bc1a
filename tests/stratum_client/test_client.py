"""The trio client driver: real loopback TCP against the scripted pool, and in-memory streams
with a mock clock for timeouts."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
import trio
import trio.testing

from stratum.client import (
    ClientConfig,
    ConnectionLost,
    RequestRejected,
    open_stratum_client,
    stream_client,
)
from stratum.core.client_events import (
    ConnectionClosed,
    Event,
    NewDifficulty,
    NewExtranonce,
    NewJob,
    ShowMessage,
)
from stratum.core.errors import RejectReason
from tests.workers.fakepool import FakePool


async def start_pool(nursery: trio.Nursery, pool: FakePool) -> int:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, pool.handle, 0, host="127.0.0.1")
    )
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def next_event(events: trio.MemoryReceiveChannel[Event]) -> Event:
    with trio.fail_after(5):
        return await events.receive()


async def test_handshake_jobs_and_submits_over_tcp(nursery: trio.Nursery) -> None:
    pool = FakePool(difficulty=1e-12)  # target above every hash: any nonce is a share
    port = await start_pool(nursery, pool)
    async with open_stratum_client("127.0.0.1", port) as client:
        with trio.fail_after(5):
            sub = await client.subscribe()
            assert (sub.extranonce1, sub.extranonce2_size, sub.session_id) == (
                "00000001",
                4,
                "5e550001",
            )
            assert await client.extranonce_subscribe() is True
            auth = await client.authorize("acct.w1", "x")
        assert auth.ok
        assert await next_event(client.events) == NewDifficulty(difficulty=1e-12)
        job = await next_event(client.events)
        assert isinstance(job, NewJob)
        assert job.difficulty == 1e-12
        with trio.fail_after(5):
            first = await client.submit(
                username="acct.w1",
                job_id=job.job_id,
                extranonce2="00000000",
                ntime=job.ntime,
                nonce="00000001",
            )
            duplicate = await client.submit(
                username="acct.w1",
                job_id=job.job_id,
                extranonce2="00000000",
                ntime=job.ntime,
                nonce="00000001",
            )
            stale = await client.submit(
                username="acct.w1",
                job_id="nope",
                extranonce2="00000000",
                ntime=job.ntime,
                nonce="00000002",
            )
        assert first.accepted
        assert (duplicate.accepted, duplicate.reason) == (False, RejectReason.DUPLICATE)
        assert stale.reason is RejectReason.STALE
        # Extranonce change and a message arrive as events, in order.
        conn = pool.conns[0]
        await conn.set_extranonce("0a0b0c0d")
        await conn.send({"id": None, "method": "client.show_message", "params": ["hello"]})
        assert await next_event(client.events) == NewExtranonce(
            extranonce1="0a0b0c0d", extranonce2_size=4
        )
        assert client.extranonce1 == "0a0b0c0d"
        assert await next_event(client.events) == ShowMessage(text="hello")


async def test_concurrent_submits_are_each_answered(nursery: trio.Nursery) -> None:
    pool = FakePool(difficulty=1e-12)
    port = await start_pool(nursery, pool)
    results: dict[int, bool] = {}
    async with open_stratum_client("127.0.0.1", port) as client:
        with trio.fail_after(5):
            await client.subscribe()
            await client.authorize("acct.w1")
        job = await next_event(client.events)
        while not isinstance(job, NewJob):
            job = await next_event(client.events)

        async def submit(n: int) -> None:
            result = await client.submit(
                username="acct.w1",
                job_id=job.job_id,
                extranonce2="00000000",
                ntime=job.ntime,
                nonce=f"{n:08x}",
            )
            results[n] = result.accepted

        with trio.fail_after(5):
            async with trio.open_nursery() as inner:
                for n in range(20):
                    inner.start_soon(submit, n)
    assert results == {n: True for n in range(20)}


async def test_server_closing_fails_pending_requests_and_ends_events(
    nursery: trio.Nursery,
) -> None:
    server, client_side = trio.testing.memory_stream_pair()
    async with stream_client(client_side) as client:
        outcome: list[BaseException] = []

        async def subscribe() -> None:
            try:
                await client.subscribe()
            except ConnectionLost as exc:
                outcome.append(exc)

        nursery.start_soon(subscribe)
        with trio.fail_after(5):
            request = json.loads(await server.receive_some(1000))
        assert request["method"] == "mining.subscribe"
        await server.aclose()
        with trio.fail_after(5):
            last = await client.events.receive()
            assert isinstance(last, ConnectionClosed)
            assert last.pending == (request["id"],)
            with pytest.raises(trio.EndOfChannel):
                await client.events.receive()
            while not outcome:
                await trio.sleep(0)
        assert client.is_closed
        with pytest.raises(ConnectionLost):
            await client.authorize("a.b")


async def reply_to_subscribe(server: trio.abc.Stream) -> dict[str, Any]:
    with trio.fail_after(5):
        request = json.loads(await server.receive_some(1000))
    result = [[["mining.notify", "ab"]], "f000000d", 4]
    await server.send_all(
        json.dumps({"id": request["id"], "result": result, "error": None}).encode() + b"\n"
    )
    return dict(request)


async def test_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    server, client_side = trio.testing.memory_stream_pair()
    config = ClientConfig(request_timeout=30, idle_timeout=1000)
    async with stream_client(client_side, config=config) as client, trio.open_nursery() as n:
        n.start_soon(reply_to_subscribe, server)
        await client.subscribe()
        start = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await client.authorize("a.b")
        assert trio.current_time() - start == pytest.approx(30)


async def test_idle_timeout_ends_the_connection(autojump_clock: trio.testing.MockClock) -> None:
    server, client_side = trio.testing.memory_stream_pair()
    config = ClientConfig(request_timeout=1000, idle_timeout=120)
    async with stream_client(client_side, config=config) as client, trio.open_nursery() as n:
        n.start_soon(reply_to_subscribe, server)
        await client.subscribe()
        start = trio.current_time()
        with pytest.raises(ConnectionLost):
            await client.authorize("a.b")
        assert trio.current_time() - start == pytest.approx(120)
        assert client.close_reason is not None
        assert "no data" in client.close_reason
        with pytest.raises(trio.EndOfChannel):
            await client.events.receive()


async def test_garbage_from_server_closes_with_reason() -> None:
    server, client_side = trio.testing.memory_stream_pair()
    async with stream_client(client_side) as client:
        await server.send_all(b"this is not json\n")
        with trio.fail_after(5), pytest.raises(trio.EndOfChannel):
            await client.events.receive()
        assert client.close_reason is not None
        assert "bad line" in client.close_reason


async def test_refused_subscribe_raises_request_rejected() -> None:
    server, client_side = trio.testing.memory_stream_pair()
    async with stream_client(client_side) as client, trio.open_nursery() as n:

        async def refuse() -> None:
            with trio.fail_after(5):
                request = json.loads(await server.receive_some(1000))
            error = [20, "unknown session", None]
            reply = {"id": request["id"], "result": None, "error": error}
            await server.send_all(json.dumps(reply).encode() + b"\n")

        n.start_soon(refuse)
        with trio.fail_after(5), pytest.raises(RequestRejected, match="unknown session"):
            await client.subscribe(session_id="dead")


async def test_server_request_is_answered_by_the_writer() -> None:
    server, client_side = trio.testing.memory_stream_pair()
    config = ClientConfig(user_agent="ua/9")
    async with stream_client(client_side, config=config):
        await server.send_all(b'{"id": 7, "method": "client.get_version", "params": []}\n')
        with trio.fail_after(5):
            reply = json.loads(await server.receive_some(1000))
        assert reply == {"id": 7, "result": "ua/9", "error": None}
