"""A market's gateway port and its local gateways: ``serve --gateways N`` and ``--gateway-port``.

Theory of operation
-------------------
``start_gateways`` runs the ``GatewayHub`` (``marketplace.gateways``) on the gateway port and,
with ``--gateways N``, N child processes of ``hashmarket gateway`` linked to it over loopback
with the node's secret (``--gateway-secret``, else one generated for this run and given to
the children in their environment, never on a command line). The children share the Stratum
ports (``SO_REUSEPORT``, ``stratum.listeners``); the market holds one bound, non-listening
socket per port, so a port given as 0 is fixed before the first child starts and stays ours
while children come and go. It reports itself started once every child listens. A child that
dies is started again after a second (its miners meanwhile reconnect to the others, on the same
port); a child whose market dies stops by itself (``--exit-with-parent``).

Stopping (``stopping`` set: the node's shutdown) comes first among the services: every child
gets SIGTERM and stops as a Stratum server does (stops accepting, closes its miners within the
grace period) after the market answered the shares it had handed over; one that outlives the
grace is killed. Only then does the hub close the gateway port (remote gateways keep their
miners and try again).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import structlog
import trio

from marketplace.bridge import MarketWorkSource
from marketplace.config import NodeConfig
from marketplace.core.gateway_marks import GatewayMarks
from marketplace.gateways import GatewayHub, settings_for
from stratum.core.shares import Algorithm
from stratum.listeners import reserve_shared_port

log = structlog.get_logger("marketplace.gateways")

#: How long the children get to link and listen before the node gives up starting.
START_TIMEOUT_S = 60.0
#: How long a child gets to stop after SIGTERM beyond the Stratum grace period.
STOP_MARGIN_S = 5.0
RESPAWN_DELAY_S = 1.0
SECRET_ENV = "HASHMARKET_GATEWAY_SECRET"


@dataclass(eq=False)
class LocalGateways:
    """The children of ``serve --gateways N`` (see the module doc)."""

    config: NodeConfig
    market_port: int
    secret: str
    grace_s: float
    ports: dict[Algorithm, int] = field(default_factory=dict)
    procs: dict[int, trio.Process] = field(default_factory=dict)
    _reserved: list[socket.socket] = field(default_factory=list)
    _stopping: bool = False

    def reserve(self) -> dict[Algorithm, int]:
        """Fix the Stratum ports (a 0 becomes a free one) for the children to share. Raises
        ``OSError`` if one cannot be bound."""
        config = self.config
        wanted = {Algorithm.SHA256D: config.sha256d_port, Algorithm.SCRYPT: config.scrypt_port}
        for algorithm, port in wanted.items():
            sock = reserve_shared_port(config.host, port)
            self._reserved.append(sock)
            self.ports[algorithm] = sock.getsockname()[1]
        return self.ports

    def command(self, index: int) -> list[str]:
        """The command line of child ``index``."""
        config = self.config
        return [
            sys.executable,
            "-m",
            "marketplace",
            "gateway",
            *("--market", f"{_host(config.gateway_host)}:{self.market_port}"),
            *("--host", config.host),
            *("--sha256d-port", str(self.ports[Algorithm.SHA256D])),
            *("--scrypt-port", str(self.ports[Algorithm.SCRYPT])),
            *("--id", f"local-{os.getpid()}-{index}"),
            *("--log-format", config.log_format, "--log-level", config.log_level),
            "--reuse-port",
            "--exit-with-parent",
        ]

    async def run(
        self, hub: GatewayHub, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children, report started once they all listen, keep them running until
        ``stop``. Raises ``trio.TooSlowError`` if they do not listen within
        ``START_TIMEOUT_S``."""
        try:
            async with trio.open_nursery() as nursery:
                for index in range(self.config.gateways):
                    nursery.start_soon(self._keep, index)
                with trio.fail_after(START_TIMEOUT_S):
                    await hub.wait_listening(self.config.gateways)
                log.info("gateways.local_started", count=self.config.gateways, pids=self.pids())
                task_status.started()
        finally:
            for sock in self._reserved:
                sock.close()

    def pids(self) -> list[int]:
        """The live children's process ids."""
        return sorted(proc.pid for proc in self.procs.values() if proc.returncode is None)

    async def _keep(self, index: int) -> None:
        env = {**os.environ, SECRET_ENV: self.secret}
        while not self._stopping:
            # A session of its own: a Ctrl-C at the terminal reaches the market only, which
            # stops its children in order (a second signal would stop them at once).
            proc = await trio.lowlevel.open_process(
                self.command(index), env=env, start_new_session=True
            )
            self.procs[index] = proc
            try:
                await proc.wait()
            finally:
                if proc.returncode is None:  # cancelled: leave no child behind
                    proc.kill()
            if self._stopping:
                return
            log.warning("gateway.exited", index=index, pid=proc.pid, status=proc.returncode)
            await trio.sleep(RESPAWN_DELAY_S)

    async def stop(self) -> None:
        """SIGTERM every child and wait for it (killed after the grace period and a margin)."""
        self._stopping = True
        live = [proc for proc in self.procs.values() if proc.returncode is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.grace_s + STOP_MARGIN_S):
            for proc in live:
                await proc.wait()
        for proc in live:
            if proc.returncode is None:
                log.warning("gateway.killed", pid=proc.pid)
                proc.kill()


@dataclass(eq=False)
class Gateways:
    """The gateway port's hub and the local children, once they serve."""

    hub: GatewayHub
    port: int
    local: LocalGateways | None

    def pids(self) -> list[int]:
        """The local children's process ids."""
        return [] if self.local is None else self.local.pids()


async def start_gateways(
    config: NodeConfig,
    *,
    bridges: Sequence[MarketWorkSource],
    marks: GatewayMarks,
    stopping: trio.Event,
    offset_ms: Callable[[], int] = lambda: 0,
    task_status: trio.TaskStatus[Gateways] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the gateway port for ``bridges`` (and start the local gateways) until
    ``stopping``, then stop them in order (see the module doc). Raises ``OSError`` if a port
    cannot be bound, ``trio.TooSlowError`` if the children do not listen in time."""
    settings = {bridge.algorithm: bridge.config for bridge in bridges}
    secret = config.gateway_secret or secrets.token_hex(32)
    hub = GatewayHub(
        bridges={bridge.algorithm: bridge for bridge in bridges},
        marks=marks,
        settings=settings_for(settings),
        secret=secret.encode(),
        offset_ms=offset_ms,
    )
    grace = max(s.shutdown_grace_s for s in settings.values())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(hub.run, host=config.gateway_host, port=config.gateway_port or 0)
        )
        local = None
        if config.gateways:
            local = LocalGateways(config=config, market_port=port, secret=secret, grace_s=grace)
            local.reserve()
            await nursery.start(local.run, hub)
        task_status.started(Gateways(hub=hub, port=port, local=local))
        await stopping.wait()
        if local is not None:
            await local.stop()
        hub.close()


def _host(host: str) -> str:
    """``host`` as it goes before ``:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
