"""The market's side of its Stratum gateways: the gateway port, and each gateway's miners as
``MinerLink`` objects of the market's bridges (``../shared/spec/cluster.md``).

Theory of operation
-------------------
``GatewayHub`` listens on the gateway port (``serve --gateway-port``, loopback by default). A
gateway proves it holds the shared secret (``stratum.link``'s hello) and is given an
extranonce1 prefix of its own (its old one back if nobody holds it: its live connections still
use it; prefix 0 is the market's own listeners') and every Stratum setting of this market. From
then on each ``Join`` becomes a ``RemoteMinerLink`` that the algorithm's bridge gets through
``connect``, exactly as a local connection: allocation, charging, moves, proxy forwarding, the
fleet's statistics and ``worker.list`` see no difference. What the bridge does to a link
(``push_job``, ``change_layout``, ``reconnect``) and what the operator does (``admin.worker.*``
through ``control.workers``) become frames to that gateway. A lost link disconnects its miners
from the bridges (a gateway that comes back joins them again).

Shares. A ``Shares`` batch is recorded with ``MarketWorkSource.record_shares`` in one command
that also journals the batch's ids as taken (``core.gateway_marks``), so what was recorded and
what was taken are durable together; a batch whose ids were taken before (the gateway re-sent
it after a lost link; this market, or the one before it on the database, took it) records
nothing and is answered as durable; one re-sent while its first sending is still being
recorded waits for that one's answer. The answer is ``Ack`` (``refusal``: the storage's, which
the miners hear with code 20). Batches are recorded in the hub's nursery, not the link's: a
link lost mid-record does not cancel a record that has begun.

Moves between gateways. A miner the bridge tells to reconnect (it cannot take a new extranonce
in place) may come back through any gateway on the port: the layout reserved for its session
goes to every gateway (``Reserve``) before the ``Reconnect``.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
import structlog
import trio

from marketplace.bridge import MarketWorkSource
from marketplace.core.gateway_marks import GatewayMarks
from stratum import link as wire
from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, ShareNotRecorded
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason
from stratum.linkio import keep_alive, read_messages, receive_message, write_frames

log = structlog.get_logger("marketplace.gateways")

#: The market's own Stratum listeners hand out extranonce1 values under this prefix.
MARKET_PREFIX = 0
#: Frames queued for a gateway beyond this mean a gateway that does not read (jobs for some
#: 100,000 miners at once, or a stuck process): its link is closed, its miners leave.
MAX_QUEUED_FRAMES = 200_000


@dataclass
class RemoteSession:
    """What ``admin.worker.list`` shows of a remote connection's session (the fields it reads
    of a local ``ServerSession``), kept from the join and the shares."""

    user_agent: str | None
    difficulty: float
    extranonce1: bytes | None
    version_rolling_mask: int
    extranonce_subscribed: bool
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class RemoteMinerLink:
    """One miner connection on a gateway, as the market's bridge and operator see it."""

    def __init__(self, *, gateway: LinkedGateway, join: wire.Join, config: StratumConfig) -> None:
        self._gateway = gateway
        self._join = join
        self._own_size = config.extranonce2_size
        layout = join.layout
        self._extranonce = self._shape(layout)
        self.session = RemoteSession(
            user_agent=join.user_agent,
            difficulty=join.difficulty,
            extranonce1=self._extranonce[0],
            version_rolling_mask=join.version_mask,
            extranonce_subscribed=join.extranonce_subscribed,
        )
        self.opened_at = trio.current_time()

    def _shape(self, layout: Layout | None) -> tuple[bytes, int]:
        if layout is None:
            return self._join.session_id, self._own_size
        return layout.extranonce1, layout.extranonce2_size

    # ------------------------------------------------------------------ MinerLink

    @property
    def conn_id(self) -> int:
        return self._join.conn

    @property
    def account(self) -> str:
        return self._join.account

    @property
    def worker(self) -> str:
        return self._join.worker

    @property
    def difficulty(self) -> float:
        return self.session.difficulty

    @property
    def session_id(self) -> bytes:
        return self._join.session_id

    @property
    def extranonce_subscribed(self) -> bool:
        return self._join.extranonce_subscribed

    @property
    def algorithm(self) -> Algorithm:
        return self._join.algorithm

    @property
    def peer(self) -> str:
        return self._join.peer

    @property
    def gateway(self) -> str:
        """The id of the gateway the miner is connected to."""
        return self._gateway.gateway

    @property
    def local_address(self) -> tuple[str, int]:
        """The address and port the miner connected to (on its gateway)."""
        return self._join.local_host, self._join.local_port

    def push_job(self, job: Job) -> None:
        """Send ``job`` through the gateway. Never blocks."""
        self._gateway.send(wire.PushJob(conn=self.conn_id, job=job))

    def change_layout(self, layout: Layout | None, job: Job) -> bool:
        """As ``MinerLink.change_layout``: False when the extranonce would change and the
        miner did not subscribe to extranonce changes (when it authorized)."""
        shape = self._shape(layout)
        if shape != self._extranonce and not self.extranonce_subscribed:
            return False
        self._extranonce = shape
        self.session.extranonce1 = shape[0]
        self._gateway.send(wire.ChangeLayout(conn=self.conn_id, layout=layout, job=job))
        return True

    def reconnect(
        self, *, host: str | None = None, port: int | None = None, wait_s: int = 0
    ) -> None:
        """Tell every gateway the layout the bridge keeps for this session (the miner may come
        back through any of them), then the miner to reconnect (default: where it came in)."""
        self._gateway.hub.reserve(self.algorithm, self.session_id)
        if host is None:
            host, port = self.local_address
        self._gateway.send(wire.Reconnect(conn=self.conn_id, host=host, port=port, wait_s=wait_s))

    # ------------------------------------------------------------------ the operator's

    def show_message(self, text: str) -> None:
        """Send ``client.show_message``."""
        self._gateway.send(wire.Message(conn=self.conn_id, text=text))

    def set_difficulty(self, difficulty: float) -> None:
        """Set the share difficulty now (vardiff resumes from it)."""
        self.session.difficulty = difficulty
        self._gateway.send(wire.Difficulty(conn=self.conn_id, difficulty=difficulty))

    def close(self, reason: CloseReason = CloseReason.KICKED) -> None:
        """Close the connection (after what is queued for it)."""
        del reason  # the gateway closes it as kicked: the only reason the operator gives
        self._gateway.send(wire.Kick(conn=self.conn_id))

    def drop(self) -> None:
        """Close at once, flushing nothing (an injected fault)."""
        self._gateway.send(wire.Kick(conn=self.conn_id, drop=True))


@dataclass(eq=False)
class LinkedGateway:
    """One gateway's live link."""

    hub: GatewayHub
    gateway: str
    incarnation: str
    prefix: int
    peer: str
    outbox: trio.MemorySendChannel[bytes]
    frames: trio.MemoryReceiveChannel[bytes]
    links: dict[int, RemoteMinerLink] = field(default_factory=dict)
    ports: dict[str, int] | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def send(self, message: wire.MarketMessage) -> None:
        """Queue a frame for the gateway; nothing if the link is gone. A gateway that takes
        none of ``MAX_QUEUED_FRAMES`` is not reading: its link is closed instead."""
        if self.outbox.statistics().current_buffer_used >= MAX_QUEUED_FRAMES:
            log.warning("gateway.not_reading", gateway=self.gateway)
            self.scope.cancel()
            self.outbox.close()
            return
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self.outbox.send_nowait(wire.encode(message))


@dataclass(eq=False)
class _Taking:
    done: trio.Event = field(default_factory=trio.Event)
    refusal: str | None = None


class GatewayHub:
    """The gateway port and every linked gateway's miners (see the module doc)."""

    def __init__(
        self,
        *,
        bridges: Mapping[Algorithm, MarketWorkSource],
        marks: GatewayMarks,
        settings: Mapping[Algorithm, StratumConfig],
        secret: bytes,
        offset_ms: Callable[[], int] = lambda: 0,
        transit_s: float = 15.0,
        handshake_timeout_s: float = 5.0,
    ) -> None:
        if not secret:
            raise ValueError("gateways need a shared secret")
        self._bridges = dict(bridges)
        self._marks = marks
        self._settings = dict(settings)
        self._secret = secret
        #: Market time's lead over wall time now: the gateways keep it.
        self._offset_ms = offset_ms
        self._transit_s = transit_s
        self._handshake_timeout_s = handshake_timeout_s
        self.port: int | None = None
        self.gateways: dict[str, LinkedGateway] = {}
        self._taking: dict[tuple[str, str, int], _Taking] = {}
        self._changed = trio.Event()
        self._records: trio.Nursery | None = None
        self._listeners: trio.CancelScope | None = None
        #: Per algorithm, told ``(seconds, shares)`` for each batch from its arrival to its
        #: answer (the market's part of a gateway share's acknowledgement).
        self.ack_observers: dict[Algorithm, Callable[[float, int], None]] = {}
        #: The operator's Stratum faults in force, which every gateway carries out too.
        self._faults = wire.Faults(faults=[])

    # ------------------------------------------------------------------ views

    def connections(self, algorithm: Algorithm | None = None) -> list[RemoteMinerLink]:
        """Every miner connection on a linked gateway (of ``algorithm`` only, if given)."""
        return [
            link
            for gateway in self.gateways.values()
            for link in gateway.links.values()
            if algorithm is None or link.algorithm is algorithm
        ]

    def live_connections(self, algorithm: Algorithm) -> int:
        """Miner connections of ``algorithm`` on linked gateways."""
        return len(self.connections(algorithm))

    def listening(self) -> int:
        """Linked gateways whose Stratum listeners are bound."""
        return sum(1 for gateway in self.gateways.values() if gateway.ports is not None)

    async def wait_listening(self, count: int) -> None:
        """Until at least ``count`` linked gateways listen."""
        while self.listening() < count:
            await self._changed.wait()

    def reserve(self, algorithm: Algorithm, session_id: bytes) -> None:
        """Tell every gateway the layout the bridge keeps for a miner resuming
        ``session_id``."""
        layout = self._bridges[algorithm].layout_for(session_id)
        message = wire.Reserve(
            algorithm=algorithm, session_id=session_id, layout=layout, for_s=self._transit_s
        )
        for gateway in self.gateways.values():
            gateway.send(message)

    # ------------------------------------------------------------------ serving

    async def run(
        self, *, host: str, port: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen for gateways on ``host``:``port`` (0: a free one) until cancelled or
        ``close``; ``task_status.started(port)``. Raises ``OSError`` if it cannot bind."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("gateways.listening", host=host, port=self.port)
        async with trio.open_nursery() as records:
            self._records = records
            async with trio.open_nursery() as links:
                self._listeners = links.cancel_scope
                links.start_soon(trio.serve_listeners, self._handle, listeners)
                task_status.started(self.port)
            records.cancel_scope.deadline = trio.current_time() + self._handshake_timeout_s
        self._records = None

    def close(self) -> None:
        """Stop serving gateways: the port closes and every link ends (their miners leave
        the bridges; a gateway keeps its connections and tries again). Records under way
        finish (bounded)."""
        if self._listeners is not None:
            self._listeners.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        decoder = wire.gateway_decoder()
        keep_alive(stream)
        try:
            with trio.fail_after(self._handshake_timeout_s):
                gateway = await self._handshake(stream, decoder, peer)
        except wire.HandshakeError as error:
            log.warning("gateway.refused", peer=peer, error=str(error))
            with trio.move_on_after(1):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(wire.encode(wire.Refused(reason=str(error))))
            await trio.aclose_forcefully(stream)
            return
        except (wire.LinkError, trio.TooSlowError, trio.BrokenResourceError, OSError) as error:
            log.warning("gateway.hello_failed", peer=peer, error=str(error))
            await trio.aclose_forcefully(stream)
            return
        structlog.contextvars.bind_contextvars(gateway=gateway.gateway)
        log.info(
            "gateway.linked", peer=peer, prefix=gateway.prefix, incarnation=gateway.incarnation
        )
        try:
            with gateway.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_write, stream, gateway.frames, nursery.cancel_scope)
                    try:
                        await read_messages(stream, decoder, partial(self._dispatch, gateway))
                    except (
                        wire.LinkError,
                        trio.BrokenResourceError,
                        trio.ClosedResourceError,
                    ) as error:
                        log.warning("gateway.link_error", error=str(error))
                    nursery.cancel_scope.cancel()
        except Exception:
            log.exception("gateway.crashed")
        finally:
            self._unlink(gateway)
            await trio.aclose_forcefully(stream)
            log.info("gateway.unlinked", miners=len(gateway.links))

    async def _handshake(self, stream: trio.SocketStream, decoder: Any, peer: str) -> LinkedGateway:
        hello = await receive_message(stream, decoder, wire.Hello)
        wire.check_hello(hello)
        challenge = secrets.token_bytes(wire.NONCE_BYTES)
        await stream.send_all(
            wire.encode(wire.Challenge(version=wire.PROTOCOL_VERSION, nonce=challenge))
        )
        proof = await receive_message(stream, decoder, wire.Proof)
        wire.check_proof(wire.gateway_proof(self._secret, hello, challenge), proof.mac)
        prefix = self._grant(hello)
        old = self.gateways.get(hello.gateway)
        if old is not None:
            # The same gateway again: its old link is dead (or it would not have come back).
            old.scope.cancel()
            self._unlink(old)
        send, receive = trio.open_memory_channel[bytes](float("inf"))
        gateway = LinkedGateway(
            hub=self,
            gateway=hello.gateway,
            incarnation=hello.incarnation,
            prefix=prefix,
            peer=peer,
            outbox=send,
            frames=receive,
        )
        self.gateways[hello.gateway] = gateway
        welcome = wire.Welcome(
            mac=wire.market_proof(self._secret, hello, challenge),
            prefix=prefix,
            settings=list(self._settings.values()),
            offset_ms=self._offset_ms(),
        )
        await stream.send_all(wire.encode(welcome))
        if self._faults.faults:
            gateway.send(self._faults)
        return gateway

    def set_faults(self, faults: list[wire.LinkFault]) -> None:
        """The operator's Stratum faults now (control.md): every linked gateway, and each
        that links later, injects them on its own miners."""
        self._faults = wire.Faults(faults=faults)
        for gateway in self.gateways.values():
            gateway.send(self._faults)

    def clock_jumped(self, delta_ms: int) -> None:
        """Market time jumped ``delta_ms`` forward (a ``Core`` jump listener): every linked
        gateway's clock follows, so its share checks and timers agree with the jobs."""
        offset = wire.ClockOffset(offset_ms=self._offset_ms())
        for gateway in self.gateways.values():
            gateway.send(offset)

    def _grant(self, hello: wire.Hello) -> int:
        """The gateway's prefix: the one it asks for back, unless another live gateway has
        it; else the lowest free one. Raises ``wire.HandshakeError`` when none is free."""
        held = {g.prefix: g.gateway for g in self.gateways.values()}
        wanted = hello.prefix
        if (
            wanted is not None
            and wanted != MARKET_PREFIX
            and held.get(wanted, hello.gateway) == hello.gateway
        ):
            return wanted
        for prefix in range(MARKET_PREFIX + 1, 256):
            if held.get(prefix, hello.gateway) == hello.gateway:
                return prefix
        raise wire.HandshakeError("no extranonce1 prefix free: too many gateways")

    def _unlink(self, gateway: LinkedGateway) -> None:
        if self.gateways.get(gateway.gateway) is gateway:
            del self.gateways[gateway.gateway]
            self._changed.set()
            self._changed = trio.Event()
        gateway.outbox.close()
        links, gateway.links = gateway.links, {}
        for link in links.values():
            self._bridges[link.algorithm].disconnect(link)

    def _dispatch(self, gateway: LinkedGateway, message: wire.GatewayMessage) -> None:
        if isinstance(message, wire.Shares):
            if message.first < 0 or not 1 <= len(message.shares) <= wire.MAX_BATCH_SHARES:
                raise wire.LinkError("a batch holds 1-1000 shares from id 0 up")
            if message.algorithm not in self._bridges:
                raise wire.LinkError(f"this market runs no {message.algorithm.value}")
            assert self._records is not None
            self._records.start_soon(self._take, gateway, message, time.perf_counter())
        elif isinstance(message, wire.Join):
            self._join(gateway, message)
        elif isinstance(message, wire.Leave):
            link = gateway.links.pop(message.conn, None)
            if link is not None:
                self._bridges[link.algorithm].disconnect(link)
        elif isinstance(message, wire.Listening):
            gateway.ports = message.ports
            self._changed.set()
            self._changed = trio.Event()
            log.info("gateway.listening", **message.ports)
        else:
            raise wire.LinkError(f"unexpected {type(message).__name__} after the hello")

    def _join(self, gateway: LinkedGateway, join: wire.Join) -> None:
        bridge = self._bridges.get(join.algorithm)
        if bridge is None:
            raise wire.LinkError(f"this market runs no {join.algorithm.value}")
        old = gateway.links.pop(join.conn, None)
        if old is not None:
            bridge.disconnect(old)
        link = RemoteMinerLink(gateway=gateway, join=join, config=self._settings[join.algorithm])
        gateway.links[join.conn] = link
        if join.layout is not None:
            bridge.layout_for(join.session_id)  # the bridge hands out what it reserved
        job = bridge.connect(link)
        if job is not None:
            link.push_job(job)

    async def _take(self, gateway: LinkedGateway, batch: wire.Shares, arrived: float) -> None:
        """Record a batch once (see the module doc) and answer it."""
        key = (gateway.gateway, gateway.incarnation, batch.first)
        taking = self._taking.get(key)
        if taking is not None:
            await taking.done.wait()
            gateway.send(wire.Ack(first=batch.first, refusal=taking.refusal))
            return
        taking = self._taking[key] = _Taking()
        try:
            taking.refusal = await self._record(gateway, batch)
        finally:
            del self._taking[key]
            taking.done.set()
        gateway.send(wire.Ack(first=batch.first, refusal=taking.refusal))
        observer = self.ack_observers.get(batch.algorithm)
        if observer is not None:
            observer(time.perf_counter() - arrived, len(batch.shares))

    async def _record(self, gateway: LinkedGateway, batch: wire.Shares) -> str | None:
        marks = self._marks
        ids = {"gateway": gateway.gateway, "incarnation": gateway.incarnation}
        offsets = marks.untaken(**ids, first=batch.first, count=len(batch.shares))
        if not offsets:
            return None  # taken before: durable since (a record under way is waited for)
        fresh = [batch.shares[i] for i in offsets]

        def taken() -> None:
            marks.take(**ids, first=batch.first, count=len(batch.shares))

        try:
            await self._bridges[batch.algorithm].record_shares(fresh, also=taken)
        except ShareNotRecorded as refused:
            return refused.message
        for share in fresh:
            link = gateway.links.get(share.conn_id)
            if link is None:
                continue
            session = link.session
            session.difficulty = share.difficulty
            if share.accepted:
                session.accepted += 1
            else:
                reason = share.reason or "other"
                session.rejected[reason] = session.rejected.get(reason, 0) + 1
        return None


async def _write(
    stream: trio.SocketStream, frames: trio.MemoryReceiveChannel[bytes], scope: trio.CancelScope
) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await write_frames(stream, frames)
    scope.cancel()


def settings_for(configs: Mapping[Algorithm, StratumConfig]) -> dict[Algorithm, StratumConfig]:
    """What gateways are told: the market's Stratum settings without its own listen address."""
    return {
        algorithm: msgspec.structs.replace(config, host="127.0.0.1", port=0, reuse_port=False)
        for algorithm, config in configs.items()
    }
