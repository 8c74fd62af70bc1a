"""Integration tests over real loopback TCP: ordering, every rejection code, extensions."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import structlog
import trio

from stratum.config import StratumConfig
from stratum.core.jobs import Job, MinerLink, Share
from stratum.core.shares import Algorithm
from stratum.server import NOT_RECORDED, StratumServer, serve_stratum

from .helpers import TEST_CONFIG, Miner, connect, start_pool


async def test_subscribe_authorize_notify_ordering(nursery: trio.Nursery) -> None:
    _, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    reply = await miner.subscribe()
    # The subscribe reply is the very first line the server sends.
    assert miner.received == [reply]
    subscriptions, extranonce1, extranonce2_size = reply["result"]
    assert [s[0] for s in subscriptions] == ["mining.set_difficulty", "mining.notify"]
    assert len(bytes.fromhex(extranonce1)) == 4
    assert extranonce2_size == 4
    assert reply["error"] is None

    request_id = await miner.send("mining.authorize", ["acct.rig1", "x"])
    lines = [await miner.read_message() for _ in range(3)]
    # Between authorize and its reply only set_difficulty/notify may appear; we send the reply
    # first, then set_difficulty before the notify it applies to.
    assert lines[0] == {"id": request_id, "result": True, "error": None}
    assert lines[1] == {"id": None, "method": "mining.set_difficulty", "params": [1e-6]}
    assert lines[2]["method"] == "mining.notify"
    notify = lines[2]["params"]
    assert len(notify) == 9
    assert notify[5] == "20000000"
    assert notify[8] is True


async def test_pipelined_requests_are_answered_in_order(nursery: trio.Nursery) -> None:
    _, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    batch = b"".join(
        msgspec.json.encode({"id": i, "method": m, "params": p}) + b"\n"
        for i, m, p in [
            (1, "mining.subscribe", ["cpuminer/2.5.1"]),
            (2, "mining.authorize", ["acct.rig1", "x"]),
            (3, "mining.extranonce.subscribe", []),
        ]
    )
    await miner.send_raw(batch)
    lines = [await miner.read_message() for _ in range(5)]
    assert lines[0]["id"] == 1
    assert isinstance(lines[0]["result"], list)
    assert lines[1] == {"id": 2, "result": True, "error": None}
    assert [line.get("method") for line in lines[2:4]] == ["mining.set_difficulty", "mining.notify"]
    assert lines[4] == {"id": 3, "result": True, "error": None}


async def test_accepted_shares_with_repeated_ids(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    await miner.login()
    # cpuminer sends every submit with id 4: each reply carries it, in order.
    for _ in range(3):
        params = miner.share()
        reply = await miner.call("mining.submit", params, request_id=4)
        assert reply == {"id": 4, "result": True, "error": None}
    assert pool.stats.accepted == 3
    assert server.stats.shares_accepted == 3
    assert pool.stats.work == {"acct.rig1": 3 * int(1e-6 * 2**32)}


async def test_rejection_codes_20_to_25(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_pool(nursery)
    miner = await connect(listeners)

    params = ["acct.rig1", "1", "00000000", "00000000", "00000000"]
    reply = await miner.submit(params)
    assert reply["error"] == [25, "Not subscribed", None]
    await miner.subscribe()
    reply = await miner.submit(params)
    assert reply["error"][0] == 24
    await miner.authorize("acct.rig1")
    await miner.read_until("mining.notify")

    # 24: a username this connection did not authorize, and an invalid one.
    reply = await miner.submit(miner.share(username="acct.other"))
    assert reply["error"] == [24, "Unauthorized worker", None]
    reply = await miner.call("mining.authorize", ["bad name!", "x"])
    assert reply["result"] is None
    assert reply["error"][0] == 24

    # 20: malformed params, bad extranonce2 size, ntime out of range, version bits.
    reply = await miner.submit(["acct.rig1", "1", "zz", "00000000", "00000000"])
    assert reply["error"][0] == 20
    assert "$[2]" in reply["error"][1]
    reply = await miner.submit(["acct.rig1", miner.last_job, "00", "00000000", "00000000"])
    assert reply["error"][0] == 20
    assert "extranonce2" in reply["error"][1]
    good = miner.share()
    early = [*good[:3], f"{int(good[3], 16) - 1:08x}", good[4]]
    reply = await miner.submit(early)
    assert reply["error"][0] == 20
    assert "ntime" in reply["error"][1]
    late = [*good[:3], f"{int(good[3], 16) + 7300:08x}", good[4]]
    reply = await miner.submit(late)
    assert reply["error"][0] == 20
    assert "ntime" in reply["error"][1]
    reply = await miner.submit([*good, "00002000"])  # no version rolling negotiated
    assert reply["error"][0] == 20
    assert "mask" in reply["error"][1]

    # 21: unknown job id.
    reply = await miner.submit([good[0], "ffff", *good[2:]])
    assert reply["error"] == [21, "Job not found (stale)", None]
    # 23: a share above the target.
    reply = await miner.submit(miner.share(valid=False))
    assert reply["error"] == [23, "Low difficulty share", None]
    # Accepted, then 22 for the same share again.
    reply = await miner.submit(good)
    assert reply["result"] is True
    reply = await miner.submit(good)
    assert reply["error"] == [22, "Duplicate share", None]

    # 20 "Not supported." for an unknown method; the connection stays open.
    reply = await miner.call("mining.capabilities", [])
    assert reply["error"] == [20, "Not supported.", None]
    reply = await miner.submit(miner.share())
    assert reply["result"] is True
    assert server.stats.shares_rejected == {
        "not_subscribed": 1,
        "unauthorized": 2,
        "other": 5,
        "stale": 1,
        "low_difficulty": 1,
        "duplicate": 1,
    }
    # The submits before subscribe and before authorize named no worker of this connection:
    # the server counted them, the work source never saw them.
    assert pool.stats.rejected == {
        "unauthorized": 1,
        "other": 5,
        "stale": 1,
        "low_difficulty": 1,
        "duplicate": 1,
    }


async def test_stale_after_clean_jobs_with_grace(nursery: trio.Nursery, autojump_clock) -> None:
    config = msgspec.structs.replace(TEST_CONFIG, stale_grace_s=5.0)
    _, pool, listeners = await start_pool(nursery, config)
    miner = await connect(listeners)
    await miner.login()
    old = miner.share()
    pool.chain.advance(pool.chain.next_block_ms)  # the emulated network finds a block
    pool.new_job()
    notify = await miner.read_until("mining.notify")
    assert notify["params"][8] is True
    # Within the grace period the old job's share still counts...
    assert (await miner.submit(old))["result"] is True
    # ...after it, a share of the old job is stale (the job check comes before duplicates).
    await trio.sleep(5.1)
    reply = await miner.submit(old)
    assert reply["error"] == [21, "Job not found (stale)", None]
    # A share of the new job is fine.
    assert (await miner.submit(miner.share()))["result"] is True


async def test_configure_version_rolling(nursery: trio.Nursery) -> None:
    _, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    reply = await miner.call(
        "mining.configure",
        [
            ["version-rolling", "minimum-difficulty", "subscribe-extranonce"],
            {"version-rolling.mask": "ffffffff", "version-rolling.min-bit-count": 2},
        ],
    )
    assert reply["result"] == {
        "version-rolling": True,
        "version-rolling.mask": "1fffe000",
        "minimum-difficulty": False,
        "subscribe-extranonce": False,
    }
    await miner.login()
    reply = await miner.submit(miner.share(version_bits=0x00006000))
    assert reply["result"] is True
    reply = await miner.submit(miner.share(version_bits=0x40000000))
    assert reply["error"][0] == 20
    assert "mask" in reply["error"][1]

    other = await connect(listeners)
    reply = await other.call(
        "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffff0000"}]
    )
    assert reply["result"] == {"version-rolling": True, "version-rolling.mask": "1fff0000"}
    reply = await other.call("mining.configure", [["version-rolling"], {"version-rolling.mask": 5}])
    assert reply["error"][0] == 20


async def test_suggest_difficulty_is_clamped(nursery: trio.Nursery) -> None:
    _, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    assert (await miner.call("mining.suggest_difficulty", [1e-12]))["result"] is True
    await miner.login()
    assert miner.difficulty == 1e-9  # clamped to min_difficulty
    # After jobs flow a suggestion is sent as set_difficulty + a new job id.
    reply = await miner.call("mining.suggest_difficulty", [500.0])
    assert reply["result"] is True
    set_diff = await miner.read_message()
    notify = await miner.read_message()
    assert set_diff["params"] == [1e-4]  # clamped to max_difficulty
    assert notify["method"] == "mining.notify"
    assert notify["params"][8] is False
    assert miner.jobs[notify["params"][0]].difficulty == 1e-4
    reply = await miner.call("mining.suggest_difficulty", ["high"])
    assert reply["error"][0] == 20


async def test_password_difficulty_option(nursery: trio.Nursery) -> None:
    _, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    await miner.login("acct.rig1", "x,d=2e-6")
    assert miner.difficulty == 2e-6
    assert (await miner.submit(miner.share()))["result"] is True


async def test_several_workers_on_one_connection(nursery: trio.Nursery) -> None:
    _, pool, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    await miner.login("acct.rig1")
    assert (await miner.authorize("acct.rig2"))["result"] is True
    assert (await miner.authorize("other"))["result"] is True
    for user in ("acct.rig1", "acct.rig2", "other.default", "other"):
        assert (await miner.submit(miner.share(username=user)))["result"] is True
    assert pool.stats.work.keys() == {"acct.rig1", "acct.rig2", "other.default"}
    assert pool.links[0].account == "acct"
    assert pool.links[0].worker == "rig1"


async def test_a_resumed_session_gets_stale_for_a_job_from_before_the_reconnect(
    nursery: trio.Nursery,
) -> None:
    _, _, listeners = await start_pool(nursery)
    first = await connect(listeners)
    await first.login()
    # A share found on the old connection's job, not submitted before the connection drops.
    old_share = first.share()
    await first.stream.aclose()
    # Reconnect with the session id: same extranonce1, and the server's new job ids never repeat
    # the old ones, so the share is "stale" (21) rather than checked against another job.
    resumed = await connect(listeners)
    reply = await resumed.call("mining.subscribe", ["m/1", first.extranonce1.hex()])
    assert reply["result"][1] == first.extranonce1.hex()
    resumed.extranonce1 = first.extranonce1
    assert (await resumed.authorize())["result"] is True
    await resumed.read_until("mining.notify")
    assert old_share[1] not in resumed.jobs
    reply = await resumed.submit(old_share)
    assert reply["error"] == [21, "Job not found (stale)", None]


async def test_a_peer_that_reads_late_gets_every_line_once_in_order(nursery: trio.Nursery) -> None:
    # Lines are written at once while the writer is idle and queued once the kernel stops
    # taking them; the hand-over between the two must neither reorder nor lose a byte.
    config = msgspec.structs.replace(
        TEST_CONFIG, send_queue_bytes=64 * 1024 * 1024, send_queue_items=16384
    )
    server, _, listeners = await start_pool(nursery, config)
    miner = await connect(listeners)
    await miner.login()
    (conn,) = server.connections()
    count, padding = 8000, "x" * 1000  # 8 MB: more than loopback's socket buffers hold
    for i in range(count):
        conn.show_message(f"{i} {padding}")
    assert conn.queued_bytes > 0  # the kernel took only part: the writer has the rest
    got: list[int] = []
    for _ in range(count + 100):
        message = await miner.read_message()
        if message.get("method") == "client.show_message":
            got.append(int(message["params"][0].split()[0]))
            if len(got) == count:
                break
    assert got == list(range(count))
    # And the connection carries on normally.
    assert (await miner.submit(miner.share()))["result"] is True


async def test_show_message_and_reconnect(nursery: trio.Nursery) -> None:
    server, _, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    await miner.login()
    (conn,) = server.connections()
    conn.show_message("hello miner")
    message = await miner.read_message()
    assert message == {"id": None, "method": "client.show_message", "params": ["hello miner"]}
    conn.reconnect(host="127.0.0.1", port=3334, wait_s=5)
    message = await miner.read_message()
    assert message["method"] == "client.reconnect"
    assert message["params"] == ["127.0.0.1", 3334, 5]
    await miner.expect_eof()
    # Without a host, the address the miner connected to (cpuminer ignores a bare reconnect).
    again = await connect(listeners)
    await again.login()
    (conn,) = server.connections()
    conn.reconnect()
    message = await again.read_until("client.reconnect")
    assert message["params"] == ["127.0.0.1", server.port, 0]
    await again.expect_eof()


async def test_scrypt_shares(nursery: trio.Nursery) -> None:
    config = StratumConfig(
        algorithm=Algorithm.SCRYPT,
        port=0,
        start_difficulty=1e-4,
        min_difficulty=1e-6,
        max_difficulty=1.0,
        vardiff=False,
    )
    _, pool, listeners = await start_pool(nursery, config)
    miner = await connect(listeners, Algorithm.SCRYPT)
    await miner.login()
    assert (await miner.submit(miner.share()))["result"] is True
    assert (await miner.submit(miner.share(valid=False)))["error"][0] == 23
    assert pool.stats.accepted == 1


class SlowSource:
    """A work source whose record_share waits until the test releases it."""

    algorithm = Algorithm.SHA256D

    def __init__(self) -> None:
        self.job = Job(
            source="order-1",
            seq=1,
            height=1,
            prevhash="00" * 32,
            coinb1="01" * 40,
            coinb2="02" * 40,
            merkle_branch=(),
            version="20000000",
            nbits="1d00ffff",
            ntime="6b0afc41",
            clean_jobs=True,
        )
        self.release = trio.Event()
        self.entered = trio.Event()
        self.recorded: list[Share] = []
        self.links: list[MinerLink] = []

    def layout_for(self, session_id: bytes) -> None:
        return None

    def connect(self, link: MinerLink) -> Job:
        self.links.append(link)
        return self.job

    def disconnect(self, link: MinerLink) -> None:
        self.links.remove(link)

    async def record_shares(self, shares: Sequence[Share]) -> None:
        self.entered.set()
        await self.release.wait()
        self.recorded.extend(shares)


async def serve_slow(
    nursery: trio.Nursery, *, timeout: float = 5.0
) -> tuple[StratumServer, SlowSource, Miner]:
    """A server over a ``SlowSource`` and a miner logged in as acct.rig1 whose reads wait at
    most ``timeout``."""
    source = SlowSource()
    server = await nursery.start(
        lambda task_status: serve_stratum(
            config=TEST_CONFIG,
            work_source=source,
            host="127.0.0.1",
            port=0,
            task_status=task_status,
        )
    )
    assert isinstance(server, StratumServer)
    assert server.port
    miner = Miner(await trio.open_tcp_stream("127.0.0.1", server.port))
    miner.timeout = timeout
    await miner.login("acct.rig1")
    return server, source, miner


async def test_reply_waits_for_record_share(nursery: trio.Nursery) -> None:
    _server, source, miner = await serve_slow(nursery)
    await miner.send("mining.submit", miner.share())
    with trio.fail_after(5):
        await source.entered.wait()
    # A job pushed while the share is being recorded goes out before the reply: the reply
    # waits until record_share returns.
    source.links[0].push_job(msgspec.structs.replace(source.job, seq=2, clean_jobs=False))
    notify = await miner.read_message()
    assert notify["method"] == "mining.notify"
    source.release.set()
    reply = await miner.read_message()
    assert reply["result"] is True
    assert source.recorded[0].accepted
    assert source.recorded[0].source == "order-1"
    assert source.recorded[0].account == "acct"


async def test_a_deadline_during_a_record_that_had_not_begun_answers_not_recorded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The work source waits before recording (as for room in a full journal) and the
    connection's idle deadline passes meanwhile: the share is answered as not recorded and
    counted nowhere, then the connection times out as it would have."""
    server, source, miner = await serve_slow(nursery, timeout=1000.0)
    with structlog.testing.capture_logs() as logs:
        await miner.send("mining.submit", miner.share())
        reply = await miner.read_message()
        assert reply["result"] is None
        assert reply["error"] == [20, NOT_RECORDED, None]
        await miner.expect_eof()
    assert source.recorded == []
    assert server.stats.shares_not_recorded == 1
    assert server.stats.shares_accepted == 0
    closed = [e for e in logs if e["event"] == "conn.closed"]
    assert [(e["reason"], e["accepted"], e["rejected"]) for e in closed] == [("idle_timeout", 0, 0)]


async def test_graceful_shutdown(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    await miner.login()
    with structlog.testing.capture_logs() as logs:
        server.shutdown()
        await miner.expect_eof()
        with trio.fail_after(5):
            while server.live_connections:
                await trio.sleep(0.01)
    closed = [e for e in logs if e["event"] == "conn.closed"]
    assert closed
    assert closed[0]["reason"] == "shutdown"
    assert pool.links == []
