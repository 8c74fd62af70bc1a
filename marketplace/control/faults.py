"""Injected faults (control.md, "Faults"): seeded, repeatable misbehaviour on cue.

Theory of operation
-------------------
``Faults`` is the registry of the faults in force. ``set`` adds one (``admin.fault.set``: a
``StratumFault``, an ``ApiFault`` or a ``PoolFault`` from ``api.admin_wire``), replacing one
set before for the same target, algorithm and worker; ``clear`` ends them all; ``active``
lists them. Nothing is journaled: a restart clears every fault.

Each target is a small class that answers its seam's questions, so a new target is one more
class and one more ``FaultParams`` member:

- ``stratum`` (``StratumTarget``, ``stratum.faults.LinkFaults``): the servers ask it per
  connection whether to delay a line (``latency_ms``), put junk before it (``junk_rate``),
  answer a valid share stale (``reject_rate``) or withhold jobs (``stall``); ``run`` drops the
  connections that have been open ``drop_after_s`` (or since the fault was set, if later). The
  servers hold the target only while a Stratum fault is set, so a node with ``--control`` and
  no fault pays nothing.
- ``api`` (``ApiTarget``, ``api.app.ApiFaults``): the API asks it whether to hold a request
  back (``latency_ms``), answer 503 (``error_rate``) and which rate limit applies
  (``rate_limit``). Requests of operator keys are never faulted (the API checks), so a test
  can always clear what it set.
- ``pool`` (``PoolTarget``, the proxy's ``UpstreamManager``): ``drop`` closes the upstream
  connections of the orders it applies to when it is set (each reconnects after its usual
  backoff, so the order is ``dead`` in between and its workers move away and back), and
  ``latency_ms`` holds each forwarded share back that long before it goes to the pool (the
  forwarder's ``delay`` seam; the miner's own answer never waits for the pool).

Randomness is ``random.Random`` seeded from the fault's ``seed``, one stream per kind of
decision and per worker name (``"{seed}/{kind}/{worker}"``), so the same seed gives the same
sequence of decisions for a worker whatever the other workers do, run after run.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import structlog
import trio

from marketplace.api.admin_wire import ApiFault, FaultParams, PoolFault, StratumFault
from marketplace.api.ratelimit import RateLimiter
from marketplace.control.workers import Workers, worker_name
from marketplace.upstream import UpstreamManager
from stratum.core.shares import Algorithm
from stratum.faults import StratumTarget, Streams
from stratum.link import link_fault

log = structlog.get_logger("marketplace.faults")

#: How often ``run`` looks for connections to drop while a ``drop_after_s`` fault is set.
DROP_POLL_S = 0.1


class ApiTarget:
    """The API fault in force, as the API asks it (``api.app.ApiFaults``)."""

    def __init__(self, params: ApiFault) -> None:
        self.params = params
        self._streams = Streams(params.seed)
        limit = params.rate_limit
        self._limiter = None if limit is None else RateLimiter(rate_per_s=limit, burst=limit)

    def delay_s(self) -> float:
        """How long to hold the request back."""
        return (self.params.latency_ms or 0) / 1000

    def fail(self) -> bool:
        """Whether to answer this request 503 (and do nothing)."""
        return self._streams.chance("error", "", self.params.error_rate)

    def rate_limiter(self) -> RateLimiter | None:
        """The token buckets that replace the default rate limit (``None``: the default)."""
        return self._limiter


class PoolTarget:
    """The pool faults in force, per algorithm (``None``: every order with a pool)."""

    def __init__(self, upstreams: UpstreamManager) -> None:
        self._upstreams = upstreams
        self.faults: dict[Algorithm | None, PoolFault] = {}

    def set(self, params: PoolFault) -> None:
        """Inject ``params`` (replacing one for the same algorithm); ``drop`` acts at once."""
        self.faults[params.algorithm] = params
        if params.drop:
            dropped = self._upstreams.drop_all(
                "the connection to the pool was dropped (injected fault)",
                algorithm=params.algorithm,
            )
            log.info("fault.pool_dropped", connections=dropped, algorithm=params.algorithm)
        self._upstreams.forwarding.delay = self.delay_s if self.faults else None

    def clear(self) -> None:
        self.faults.clear()
        self._upstreams.forwarding.delay = None

    def delay_s(self, order_id: str) -> float:
        """How long to hold back a share forwarded for ``order_id``."""
        relay = self._upstreams.relay(order_id)
        algorithm = None if relay is None else relay.algorithm
        applying = (
            f.latency_ms or 0 for key, f in self.faults.items() if key is None or key is algorithm
        )
        return max(applying, default=0) / 1000


class Faults:
    """The registry of faults in force (see the module doc)."""

    def __init__(self, workers: Workers, upstreams: UpstreamManager) -> None:
        self._workers = workers
        self._stratum = StratumTarget()
        self._api: ApiTarget | None = None
        self._pool = PoolTarget(upstreams)
        self._changed = trio.Event()

    @property
    def api(self) -> ApiTarget | None:
        """The API fault in force, if any (what the API asks)."""
        return self._api

    def set(self, fault: FaultParams) -> None:
        """Start injecting ``fault`` (replacing one set for the same place)."""
        if isinstance(fault, ApiFault):
            self._api = ApiTarget(fault)
        elif isinstance(fault, PoolFault):
            self._pool.set(fault)
        else:
            self._stratum.set(fault, set_at=trio.current_time())
            # (Only a Stratum fault changes what the servers and gateways inject: re-sending
            # on another target's fault would restart the gateways' seeded streams.)
            self._attach()
        log.info("fault.set", **_loggable(fault))

    def clear(self) -> None:
        """Stop every fault."""
        self._stratum.faults.clear()
        self._api = None
        self._pool.clear()
        self._attach()
        log.info("fault.cleared")

    def active(self) -> list[FaultParams]:
        """The faults in force, as they were set."""
        # (The Stratum target holds the operator's own ``StratumFault``s.)
        faults: list[FaultParams] = [
            cast(StratumFault, f.params) for f in self._stratum.faults.values()
        ]
        if self._api is not None:
            faults.append(self._api.params)
        faults.extend(self._pool.faults.values())
        return faults

    def _attach(self) -> None:
        """Give the servers the Stratum target while a Stratum fault is set, else nothing."""
        target = self._stratum if self._stratum.faults else None
        for server in self._workers.servers.values():
            server.faults = target
        hub = self._workers.gateways
        if hub is not None:
            hub.set_faults([link_fault(f.params) for f in self._stratum.faults.values()])
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drop connections as ``drop_after_s`` faults say, until cancelled."""
        task_status.started()
        while True:
            if not self._stratum.drops:
                await self._changed.wait()
                continue
            with trio.move_on_after(DROP_POLL_S):
                await self._changed.wait()
            now = trio.current_time()
            for conn in self._stratum.due_drops(self._workers.local_connections(), now):
                log.info("fault.dropped", conn=conn.conn_id, worker=worker_name(conn))
                conn.drop()


def _loggable(fault: FaultParams) -> dict[str, Any]:
    fields = {k: v for k, v in msgspec.structs.asdict(fault).items() if v is not None}
    return {"target": type(fault).__struct_config__.tag, **fields}
