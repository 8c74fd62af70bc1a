"""A market's bridge and gateways in one process over loopback: the hub (``marketplace.gateways``)
and ``stratum.gateway`` with real sockets, a real journal and real miners.

Between a gateway and the hub sits a ``Cutter``, a loopback relay the test can cut (both
sides closed, new connections refused until it is mended) or make swallow what the market
sends (so a batch is recorded but its ack never arrives).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio

from marketplace import gateways
from marketplace.api.admin_wire import StratumFault
from marketplace.control.faults import Faults
from marketplace.control.workers import Workers
from marketplace.core.gateway_marks import GatewayMarks
from marketplace.core.pool_hosts import AllowList
from marketplace.gateways import GatewayHub, LinkedGateway, settings_for
from marketplace.upstream import UpstreamManager
from stratum import link as wire
from stratum.core.shares import Algorithm
from stratum.gateway import (
    MARKET_UNAVAILABLE,
    GatewayLink,
    GatewayOptions,
    GatewayRefused,
    LinkSettings,
    run_gateway,
)

from .killcheck import journal_shares
from .miner import RawMiner, StratumError
from .node import SHA, Node, open_node, seed_buyer

SECRET = b"s" * 32
WAIT_S = 10


@dataclass(eq=False)
class Cutter:
    """A relay from a listening port to ``target``, which the test can cut and mend."""

    target: int
    port: int = 0
    swallow: bool = False
    _open: bool = True
    _scopes: list[trio.CancelScope] = field(default_factory=list)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        """Close every relayed connection; refuse new ones until ``mend``."""
        self._open = False
        for scope in self._scopes:
            scope.cancel()

    def mend(self) -> None:
        self._open = True
        self.swallow = False

    async def _relay(self, client: trio.SocketStream) -> None:
        if not self._open:
            await client.aclose()
            return
        server = await trio.open_tcp_stream("127.0.0.1", self.target)
        with trio.CancelScope() as scope:
            self._scopes.append(scope)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, False, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, True, nursery.cancel_scope)
        await client.aclose()
        await server.aclose()

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        from_market: bool,
        scope: trio.CancelScope,
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                if not (from_market and self.swallow):
                    await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


@dataclass
class Rig:
    node: Node
    hub: GatewayHub
    cutter: Cutter
    nursery: trio.Nursery

    async def gateway(
        self, name: str, *, secret: bytes = SECRET, via_cutter: bool = True
    ) -> tuple[GatewayLink, int]:
        """A gateway linked to the hub (through the cutter); its link and Stratum port."""
        port = self.cutter.port if via_cutter else self.hub.port
        assert port is not None
        options = GatewayOptions(
            link=LinkSettings(
                markets=(("127.0.0.1", port),),
                gateway_id=name,
                secret=secret,
                backoff_max_s=0.1,
            ),
            ports={SHA: 0},
        )
        link: GatewayLink = await self.nursery.start(
            partial(run_gateway, options, stop=trio.Event())
        )
        return link, link.servers[0].port or 0


@asynccontextmanager
async def open_rig(
    tmp_path: Path, *, offset_ms: Callable[[], int] = lambda: 0
) -> AsyncIterator[Rig]:
    async with open_node(tmp_path / "m.db") as node, trio.open_nursery() as nursery:
        hub = GatewayHub(
            bridges={SHA: node.bridge},
            marks=node.core.gateway_marks,
            settings=settings_for({SHA: node.bridge.config}),
            secret=SECRET,
            offset_ms=offset_ms,
        )
        hub_port = await nursery.start(partial(hub.run, host="127.0.0.1", port=0))
        cutter = Cutter(hub_port)
        await nursery.start(cutter.run)
        yield Rig(node=node, hub=hub, cutter=cutter, nursery=nursery)
        nursery.cancel_scope.cancel()


async def miner_on(port: int, name: str) -> RawMiner:
    miner = RawMiner(await trio.open_tcp_stream("127.0.0.1", port), timeout=WAIT_S)
    await miner.login(f"seller.{name}")
    return miner


async def test_shares_through_two_gateways_are_journaled_once(tmp_path: Path) -> None:
    acked: list[str] = []
    async with open_rig(tmp_path) as rig:
        order_id = await seed_buyer(rig.node)
        observed: list[tuple[float, int]] = []
        rig.hub.ack_observers[SHA] = lambda seconds, shares: observed.append((seconds, shares))
        (link_a, port_a), (link_b, port_b) = await rig.gateway("a"), await rig.gateway("b")
        assert {link_a.prefix, link_b.prefix} == {1, 2}
        miners = [await miner_on(port, f"w{k}") for k, port in enumerate([port_a, port_b] * 2)]
        for round_ in range(5):
            for k, miner in enumerate(miners):
                name = f"w{k}r{round_}"
                assert await miner.call("mining.authorize", [f"seller.{name}", "x"]) is True
                assert await miner.submit(f"seller.{name}") is True
                acked.append(name)
        # Extranonce1 values are unique across the gateways, under each one's prefix.
        extranonces = {bytes.fromhex(m.extranonce1) for m in miners}
        assert len(extranonces) == len(miners)
        assert {e[0] for e in extranonces} == {1, 2}
        # Every worker joined the market's fleet and got the order's jobs.
        assert all(m.latest.coinb1 for m in miners)
        assert len(rig.hub.connections()) == 4
        # The market's part of each acknowledgement was observed, every share once.
        assert sum(shares for _, shares in observed) == len(acked)
        assert all(seconds >= 0 for seconds, _ in observed)
        assert {rig.node.core.fleet.assignment(k) for k in rig.node.core.fleet.assignments()} == {
            order_id
        }
    shares, _ = await journal_shares(tmp_path / "m.db")
    names = [s.worker for s in shares if s.accepted]
    assert sorted(names) == sorted(acked)
    assert {s.order_id for s in shares} == {order_id}


async def test_a_lost_link_answers_20_and_a_resent_batch_is_taken_once(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        await seed_buyer(rig.node)
        link, port = await rig.gateway("a")
        held = await miner_on(port, "held")
        other = await miner_on(port, "other")
        answers: list[object] = []

        async def submit_held() -> None:
            answers.append(await held.submit("seller.held"))

        journaled = rig.node.core.engine.events_journaled
        rig.cutter.swallow = True  # the market records the batch; its ack never arrives
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_held)
            with trio.fail_after(WAIT_S):
                while rig.node.core.engine.events_journaled == journaled:
                    await trio.sleep(0.01)
            rig.cutter.cut()
            with trio.fail_after(WAIT_S):
                while link.up:
                    await trio.sleep(0.01)
            assert not answers  # the held miner waits for the re-sent batch's answer
            # While the link is down a submit is answered 20, which is no reject.
            with pytest.raises(StratumError) as refused:
                await other.submit("seller.other")
            assert refused.value.code == 20
            assert MARKET_UNAVAILABLE in str(refused.value)
            rig.cutter.mend()
        assert answers == [True]
        assert link.resent >= 1
        # The link is back (the market joined the miners again, with a clean job): the same
        # miner's next share goes through.
        await other.pump()
        assert await other.submit("seller.other") is True
    shares, _ = await journal_shares(tmp_path / "m.db")
    names = [s.worker for s in shares if s.accepted]
    assert sorted(names) == ["held", "other"]


async def test_the_operator_sees_and_kicks_workers_on_every_gateway(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        (_, port_a), (_, port_b) = await rig.gateway("a"), await rig.gateway("b")
        miner_a = await miner_on(port_a, "on-a")
        miner_b = await miner_on(port_b, "on-b")
        assert await miner_b.submit("seller.on-b") is True
        workers = Workers(fleet=rig.node.core.fleet, clock=rig.node.core.clock)
        workers.add_server(rig.node.server)
        workers.add_gateways(rig.hub)
        listed = {w.name: w for w in map(workers.describe, workers.connections(SHA))}
        assert set(listed) == {"seller.on-a", "seller.on-b"}
        assert listed["seller.on-b"].shares["accepted"] == 1
        assert listed["seller.on-a"].extranonce1 == miner_a.extranonce1
        workers.message("seller.on-a", "hello from the operator")
        note = await miner_a.read_notifications_until("client.show_message")
        assert note["params"] == ["hello from the operator"]
        workers.kick("seller.on-b")
        with trio.fail_after(WAIT_S):
            assert await miner_b.stream.receive_some(65536) == b""
        with trio.fail_after(WAIT_S):
            while len(rig.hub.connections()) != 1:
                await trio.sleep(0.01)
        assert [w.name for w in map(workers.describe, workers.connections())] == ["seller.on-a"]


async def test_a_gateway_with_a_wrong_secret_is_refused(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        with trio.fail_after(WAIT_S), pytest.raises(ExceptionGroup) as refused:
            await rig.gateway("intruder", secret=b"not the secret", via_cutter=False)
        assert refused.group_contains(GatewayRefused, match="wrong gateway secret")
        assert rig.hub.gateways == {}
        assert rig.node.core.fleet.assignments() == {}


@pytest.mark.parametrize("algorithm", [Algorithm.SHA256D])
async def test_gateway_settings_come_from_the_market(tmp_path: Path, algorithm: Algorithm) -> None:
    async with open_rig(tmp_path) as rig:
        link, _ = await rig.gateway("a")
        assert link.stratum is not None
        mine = link.servers[0].config
        market = rig.node.bridge.config
        assert (mine.start_difficulty, mine.vardiff, mine.job_interval_s) == (
            market.start_difficulty,
            market.vardiff,
            market.job_interval_s,
        )
        assert mine.algorithm is algorithm


async def test_a_gateway_that_does_not_read_loses_its_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateways, "MAX_QUEUED_FRAMES", 2)
    send, receive = trio.open_memory_channel[bytes](float("inf"))
    hub = GatewayHub(bridges={}, marks=GatewayMarks(), settings={}, secret=SECRET)
    gateway = LinkedGateway(
        hub=hub, gateway="g", incarnation="i", prefix=1, peer="?", outbox=send, frames=receive
    )
    for _ in range(2):
        gateway.send(wire.Message(conn=1, text="hello"))
    assert not gateway.scope.cancel_called
    gateway.send(wire.Message(conn=1, text="one too many"))
    assert gateway.scope.cancel_called
    gateway.send(wire.Message(conn=1, text="after"))  # the link is gone: nothing, no error
    assert len([receive.receive_nowait() for _ in range(2)]) == 2


async def test_a_gateways_clock_keeps_market_time(tmp_path: Path) -> None:
    # control.md: market time is wall time plus a journaled offset; a gateway checks ntime and
    # times its miners on the same clock as the market that builds its jobs.
    hour, day = 3_600_000, 86_400_000
    lead = [hour]  # a market whose time was advanced before the gateway linked
    async with open_rig(tmp_path, offset_ms=lambda: lead[0]) as rig:
        link, _port = await rig.gateway("a")
        assert link.offset_ms == hour
        clock = link.servers[0].clock
        assert abs(clock() - (time.time() * 1000 + hour)) < 5_000
        lead[0] += day
        rig.hub.clock_jumped(day)
        with trio.fail_after(WAIT_S):
            while link.offset_ms != hour + day:
                await trio.sleep(0.01)
        assert abs(clock() - (time.time() * 1000 + hour + day)) < 5_000


async def until(what: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not what():
            await trio.sleep(0.01)


async def test_the_operators_stratum_faults_reach_every_gateway(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        core = rig.node.core
        await seed_buyer(rig.node)
        link, port = await rig.gateway("a")
        miner = await miner_on(port, "w0")
        assert await miner.submit("seller.w0") is True
        workers = Workers(fleet=core.fleet, clock=core.clock)
        workers.add_gateways(rig.hub)
        upstreams = UpstreamManager(scheduler=core.scheduler, pools=core.pools, allow=AllowList())
        faults = Faults(workers, upstreams)
        faults.set(StratumFault(reject_rate=1.0, seed=3))
        await until(lambda: link.servers[0].faults is not None)
        with pytest.raises(StratumError) as refused:
            await miner.submit("seller.w0")
        assert refused.value.code == 21
        # A gateway that links later carries them out too.
        later, _ = await rig.gateway("b")
        await until(lambda: later.servers[0].faults is not None)
        faults.clear()
        await until(lambda: link.servers[0].faults is None and later.servers[0].faults is None)
        assert await miner.submit("seller.w0") is True
