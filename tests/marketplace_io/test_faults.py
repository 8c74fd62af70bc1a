"""Injected faults (control.md, "Faults") seen from a raw Stratum client and the client
library, on an in-process node: each fault, its seed, its scope, and clearing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio
from structlog.testing import capture_logs

from marketplace.api.admin_wire import StratumFault
from marketplace.client import HTTP_ERROR, ApiError
from marketplace.control.faults import StratumTarget

from .miner import RawMiner, StratumError
from .test_assembly import TINY
from .test_control import controlled, miner

STALE = 21


async def outcomes(rig: RawMiner, count: int) -> list[bool]:
    """Submit ``count`` valid shares; which were accepted (the others answered stale)."""
    codes = []
    for _ in range(count):
        try:
            codes.append(await rig.submit("seller.rig"))
        except StratumError as error:
            codes.append(error.code)
    assert set(codes) <= {True, STALE}, codes
    return [code is True for code in codes]


async def until_closed(rig: RawMiner) -> None:
    """Read lines until the server closes the connection (bounded by the caller)."""
    try:
        while True:
            await rig._read_line()
    except EOFError:
        return


async def test_stale_answers_are_uncharged_and_seeds_repeat(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with controlled(tmp_path) as (node, operator, buyer):
            await buyer.deposit("1")
            order = await buyer.create_order(
                algorithm="sha256d", type="standard", price="1", limit="0", amount="0.01"
            )
            rig = await miner(node, "seller.rig")
            assert await outcomes(rig, 2) == [True, True]
            spent = (await buyer.get_order(order.id)).spent
            await operator.set_fault("stratum", worker="seller.rig", reject_rate=1.0)
            assert await outcomes(rig, 3) == [False] * 3
            assert (await buyer.get_order(order.id)).spent == spent  # stale: not charged
            (listed,) = await operator.connected_workers()
            assert listed.shares == {"accepted": 2, "stale": 3}
            # Another worker's shares are not this fault's.
            other = await miner(node, "seller.other")
            assert await other.submit("seller.other") is True

            await operator.set_fault("stratum", worker="seller.rig", reject_rate=0.5, seed=7)
            first = await outcomes(rig, 16)
            assert 0 < sum(first) < 16
            await operator.set_fault("stratum", worker="seller.rig", reject_rate=0.5, seed=7)
            assert await outcomes(rig, 16) == first  # the same seed, the same sequence
            await operator.set_fault("stratum", worker="seller.rig", reject_rate=0.5, seed=8)
            assert await outcomes(rig, 16) != first
            await operator.clear_faults()
            assert await outcomes(rig, 2) == [True, True]


async def test_latency_stall_junk_and_drops(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with controlled(tmp_path) as (node, operator, _buyer):
            rig = await miner(node, "seller.rig")
            await operator.set_fault("stratum", latency_ms=300)
            started = trio.current_time()
            assert await rig.submit("seller.rig") is True
            assert trio.current_time() - started >= 0.3
            faults = await operator.list_faults()
            assert [(f.latency_ms, f.algorithm, f.worker) for f in faults] == [(300, None, None)]

            # Stall: a block finds no new job on its way.
            await operator.set_fault("stratum", stall=True)
            await operator.new_block("sha256d")
            rig.timeout = 0.8
            with pytest.raises(trio.TooSlowError):
                await rig.pump()
            await operator.clear_faults()
            rig.timeout = 10
            await operator.new_block("sha256d")
            assert (await rig.pump()).clean_jobs

            # Junk: a line that is not JSON before our lines.
            await operator.set_fault("stratum", algorithm="sha256d", junk_rate=1.0)
            await operator.new_block("sha256d")
            with pytest.raises(msgspec.DecodeError):
                await rig._read_line()
            await operator.clear_faults()

            with capture_logs() as logs:
                await operator.set_fault("stratum", worker="seller.rig", drop_after_s=0.2)
                await until_closed(rig)
            closed = [e for e in logs if e["event"] == "conn.closed"]
            assert [e["reason"] for e in closed] == ["dropped"]
            # A worker that reconnects is dropped again after as long.
            again = await miner(node, "seller.rig")
            started = trio.current_time()
            await until_closed(again)
            assert trio.current_time() - started >= 0.15


async def test_api_faults_spare_the_operator(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with controlled(tmp_path) as (_node, operator, buyer):
            await buyer.balance()  # synced and signed in before the fault
            await operator.set_fault("api", error_rate=1.0)
            with pytest.raises(ApiError) as info:
                await buyer.balance()
            assert (info.value.code, info.value.data) == (HTTP_ERROR, {"status": 503})
            assert await buyer.server_time() > 0  # how every client finds the clock
            assert len(await operator.list_faults()) == 1  # operator calls: never faulted
            await operator.set_fault("api", rate_limit=2)
            await buyer.balance()
            await buyer.balance()
            with pytest.raises(ApiError) as info:
                await buyer.balance()
            assert info.value.code == 4029
            for _ in range(5):
                await operator.list_faults()
            await operator.set_fault("api", latency_ms=250)
            started = trio.current_time()
            await buyer.market_info()
            assert trio.current_time() - started >= 0.25
            await operator.clear_faults()
            started = trio.current_time()
            await buyer.market_info()
            assert trio.current_time() - started < 0.25


def test_the_same_seed_gives_the_same_decisions_per_worker() -> None:
    class Link:
        def __init__(self, account: str, conn_id: int) -> None:
            self.account, self.worker, self.conn_id, self.difficulty = account, "rig", conn_id, TINY

    def decisions(links: list[Link], seed: int = 42) -> dict[str, list[bool]]:
        target = StratumTarget()
        target.set(StratumFault(reject_rate=0.6, junk_rate=0.3, seed=seed), set_at=0.0)
        seen: dict[str, list[bool]] = {}
        for link in links:
            target.junk_before_line(link)  # another kind of decision: its own stream
            seen.setdefault(link.account, []).append(target.reject_share(link))
        return seen

    a, b = Link("a", 1), Link("b", 2)
    one = decisions([a, b] * 20)
    # Another interleaving, another connection id: each worker's sequence is the same.
    assert decisions([b] * 20 + [Link("a", 99)] * 20) == one
    assert one["a"] != one["b"]
    assert decisions([a, b] * 20, seed=43) != one
