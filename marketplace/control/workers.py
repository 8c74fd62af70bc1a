"""The operator's hands on connected miners: list them, kick, reconnect, message, difficulty.

A worker is named as the market names it, ``account.worker`` (the connection's first
authorized worker), or by its connection, ``conn:<id>`` (ids are unique in a node: the
listeners share one counter, and each gateway's ids lie under its own prefix). Where one name
has several connections the name is ambiguous and the operator is told the connection ids to
use instead. Everything here acts on live connections, the Stratum servers' ``Connection``
objects and the gateways' ``RemoteMinerLink`` objects (``marketplace.gateways``: the same
actions, sent to the gateway), so it is immediate and ephemeral: nothing is journaled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from marketplace.api.admin_wire import AdminWorkerOut
from marketplace.clock import Clock
from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.fleet import Fleet
from marketplace.core.model import WorkerKey
from marketplace.core.money import UNIT_HS, UNIT_NAME, format_speed
from marketplace.gateways import GatewayHub
from stratum.core.shares import Algorithm
from stratum.core.states import CloseReason
from stratum.faults import Droppable
from stratum.server import Connection, StratumServer

_CONN_PREFIX = "conn:"


class SessionView(Protocol):
    """What ``describe`` reads of a connection's session."""

    @property
    def user_agent(self) -> str | None: ...
    @property
    def difficulty(self) -> float: ...
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> Mapping[str, int]: ...
    @property
    def extranonce1(self) -> bytes | None: ...
    @property
    def version_rolling_mask(self) -> int: ...
    @property
    def extranonce_subscribed(self) -> bool: ...


class WorkerConnection(Droppable, Protocol):
    """A live miner connection, in this process (``stratum.server.Connection``) or on a
    gateway (``marketplace.gateways.RemoteMinerLink``): its id, first worker and when it
    opened (``Droppable``), and what the operator sees and does."""

    @property
    def algorithm(self) -> Algorithm: ...
    @property
    def peer(self) -> str: ...
    @property
    def session(self) -> SessionView: ...
    @property
    def local_address(self) -> tuple[str, int]: ...

    def close(self, reason: CloseReason = CloseReason.KICKED) -> None: ...
    def drop(self) -> None: ...
    def show_message(self, text: str) -> None: ...
    def set_difficulty(self, difficulty: float) -> None: ...
    def reconnect(
        self, *, host: str | None = None, port: int | None = None, wait_s: int = 0
    ) -> None: ...


def worker_name(conn: WorkerConnection) -> str | None:
    """``account.worker`` of the connection's first authorized worker (``None`` before)."""
    return f"{conn.account}.{conn.worker}" if conn.account else None


class Workers:
    """The connected workers of a node's Stratum servers (see the module doc)."""

    def __init__(self, *, fleet: Fleet, clock: Clock) -> None:
        self._fleet = fleet
        self._clock = clock
        self._servers: dict[Algorithm, StratumServer] = {}
        self._gateways: GatewayHub | None = None

    @property
    def gateways(self) -> GatewayHub | None:
        """The hub whose gateways' miners these are too, if any."""
        return self._gateways

    def add_gateways(self, hub: GatewayHub) -> None:
        """Reach the miners of every gateway linked to ``hub`` too."""
        self._gateways = hub

    def add_server(self, server: StratumServer) -> None:
        """Reach the miners of ``server`` too."""
        self._servers[server.config.algorithm] = server

    @property
    def servers(self) -> Mapping[Algorithm, StratumServer]:
        return self._servers

    @property
    def fleet(self) -> Fleet:
        """The allocation the workers are in (orders served, speed estimates)."""
        return self._fleet

    def local_connections(self, algorithm: Algorithm | None = None) -> list[Connection]:
        """Every open connection of this process's servers (of ``algorithm`` only, if given)."""
        servers = [
            server for alg, server in self._servers.items() if algorithm is None or alg is algorithm
        ]
        return [conn for server in servers for conn in server.connections()]

    def connections(self, algorithm: Algorithm | None = None) -> list[WorkerConnection]:
        """Every open connection, here and on the gateways (of ``algorithm``'s market only,
        if given), by id."""
        found: list[WorkerConnection] = [*self.local_connections(algorithm)]
        if self._gateways is not None:
            found.extend(self._gateways.connections(algorithm))
        return sorted(found, key=lambda conn: conn.conn_id)

    def find(self, worker: str) -> WorkerConnection:
        """The one open connection ``worker`` names. Raises ``NotFound`` (none) or
        ``InvalidArgument`` (a bad ``conn:`` id, or a name with several connections)."""
        if worker.startswith(_CONN_PREFIX):
            digits = worker[len(_CONN_PREFIX) :]
            if not digits.isdigit():
                raise InvalidArgument("conn:<id> needs a number", {"field": "worker"})
            matches = [c for c in self.connections() if c.conn_id == int(digits)]
        else:
            matches = [c for c in self.connections() if worker_name(c) == worker]
        if not matches:
            raise NotFound("no such worker connected", {"worker": worker[:140]})
        if len(matches) > 1:
            ids = ", ".join(f"{_CONN_PREFIX}{c.conn_id}" for c in matches)
            raise InvalidArgument(
                f"{worker} has {len(matches)} connections: name one of {ids}",
                {"field": "worker", "connections": ids},
            )
        return matches[0]

    def describe(self, conn: WorkerConnection) -> AdminWorkerOut:
        """What ``admin.worker.list`` shows of one connection."""
        session = conn.session
        algorithm = conn.algorithm
        order_id, speed = None, 0
        if conn.account:
            key = WorkerKey(conn.conn_id, conn.account, conn.worker, algorithm)
            if key in self._fleet.assignments():
                order_id = self._fleet.assignment(key)
                speed = self._fleet.worker_speed(key, now_ms=self._clock.now_ms())
        extranonce1 = session.extranonce1
        return AdminWorkerOut(
            name=worker_name(conn),
            algorithm=algorithm,
            conn_id=conn.conn_id,
            peer=conn.peer,
            user_agent=session.user_agent,
            difficulty=session.difficulty,
            order_id=order_id,
            speed=format_speed(speed, unit_hs=UNIT_HS[algorithm]),
            unit=UNIT_NAME[algorithm],
            shares={"accepted": session.accepted, **session.rejected},
            extranonce1=None if extranonce1 is None else extranonce1.hex(),
            version_mask=f"{session.version_rolling_mask:08x}",
            extranonce_subscribed=session.extranonce_subscribed,
        )

    def kick(self, worker: str) -> WorkerConnection:
        """Close ``worker``'s connection (after what is queued for it). Raises as ``find``."""
        conn = self.find(worker)
        conn.close(CloseReason.KICKED)
        return conn

    def reconnect(self, worker: str, *, wait_s: int = 0) -> WorkerConnection:
        """Send ``worker`` ``client.reconnect`` to the address it reached us at, ``wait_s``
        seconds from now, and close the connection. Raises as ``find``."""
        conn = self.find(worker)
        host, port = conn.local_address
        conn.reconnect(host=host, port=port, wait_s=wait_s)
        return conn

    def message(self, worker: str, text: str) -> WorkerConnection:
        """Send ``worker`` ``client.show_message``. Raises as ``find``."""
        conn = self.find(worker)
        conn.show_message(text)
        return conn

    def set_difficulty(self, worker: str, difficulty: float) -> WorkerConnection:
        """Set ``worker``'s share difficulty (vardiff resumes from it), with a job. Raises as
        ``find``."""
        conn = self.find(worker)
        conn.set_difficulty(difficulty)
        return conn
