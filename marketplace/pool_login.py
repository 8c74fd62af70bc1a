"""Connecting and logging in to a buyer's pool, as an order's upstream session and ``pool.verify``
both do, and what went wrong, in words a buyer can act on.

Theory of operation
-------------------
A pool is reached the way proxy.md describes, in stages: ``connect`` (the host resolved at
connect time, and every address it resolved to checked against the operator's allow list
before any connection is attempted: ``checked_address``), ``subscribe`` (as
``hashmarket/<version>``; the extranonce layout must leave a worker a slot and 2 bytes),
``mining.configure`` for version rolling (a pool that refuses or does not answer rolls none),
``authorize`` (the pool's username and unsealed password), then the first ``notify``.
``verify_pool`` runs them all within 10 s and says how far it got; the upstream manager
(``marketplace.upstream``) runs the same steps and then stays. Every way it can end as the
pool's fault (``FAILURES``) is turned into one sentence by ``why``.
"""

from __future__ import annotations

import importlib.metadata
import socket
from typing import Any, Final

import msgspec
import structlog
import trio

from marketplace.api.wire import PoolVerifyOut
from marketplace.core.errors import MarketError
from marketplace.core.pool_hosts import AllowList
from marketplace.core.pools import PoolAccess
from marketplace.core.relay import Relay, RelayError
from marketplace.core.sealing import SealError
from stratum.client import (
    ClientConfig,
    ConnectionLost,
    RequestRejected,
    StratumClient,
    open_stratum_client,
)
from stratum.core.client_events import (
    ConnectionClosed,
    NewDifficulty,
    NewJob,
    StratumFailure,
    Subscribed,
)
from stratum.core.client_protocol import RemoteProtocolError

log = structlog.get_logger("marketplace.upstream")


def _version() -> str:
    try:
        return importlib.metadata.version("hashmarket")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source checkout
        return "0"


USER_AGENT: Final = f"hashmarket/{_version()}"


class UpstreamConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The proxy's timeouts and bounds (seconds unless named otherwise)."""

    user_agent: str = USER_AGENT
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 10.0
    #: A pool that does not answer ``mining.configure`` is taken as not rolling versions.
    configure_timeout_s: float = 3.0
    #: The first job must come within this long after authorize (pool.verify's 10 s).
    notify_timeout_s: float = 10.0
    answer_timeout_s: float = 10.0
    #: A pool answering a share slower than this is noted in ``last_error``.
    slow_answer_s: float = 1.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    queue_size: int = 1024
    in_flight: int = 512
    check_interval_s: float = 1.0
    #: The version bits we ask the pool for (the Stratum server's own mask).
    version_rolling_mask: int = 0x1FFFE000
    #: How long verification may take in all (proxy.md: 10 s).
    verify_timeout_s: float = 10.0

    def client(self, *, request_timeout_s: float | None = None) -> ClientConfig:
        """The Stratum client's settings for one pool connection."""
        return ClientConfig(
            user_agent=self.user_agent,
            connect_timeout=self.connect_timeout_s,
            request_timeout=request_timeout_s or self.request_timeout_s,
        )


async def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (an address resolves to itself). Raises ``OSError``."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(host: str, port: int, *, allow: AllowList) -> str:
    """The address to connect to: ``host`` resolved, every address allowed (the connection
    goes to that address, so the name is not resolved twice). Raises ``RelayError`` when the
    operator does not allow it, ``OSError`` when it cannot be resolved."""
    addresses = await resolve(host, port)
    if not allow.allows_resolved(host, addresses):
        raise RelayError(
            f"{host} ({', '.join(addresses) or 'no address'}) is not on the operator's "
            "--pool-allow list"
        )
    return addresses[0]


async def subscribe(client: StratumClient, relay: Relay) -> Subscribed:
    """``mining.subscribe``; raises ``RelayError`` for a layout no worker can use."""
    subscribed = await client.subscribe()
    relay.subscribed(
        extranonce1=subscribed.extranonce1, extranonce2_size=subscribed.extranonce2_size
    )
    return subscribed


async def configure(client: StratumClient, relay: Relay, config: UpstreamConfig) -> None:
    """``mining.configure`` for version rolling: the mask granted, or none."""
    mask = None
    with trio.move_on_after(config.configure_timeout_s):
        try:
            options: dict[str, str | int] = {
                "version-rolling.mask": f"{config.version_rolling_mask:08x}"
            }
            configured = await client.configure(["version-rolling"], options)
            if configured.version_rolling:
                mask = configured.version_rolling_mask
        except RequestRejected:
            pass
    relay.version_rolling(mask)


async def authorize(client: StratumClient, access: PoolAccess) -> None:
    """``mining.authorize``; raises ``RelayError`` when the pool refuses."""
    authorized = await client.authorize(access.username, access.password)
    if not authorized.ok:
        raise RelayError(f"authorize refused: {failure(authorized.failure)}")


async def verify_pool(
    access: PoolAccess, *, allow: AllowList, config: UpstreamConfig
) -> PoolVerifyOut:
    """Connect to the pool as an order would, within ``verify_timeout_s`` (proxy.md's
    ``pool.verify``): how far it got (``stage``) and why it stopped (``error``)."""
    found: dict[str, Any] = {}
    stage = "connect"
    error: str | None = None
    opened: StratumClient | None = None
    with trio.move_on_after(config.verify_timeout_s) as overall:
        try:
            address = await checked_address(access.host, access.port, allow=allow)
            client_config = config.client(request_timeout_s=config.verify_timeout_s)
            async with open_stratum_client(address, access.port, config=client_config) as c:
                opened = c
                stage = "subscribe"
                probe = Relay(order_id="verify", algorithm=access.algorithm, created_ms=0, now_ms=0)
                sent = trio.current_time()
                subscribed = await c.subscribe()
                found["latency_ms"] = round((trio.current_time() - sent) * 1000)
                found["extranonce1"] = subscribed.extranonce1
                found["extranonce2_size"] = subscribed.extranonce2_size
                probe.subscribed(
                    extranonce1=subscribed.extranonce1,
                    extranonce2_size=subscribed.extranonce2_size,
                )
                await configure(c, probe, config)
                if probe.version_mask:
                    found["version_rolling"] = f"{probe.version_mask:08x}"
                stage = "authorize"
                await authorize(c, access)
                stage = "notify"
                found["difficulty"] = await _first_job(c)
                stage = "done"
        except FAILURES as exc:
            error = why(exc, opened, config.verify_timeout_s)
    if overall.cancelled_caught and error is None:
        waited = {"notify": "notify", "connect": "connection"}.get(stage, f"{stage} answer")
        error = f"no {waited} within {config.verify_timeout_s:g} s"
    log.info("upstream.verified", pool=access.pool_id or None, stage=stage, error=error)
    return PoolVerifyOut(
        ok=stage == "done",
        stage=stage,
        latency_ms=found.get("latency_ms"),
        extranonce1=found.get("extranonce1"),
        extranonce2_size=found.get("extranonce2_size"),
        difficulty=found.get("difficulty"),
        version_rolling=found.get("version_rolling"),
        error=None if stage == "done" else error,
    )


async def _first_job(client: StratumClient) -> float:
    """Wait for the pool's first job; the difficulty in force when it came. Raises
    ``ConnectionLost`` when the connection ends first."""
    difficulty = 1.0
    async for event in client.events:
        if isinstance(event, NewDifficulty):
            difficulty = event.difficulty
        elif isinstance(event, NewJob):
            return difficulty
        elif isinstance(event, ConnectionClosed):
            break
    raise ConnectionLost(client.close_reason or "end of stream")


#: What ends a session (or a verification) as the pool's fault, said in words by ``why``.
FAILURES: Final = (
    RelayError,
    RemoteProtocolError,
    ConnectionLost,
    trio.TooSlowError,
    OSError,
    MarketError,
    SealError,
)


def why(exc: Exception, client: StratumClient | None, timeout_s: float) -> str:
    """What ended a session, in words a buyer can act on."""
    broken = exc if isinstance(exc, RemoteProtocolError) else None
    if isinstance(exc, ConnectionLost) and client is not None:
        broken = client.protocol_error
    if isinstance(exc, RelayError):
        return str(exc)
    if broken is not None:
        return f"the pool sent something that is not Stratum ({broken})"
    if isinstance(exc, ConnectionLost):
        return f"the pool closed the connection ({exc})"
    if isinstance(exc, trio.TooSlowError):
        return f"the pool did not answer within {timeout_s:g} s"
    if isinstance(exc, OSError):
        return f"cannot connect to the pool: {exc.strerror or exc}"
    return f"the pool cannot be used: {exc}"


def failure(refusal: StratumFailure | None) -> str:
    """A pool's refusal as the buyer sees it: ``[code, 'message']``."""
    if refusal is None:
        return "[false]"
    return f"[{refusal.code}, {refusal.message[:120]!r}]"
