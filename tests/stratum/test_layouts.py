"""Layouts over real loopback TCP: a work source gives a connection another extranonce1 and
extranonce2 size (at subscribe, by session id, or later with ``mining.set_extranonce``) and
narrows the version bits it may roll (``mining.set_version_mask``); shares are checked against
the layout their job was sent under, and the session id stays the connection's own."""

from __future__ import annotations

from collections.abc import Callable

import trio

from stratum.config import StratumConfig
from stratum.core.jobs import Layout
from stratum.pool import PoolWorkSource
from stratum.server import StratumServer, trio_wall_clock

from .helpers import TEST_CONFIG, connect, start_pool

POOL_LAYOUT = Layout(extranonce1=bytes.fromhex("aabbccdd0007"), extranonce2_size=2)


class ReservingPool(PoolWorkSource):
    """The standalone pool, giving a reserved layout to the session ids it was told."""

    def __init__(self, *, config: StratumConfig, clock: Callable[[], int]) -> None:
        super().__init__(config=config, clock=clock)
        self.reserved: dict[bytes, Layout] = {}
        self.asked: list[bytes] = []

    def layout_for(self, session_id: bytes) -> Layout | None:
        self.asked.append(session_id)
        return self.reserved.get(session_id)


async def start_reserving(
    nursery: trio.Nursery,
) -> tuple[StratumServer, ReservingPool, list[trio.SocketListener]]:
    clock = trio_wall_clock()
    pool = ReservingPool(config=TEST_CONFIG, clock=clock)
    server = StratumServer(config=TEST_CONFIG, work_source=pool, clock=clock)
    await nursery.start(pool.run)
    listeners = await nursery.start(server.run)
    return server, pool, listeners


async def test_set_extranonce_moves_a_subscribed_miner_to_a_layout(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_pool(nursery)
    plain = await connect(listeners)
    await plain.login("acct.plain")
    miner = await connect(listeners)
    assert (await miner.call("mining.extranonce.subscribe", []))["result"] is True
    reply = await miner.subscribe()
    session_id = reply["result"][0][1][1]
    assert (await miner.authorize())["result"] is True
    await miner.read_until("mining.notify")
    old = miner.share()
    conns = {c.worker: c for c in server.connections()}
    job = pool.current_job
    # A miner that never asked for set_extranonce cannot move in place: nothing is sent.
    assert conns["plain"].change_layout(POOL_LAYOUT, job) is False
    assert conns["rig1"].change_layout(POOL_LAYOUT, job) is True
    message = await miner.read_message()
    assert message == {
        "id": None,
        "method": "mining.set_extranonce",
        "params": ["aabbccdd0007", 2],
    }
    notify = await miner.read_until("mining.notify")
    assert notify["params"][8] is True
    assert miner.extranonce2_size == 2
    # The new layout applies to the new job: a 2-byte extranonce2, the pool's extranonce1.
    good = miner.share()
    assert len(bytes.fromhex(good[2])) == 2
    assert (await miner.submit(good))["result"] is True
    reply = await miner.submit([*good[:2], "00000000", *good[3:]])
    assert reply["error"][0] == 20
    assert "expected 2 bytes" in reply["error"][1]
    # The old job was made stale by the clean job that came with the move.
    assert (await miner.submit(old))["error"][0] == 21
    # The session id is still the connection's own: a miner resuming it while it lives does
    # not get it, once the connection is gone it does.
    taken = await connect(listeners)
    reply = await taken.call("mining.subscribe", ["m/1", session_id])
    assert reply["result"][0][1][1] != session_id
    await miner.stream.aclose()
    with trio.fail_after(5):
        while len(server.connections()) > 2:
            await trio.sleep(0.01)
    resumed = await connect(listeners)
    reply = await resumed.call("mining.subscribe", ["m/1", session_id])
    assert reply["result"][0][1][1] == session_id
    # Back on its own layout: its session id is its extranonce1.
    assert reply["result"][1:] == [session_id, 4]


async def test_a_resumed_session_gets_the_layout_reserved_for_it(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_reserving(nursery)
    first = await connect(listeners)
    reply = await first.subscribe()
    session_id = reply["result"][0][1][1]
    assert first.extranonce1.hex() == session_id
    await first.stream.aclose()
    pool.reserved[bytes.fromhex(session_id)] = POOL_LAYOUT
    with trio.fail_after(5):
        while server.connections():
            await trio.sleep(0.01)
    resumed = await connect(listeners)
    reply = await resumed.call("mining.subscribe", ["cpuminer/2.5.1", session_id])
    assert reply["result"] == [
        [["mining.set_difficulty", session_id], ["mining.notify", session_id]],
        "aabbccdd0007",
        2,
    ]
    resumed.extranonce1, resumed.extranonce2_size = POOL_LAYOUT.extranonce1, 2
    assert (await resumed.authorize())["result"] is True
    await resumed.read_until("mining.notify")
    assert (await resumed.submit(resumed.share()))["result"] is True
    assert pool.asked == [bytes.fromhex(session_id)] * 2


async def test_a_source_narrows_the_version_bits_a_miner_rolls(nursery: trio.Nursery) -> None:
    server, pool, listeners = await start_pool(nursery)
    miner = await connect(listeners)
    reply = await miner.call(
        "mining.configure", [["version-rolling"], {"version-rolling.mask": "ffffffff"}]
    )
    assert reply["result"]["version-rolling.mask"] == "1fffe000"
    await miner.login()
    (conn,) = server.connections()
    # The same extranonce, fewer bits: no set_extranonce, so any miner can take it in place.
    own = Layout(extranonce1=miner.extranonce1, extranonce2_size=4, version_mask=0x00FFE000)
    assert conn.change_layout(own, pool.current_job) is True
    message = await miner.read_message()
    assert message == {"id": None, "method": "mining.set_version_mask", "params": ["00ffe000"]}
    await miner.read_until("mining.notify")
    assert (await miner.submit(miner.share(version_bits=0x00002000)))["result"] is True
    reply = await miner.submit(miner.share(version_bits=0x10000000))
    assert reply["error"][0] == 20
    assert "mask" in reply["error"][1]
    # Back to its own layout: every negotiated bit again.
    assert conn.change_layout(None, pool.current_job) is True
    message = await miner.read_message()
    assert message == {"id": None, "method": "mining.set_version_mask", "params": ["1fffe000"]}
    await miner.read_until("mining.notify")
    assert (await miner.submit(miner.share(version_bits=0x10000000)))["result"] is True
