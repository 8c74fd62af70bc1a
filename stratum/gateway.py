"""A Stratum gateway: the same ``StratumServer``, with a ``WorkSource`` that lives in a market
process elsewhere (``../shared/spec/cluster.md``; the frames are ``stratum.link``'s).

Theory of operation
-------------------
``GatewayLink`` is the gateway's one connection to its market. It connects (to each
``--market`` address in turn, backing off between rounds), proves it holds the shared secret,
and takes from the ``Welcome`` every Stratum setting and the extranonce1 prefix it owns; only
then do the listeners open (``run_gateway``), so a gateway never serves under settings it has
not been given. Each listener's ``RemoteWorkSource`` turns the server's calls into frames:
``connect`` sends ``Join`` (the first job comes back as a ``PushJob``, so ``connect`` returns
``None``), ``disconnect`` sends ``Leave``, ``record_shares`` puts the shares into the batch
of their algorithm and waits for its ``Ack``. Frames from the market act on the connections
(``PushJob``, ``ChangeLayout``, ``Kick``...), exactly as the bridge acts on its links in one
process.

Batches and share ids. A batch goes out as soon as the previous ones are acknowledged (an idle
market costs no wait), else after at most ``batch_window_s`` (5 ms) or at ``MAX_BATCH_SHARES``
shares. Its shares are numbered in the incarnation's sequence: (gateway id, incarnation,
number) is a share's id, and the market takes each id once (it journals what it took with the
shares). A batch stays here until its ``Ack``: when the link is lost the sent batches are
re-sent, in order and unchanged, to whichever market answers next (a standby that took over
knows what its predecessor took from the journal). Their miners wait for that answer, never
for a refusal: a share refused with 20 may be submitted again, and that submission would be a
new id. Shares not yet sent when the link goes are refused ``[20, "market unavailable"]``, and
so is every submit while the link is down (code 20 never counts toward the rejects-in-a-row
limit); connections stay and keep the jobs they have.

On a new link the gateway joins its live connections again (a new market knows no worker) and
asks for its old prefix back: its live connections hold values under it. Given another one
(rare: another gateway took it), it closes its connections, whose miners reconnect under the
new prefix.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import structlog
import trio

from stratum.config import StratumConfig
from stratum.core.jobs import Job, Layout, MinerLink, Share, ShareNotRecorded
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason
from stratum.faults import StratumTarget
from stratum.link import (
    MAX_BATCH_SHARES,
    NONCE_BYTES,
    PROTOCOL_VERSION,
    Ack,
    Challenge,
    ChangeLayout,
    ClockOffset,
    Difficulty,
    Faults,
    GatewayMessage,
    HandshakeError,
    Hello,
    Join,
    Kick,
    Leave,
    LinkError,
    LinkFault,
    Listening,
    MarketMessage,
    Message,
    Proof,
    PushJob,
    Reconnect,
    Refused,
    Reserve,
    Shares,
    Welcome,
    check_proof,
    encode,
    gateway_proof,
    market_decoder,
    market_proof,
)
from stratum.linkio import keep_alive, read_messages, receive_message, write_frames
from stratum.server import Clock, Connection, StratumServer, trio_wall_clock

#: What a miner is told (code 20) for a submit while the gateway has no market.
MARKET_UNAVAILABLE: Final = "market unavailable"
#: Connection ids of a gateway are its prefix times this plus a count: unique in the market.
CONN_ID_STRIDE: Final = 1 << 40

log = structlog.get_logger("stratum.gateway")


class GatewayRefused(Exception):
    """The market refused this gateway before it ever served (a wrong secret, another
    protocol version): trying again cannot help."""


@dataclass(eq=False)
class _Batch:
    algorithm: Algorithm
    shares: list[Share] = field(default_factory=list)
    first: int = -1
    frame: bytes = b""
    refusal: str | None = None
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(frozen=True)
class LinkSettings:
    """How a gateway reaches its market (its own flags; everything else comes in the hello)."""

    markets: tuple[tuple[str, int], ...]
    gateway_id: str
    secret: bytes
    batch_window_s: float = 0.005
    handshake_timeout_s: float = 5.0
    backoff_min_s: float = 0.05
    backoff_max_s: float = 1.0


class GatewayLink:
    """The gateway's side of the link (see the module doc)."""

    def __init__(self, settings: LinkSettings, *, incarnation: str | None = None) -> None:
        if not settings.markets:
            raise ValueError("a gateway needs at least one --market address")
        self.settings = settings
        self.incarnation = incarnation or secrets.token_hex(8)
        #: Stratum settings per algorithm from the first ``Welcome`` (``None`` before).
        self.stratum: dict[Algorithm, StratumConfig] | None = None
        self.prefix: int | None = None
        #: Market time's lead over wall time, as the market last said (``ClockOffset``).
        self.offset_ms = 0
        self.up = False
        #: Bound listeners' ports (per algorithm value), told to every market linked to.
        self.ports: dict[str, int] | None = None
        #: Batches re-sent after a reconnect (for tests and logs).
        self.resent = 0
        self.servers: list[StratumServer] = []
        self._conns: dict[int, Connection] = {}
        self._joins: dict[int, Join] = {}
        self._reserved: dict[tuple[Algorithm, bytes], tuple[Layout | None, float]] = {}
        self._pending: dict[Algorithm, _Batch] = {}
        self._unacked: dict[int, _Batch] = {}
        self._next_seq = 0
        self._counter = itertools.count(1)
        self._wake = trio.Event()
        self._outbox: trio.MemorySendChannel[bytes] | None = None

    # ------------------------------------------------------------------ what sources ask

    def conn_ids(self) -> Iterator[int]:
        """Connection ids for the gateway's servers: under its prefix, so unique market-wide."""
        while True:
            yield (self.prefix or 0) * CONN_ID_STRIDE + next(self._counter)

    def take_reservation(self, algorithm: Algorithm, session_id: bytes) -> Layout | None:
        """The layout the market reserved for a miner resuming ``session_id``, once."""
        found = self._reserved.pop((algorithm, session_id), None)
        if found is None or found[1] < trio.current_time():
            return None
        return found[0]

    def reserved(self, algorithm: Algorithm, session_id: bytes) -> bool:
        """Whether the market reserved ``session_id`` (a miner moving from another gateway
        may resume it here)."""
        found = self._reserved.get((algorithm, session_id))
        return found is not None and found[1] >= trio.current_time()

    def join(self, conn: Connection, algorithm: Algorithm, layout: Layout | None) -> None:
        """A connection's first worker authorized: the market hears of it (now, or when the
        link is back)."""
        session = conn.session
        host, port = conn.local_address
        join = Join(
            algorithm=algorithm,
            conn=conn.conn_id,
            account=conn.account,
            worker=conn.worker,
            session_id=conn.session_id,
            extranonce_subscribed=conn.extranonce_subscribed,
            difficulty=conn.difficulty,
            peer=conn.peer,
            user_agent=session.user_agent,
            version_mask=session.version_rolling_mask,
            local_host=host,
            local_port=port,
            layout=layout,
        )
        self._conns[conn.conn_id] = conn
        self._joins[conn.conn_id] = join
        self._send(join)

    def leave(self, conn_id: int) -> None:
        """The connection is gone. Idempotent."""
        self._conns.pop(conn_id, None)
        if self._joins.pop(conn_id, None) is not None:
            self._send(Leave(conn=conn_id))

    async def record(self, algorithm: Algorithm, shares: Sequence[Share]) -> None:
        """Send ``shares`` in the next batch of ``algorithm`` and return once the market says
        they are durable. Raises ``ShareNotRecorded`` while there is no market, or with the
        market's refusal. Cancellation ends the wait only before the shares are handed over."""
        if not self.up:
            raise ShareNotRecorded(MARKET_UNAVAILABLE)
        batch = self._pending.get(algorithm)
        if batch is not None and len(batch.shares) + len(shares) > MAX_BATCH_SHARES:
            self._flush(batch)
            batch = None
        if batch is None:
            batch = self._pending[algorithm] = _Batch(algorithm)
            self._wake.set()
        batch.shares.extend(shares)
        if len(batch.shares) >= MAX_BATCH_SHARES:
            self._flush(batch)
        # Handed over: the server counts these shares by our answer, so no cancellation may
        # come between (the wait ends with the market's ack or refusal).
        with trio.CancelScope(shield=True):
            await batch.done.wait()
        if batch.refusal is not None:
            raise ShareNotRecorded(batch.refusal)

    def listening(self, ports: dict[str, int]) -> None:
        """The gateway's listeners are bound: the market hears it (and every later one)."""
        self.ports = ports
        self._send(Listening(ports=ports))

    @property
    def unacked(self) -> int:
        """Shares sent or waiting to be sent that the market has not answered yet."""
        return sum(len(b.shares) for b in (*self._unacked.values(), *self._pending.values()))

    async def wait_drained(self) -> None:
        """Until every share handed over has its answer (for a graceful stop)."""
        while self._unacked or self._pending:
            batch = next(iter((*self._unacked.values(), *self._pending.values())))
            await batch.done.wait()

    # ------------------------------------------------------------------ the link

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a link to a market until cancelled; ``task_status.started()`` after the first
        ``Welcome`` (``stratum`` and ``prefix`` set). Raises ``GatewayRefused`` if the market
        refuses the first hello."""
        started = False
        delay = self.settings.backoff_min_s
        while True:
            for host, port in self.settings.markets:
                welcome = stream = None
                try:
                    stream = await trio.open_tcp_stream(host, port)
                    keep_alive(stream)
                    with trio.fail_after(self.settings.handshake_timeout_s):
                        welcome = await self._handshake(stream)
                except HandshakeError as error:
                    if stream is not None:
                        await trio.aclose_forcefully(stream)
                    log.warning("gateway.refused", market=f"{host}:{port}", error=str(error))
                    if not started:
                        raise GatewayRefused(str(error)) from error
                    continue
                except (OSError, LinkError, trio.TooSlowError, trio.BrokenResourceError) as error:
                    if stream is not None:
                        await trio.aclose_forcefully(stream)
                    # Said once per outage (as a warning), then at debug at every attempt.
                    level = log.warning if delay == self.settings.backoff_min_s else log.debug
                    level("gateway.unreachable", market=f"{host}:{port}", error=str(error))
                    continue
                delay = self.settings.backoff_min_s
                self._welcomed(welcome)
                log.info("gateway.linked", market=f"{host}:{port}", prefix=self.prefix)
                if not started:
                    started = True
                    task_status.started()
                try:
                    await self._serve(stream)
                finally:
                    self._lost()
                    await trio.aclose_forcefully(stream)
                log.warning("gateway.link_lost", market=f"{host}:{port}", unacked=self.unacked)
            await trio.sleep(delay)
            delay = min(delay * 2, self.settings.backoff_max_s)

    async def _handshake(self, stream: trio.SocketStream) -> Welcome:
        decoder = market_decoder()
        hello = Hello(
            version=PROTOCOL_VERSION,
            gateway=self.settings.gateway_id,
            incarnation=self.incarnation,
            nonce=secrets.token_bytes(NONCE_BYTES),
            prefix=self.prefix,
        )
        await stream.send_all(encode(hello))
        challenge = await receive_message(stream, decoder, Challenge)
        await stream.send_all(
            encode(Proof(mac=gateway_proof(self.settings.secret, hello, challenge.nonce)))
        )
        welcome = await receive_message(stream, decoder, Welcome)
        check_proof(market_proof(self.settings.secret, hello, challenge.nonce), welcome.mac)
        return welcome

    def _welcomed(self, welcome: Welcome) -> None:
        settings = {config.algorithm: config for config in welcome.settings}
        if self.stratum is None:
            self.stratum = settings
        elif settings != self.stratum:
            log.warning("gateway.settings_differ", note="kept the first market's settings")
        if self.prefix is not None and welcome.prefix != self.prefix:
            # Our connections hold values under the old prefix, which another gateway owns now.
            log.warning("gateway.prefix_changed", old=self.prefix, new=welcome.prefix)
            for conn in list(self._conns.values()):
                conn.close(CloseReason.KICKED)
        self.prefix = welcome.prefix
        for server in self.servers:
            server.extranonces.prefix = bytes([welcome.prefix])
        self._set_offset(welcome.offset_ms)

    def _set_faults(self, faults: list[LinkFault]) -> None:
        """Carry out the operator's Stratum faults on this gateway's miners (their drops are
        the market's), seeded as on the market's own listeners, from now."""
        target = StratumTarget()
        now = trio.current_time()
        for fault in faults:
            # The market's drops (drop_after_s) close our connections through the link.
            target.set(fault, set_at=now)
        for server in self.servers:
            server.faults = target if target.faults else None
        log.info("gateway.faults", count=len(faults))

    def _set_offset(self, offset_ms: int) -> None:
        """Follow market time's lead over wall time; a jump forward is no silence of a
        connected miner (as on the market's own listeners)."""
        delta = offset_ms - self.offset_ms
        self.offset_ms = offset_ms
        if delta > 0:
            for server in self.servers:
                server.clock_jumped(delta)

    def clock(self) -> Clock:
        """The market's clock as this gateway keeps it: wall time plus the market's offset
        (call inside ``trio.run``)."""
        wall = trio_wall_clock()
        return lambda: wall() + self.offset_ms

    async def _serve(self, stream: trio.SocketStream) -> None:
        """Serve one link until it is lost."""
        send, receive = trio.open_memory_channel[bytes](math.inf)
        self._outbox = send
        self.up = True
        # A new market knows none of our workers, and may not know what the last one took.
        for join in self._joins.values():
            send.send_nowait(encode(join))
        for batch in self._unacked.values():
            send.send_nowait(batch.frame)
            self.resent += 1
        if self.ports is not None:
            send.send_nowait(encode(Listening(ports=self.ports)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, stream, receive, nursery.cancel_scope)
            nursery.start_soon(self._flusher)
            try:
                await read_messages(stream, market_decoder(), self._dispatch)
            except (LinkError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
                log.warning("gateway.link_error", error=str(error))
            nursery.cancel_scope.cancel()

    async def _writer(
        self,
        stream: trio.SocketStream,
        receive: trio.MemoryReceiveChannel[bytes],
        scope: trio.CancelScope,
    ) -> None:
        try:
            await write_frames(stream, receive)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            scope.cancel()

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._unacked:
                # The market is busy with earlier batches: gather for a while.
                await trio.sleep(self.settings.batch_window_s)
            else:
                # Idle market: only what arrives in this same scheduler pass rides along.
                await trio.lowlevel.checkpoint()
            for batch in list(self._pending.values()):
                self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        if self._pending.get(batch.algorithm) is batch:
            del self._pending[batch.algorithm]
        batch.first = self._next_seq
        self._next_seq += len(batch.shares)
        batch.frame = encode(
            Shares(algorithm=batch.algorithm, first=batch.first, shares=batch.shares)
        )
        self._unacked[batch.first] = batch
        if self._outbox is not None:
            self._outbox.send_nowait(batch.frame)

    def _send(self, message: GatewayMessage) -> None:
        if self._outbox is not None:
            self._outbox.send_nowait(encode(message))

    def _lost(self) -> None:
        self.up = False
        self._outbox = None
        for batch in self._pending.values():  # never sent: the market never saw them
            batch.refusal = MARKET_UNAVAILABLE
            batch.done.set()
        self._pending.clear()

    def _dispatch(self, message: MarketMessage) -> None:
        if isinstance(message, Ack):
            batch = self._unacked.pop(message.first, None)
            if batch is not None:
                batch.refusal = message.refusal
                batch.done.set()
            return
        if isinstance(message, Reserve):
            until = trio.current_time() + message.for_s
            self._reserved[(message.algorithm, message.session_id)] = (message.layout, until)
            now = trio.current_time()
            for key in [k for k, (_, t) in self._reserved.items() if t < now]:
                del self._reserved[key]
            return
        if isinstance(message, ClockOffset):
            self._set_offset(message.offset_ms)
            return
        if isinstance(message, Faults):
            self._set_faults(message.faults)
            return
        if isinstance(message, Refused):
            raise LinkError(f"market refused: {message.reason}")
        if isinstance(message, Challenge | Welcome):
            raise LinkError(f"unexpected {type(message).__name__} after the hello")
        conn = self._conns.get(message.conn)
        if conn is None:
            return  # gone meanwhile
        if isinstance(message, PushJob):
            conn.push_job(message.job)
        elif isinstance(message, ChangeLayout):
            if not conn.change_layout(message.layout, message.job):
                conn.reconnect()
        elif isinstance(message, Kick):
            if message.drop:
                conn.drop()
            else:
                conn.close(CloseReason.KICKED)
        elif isinstance(message, Reconnect):
            conn.reconnect(host=message.host, port=message.port, wait_s=message.wait_s)
        elif isinstance(message, Message):
            conn.show_message(message.text)
        elif isinstance(message, Difficulty):
            conn.set_difficulty(message.difficulty)


class RemoteWorkSource:
    """A ``WorkSource`` whose work comes over a ``GatewayLink`` (see the module doc)."""

    def __init__(self, *, algorithm: Algorithm, link: GatewayLink) -> None:
        self._algorithm = algorithm
        self._link = link
        self._given: dict[bytes, Layout] = {}

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    def layout_for(self, session_id: bytes) -> Layout | None:
        """The layout the market reserved for a miner resuming ``session_id``, else its own."""
        layout = self._link.take_reservation(self._algorithm, session_id)
        if layout is not None:
            self._given[session_id] = layout
        return layout

    def connect(self, link: MinerLink) -> Job | None:
        """Tell the market; its first job comes back as a push (so: ``None``)."""
        assert isinstance(link, Connection)
        self._link.join(link, self._algorithm, self._given.pop(link.session_id, None))
        return None

    def disconnect(self, link: MinerLink) -> None:
        """Tell the market the connection is gone. Idempotent."""
        self._given.pop(link.session_id, None)
        self._link.leave(link.conn_id)

    async def record_shares(self, shares: Sequence[Share]) -> None:
        """A connection's shares to the market, in one batch; returns once they are durable."""
        await self._link.record(self._algorithm, shares)


@dataclass(frozen=True)
class GatewayOptions:
    """A gateway process's own flags (``hashmarket gateway``)."""

    link: LinkSettings
    host: str = "127.0.0.1"
    ports: dict[Algorithm, int] = field(default_factory=dict)
    #: Share the ports with other processes (``SO_REUSEPORT``): a market's local gateways.
    reuse_port: bool = False


async def run_gateway(
    options: GatewayOptions,
    *,
    stop: trio.Event,
    task_status: trio.TaskStatus[GatewayLink] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a gateway: link to the market, then listen (``task_status.started(link)`` once
    listening) until ``stop``; then stop accepting, close the miners' connections within the
    grace period and wait (as long) for the market's answers to the shares handed over.
    Raises ``GatewayRefused`` if the market refuses the first hello, ``OSError`` if a
    listener cannot bind."""
    link = GatewayLink(options.link)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        assert link.stratum is not None
        assert link.prefix is not None
        conn_ids = link.conn_ids()
        grace = 0.0
        async with trio.open_nursery() as front:
            for algorithm, port in options.ports.items():
                config = msgspec.structs.replace(
                    link.stratum[algorithm],
                    host=options.host,
                    port=port,
                    reuse_port=options.reuse_port,
                )
                source = RemoteWorkSource(algorithm=algorithm, link=link)
                server = StratumServer(
                    config=config, work_source=source, conn_ids=conn_ids, clock=link.clock()
                )
                server.extranonces.prefix = bytes([link.prefix])
                server.extranonces.admit = partial_admit(link, algorithm)
                link.servers.append(server)
                await front.start(server.run)
                grace = max(grace, config.shutdown_grace_s)
            ports = {s.config.algorithm.value: s.port or 0 for s in link.servers}
            link.listening(ports)
            log.info("gateway.listening", host=options.host, **ports)
            task_status.started(link)
            await stop.wait()
            for server in link.servers:
                server.shutdown()
        with trio.move_on_after(grace):
            await link.wait_drained()
        nursery.cancel_scope.cancel()
    log.info("gateway.stopped")


def partial_admit(link: GatewayLink, algorithm: Algorithm) -> Any:
    """The allocator's ``admit``: a session id the market reserved for a moving miner."""
    return lambda value: link.reserved(algorithm, value)
