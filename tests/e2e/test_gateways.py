"""``hashmarket serve --gateways 2``, the real program: two local gateway processes on the
market's Stratum ports, real CPU workers and loopback miners mining one order, the operator's
view across gateways, and one gateway killed with SIGKILL under load.

The loopback miners submit each share under a fresh worker name (authorized just before), so a
journaled ``ShareRecorded.worker`` names one submission: after the run the journal must hold
every share a miner saw acknowledged exactly once, and nothing no miner submitted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

import trio

from marketplace.testing import TrioMarket
from tests.marketplace_io.killcheck import AFTER, journal_shares, share_after_restart
from tests.marketplace_io.miner import RawMiner

from .failover import Failover, mine
from .test_disk_full import PRICE, TINY

#: The kernel spreads connections over the two gateways by a hash (SO_REUSEPORT): with 12
#: miners and 2 CPU workers all land on one gateway about once in 8,000 runs (4 made that once
#: in 32, which the spread and the kill below depend on).
MINERS = 12
BEFORE = 40
AFTER_KILL = 40
CPU_DIFFICULTY = 1e-4
DAY_S = 86_400


async def test_two_gateways_mine_an_order_and_survive_one_killed(tmp_path: Path) -> None:
    seen = Failover()
    async with TrioMarket(
        directory=tmp_path,
        gateways=2,
        sha256d_start_difficulty=TINY,
        sha256d_min_difficulty=TINY,
        # The CPU workers ask for more (d=...): a share every few ms each, not thousands a second.
        sha256d_max_difficulty=CPU_DIFFICULTY,
        # Vardiff would raise the loopback miners' difficulty past what they brute-force.
        target_share_interval=0.001,
        rebalance_interval=1,
    ) as market:
        pids = market.gateway_pids
        assert len(pids) == 2
        buyer = await market.buyer("buyer")
        order = await buyer.client.create_order(
            algorithm="sha256d", type="standard", limit="0", amount="0.5", price=PRICE
        )
        port = market.stratum_port()
        cpu = [market.worker(f"seller.cpu{k}", password=f"d={CPU_DIFFICULTY}") for k in range(2)]
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for k in range(MINERS):
                nursery.start_soon(partial(mine, port, f"m{k}", seen, done, any_after_kill=True))
            with trio.fail_after(60):
                while len(seen.acked) < BEFORE:
                    await trio.sleep(0.02)
            # The operator sees every worker, whichever gateway it is on, with its shares.
            cpu_names = {f"seller.cpu{k}" for k in range(len(cpu))}
            with trio.fail_after(60):
                while True:
                    listed = await market.operator.connected_workers("sha256d")
                    counted = {w.name: w.shares.get("accepted", 0) for w in listed}
                    if all(counted.get(name, 0) >= 3 for name in cpu_names):
                        break
                    await trio.sleep(0.1)
            names = {w.name for w in listed}
            assert {f"seller.m{k}" for k in range(MINERS)} | cpu_names <= names
            assert {w.extranonce1[:2] for w in listed if w.extranonce1} == {"01", "02"}
            assert all(w.order_id == order.id for w in listed)
            for worker in cpu:
                await trio.to_thread.run_sync(worker.stop)
            os.kill(pids[0], signal.SIGKILL)
            seen.killed_at = started = time.monotonic()
            with trio.fail_after(60):
                while (
                    sum(seen.acked_after_kill.values()) < AFTER_KILL
                    or len(seen.acked_after_kill) < MINERS
                ):
                    await trio.sleep(0.02)
            done.set()
            assert time.monotonic() - started < 60
        assert not seen.crashes, seen.crashes
        # The market started another gateway in the killed one's place, on the same port.
        with trio.fail_after(30):
            while len([e for e in market.events("gateway.listening") if "gateway" in e]) < 3:
                await trio.sleep(0.05)
        (exited,) = market.events("gateway.exited")
        assert (exited["pid"], exited["status"]) == (pids[0], -signal.SIGKILL)
        # The killed gateway's miners came back on the same port; the others never left.
        assert sum(seen.connects.values()) > MINERS
        await share_after_restart(port)
        summaries = [w.events("worker.summary")[-1] for w in cpu]
        assert await market.stop() == 0
    shares, _ = await journal_shares(tmp_path / "market.db")
    journaled = [s.worker for s in shares if s.accepted and s.worker != AFTER]
    raw = [name for name in journaled if not name.startswith("cpu")]
    assert len(raw) == len(set(raw)), "a share was journaled twice"
    assert seen.acked <= set(raw), f"lost: {sorted(seen.acked - set(raw))}"
    assert set(raw) <= seen.submitted
    for k, summary in enumerate(summaries):
        accepted = summary["accepted"]
        assert accepted > 0
        # Each accepted share is journaled; one in flight when the worker stopped may be too.
        assert accepted <= journaled.count(f"cpu{k}") <= accepted + 1


async def test_a_gateway_with_a_wrong_secret_exits_1(tmp_path: Path) -> None:
    async with TrioMarket(directory=tmp_path, gateway_port=0, gateway_secret="the secret") as m:
        assert m.gateway_port is not None
        command = [
            *(sys.executable, "-m", "marketplace", "gateway"),
            *("--market", f"127.0.0.1:{m.gateway_port}", "--gateway-secret", "a guess"),
            *("--sha256d-port", "0", "--scrypt-port", "0", "--log-format", "json"),
        ]
        with trio.fail_after(30):
            done = await trio.run_process(command, capture_stderr=True, check=False)
        assert done.returncode == 1
        assert done.stderr.decode().strip().endswith("error: wrong gateway secret")
        assert [e["error"] for e in m.events("gateway.refused")] == ["wrong gateway secret"]


async def test_market_time_reaches_the_gateways() -> None:
    # A gateway checks ntime on market time (control.md), like the market's own listeners:
    # after a day of admin.time.advance the jobs it passes on are a day ahead of the wall
    # clock, and their shares are still accepted.
    with trio.fail_after(120):
        async with TrioMarket(
            gateways=1, sha256d_start_difficulty=TINY, sha256d_min_difficulty=TINY
        ) as market:
            buyer = await market.buyer("buyer")
            await buyer.client.create_order(
                algorithm="sha256d", type="standard", limit="0", amount="0.5", price=PRICE
            )
            stream = await trio.open_tcp_stream("127.0.0.1", market.stratum_port())
            miner = RawMiner(stream, timeout=10)
            await miner.login("seller.w1")
            assert await miner.submit("seller.w1") is True
            await market.advance(DAY_S)
            job = await miner.pump()  # the block that came during the day
            assert int(job.params[7], 16) > time.time() + DAY_S - 600
            assert await miner.submit("seller.w1", job) is True
