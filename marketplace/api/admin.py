"""The operator methods (``admin.*``, control.md): what ``serve --control`` adds to the API.

Theory of operation
-------------------
``AdminApi`` is the second method table of the JSON-RPC service (``app.RpcService`` asks it
through the ``app.Admin`` protocol; without ``--control`` the node builds none, so every
``admin.*`` method is -32601, method not found, whatever the key). The dispatcher has already
authenticated the request and checked the ``operator`` scope; here each method's params are
decoded (-32602 with msgspec's message) and its handler runs against the node's ``Control``:
the time machine, the connected workers, the bridges (blocks), the market (rules, through the
engine) and the faults. Handlers are coroutines: an advance runs many commands, and answers
once all of them are durable.

Operator calls change things that are not all journaled (a kick, a fault), so their
``X-Request-Id`` idempotency lives here, in memory: a mutating call repeated with the same key
and request id gets the first answer (waiting for it if the first is still running) and does
nothing again, so the client's one retry after a transport failure never advances time twice.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar

import msgspec
import trio

from marketplace.api import admin_wire as aw
from marketplace.api import rpc, wire
from marketplace.api.auth import Caller
from marketplace.api.errors import ApiCode, RpcError
from marketplace.bridge import MarketWorkSource
from marketplace.clock import Clock
from marketplace.control.advance import TimeMachine
from marketplace.control.faults import ApiTarget, Faults
from marketplace.control.workers import WorkerConnection, Workers, worker_name
from marketplace.core.idempotency import params_digest
from marketplace.core.market import Market
from marketplace.core.rules import RuleChange
from marketplace.engine import Engine
from stratum.core.shares import Algorithm

P = TypeVar("P", bound=msgspec.Struct)
R = TypeVar("R", bound=msgspec.Struct)

#: How long, and how many, operator answers are kept for repeats of their request id.
_REMEMBER_S: Final = 24 * 3600
_REMEMBER_MAX: Final = 10_000


@dataclass(eq=False)
class Control:
    """What the operator methods act on: one node's parts (built by the assembly)."""

    clock: Clock
    engine: Engine
    market: Market
    time: TimeMachine
    workers: Workers
    faults: Faults
    bridges: dict[Algorithm, MarketWorkSource] = field(default_factory=dict)
    stratum_host: str = "127.0.0.1"
    stratum_ports: dict[Algorithm, int] = field(default_factory=dict)


class AdminMethod(NamedTuple):
    name: str
    params: type[msgspec.Struct]
    run: Callable[[Control, Any], Awaitable[msgspec.Struct]]
    #: Changes something: a repeat with the same ``X-Request-Id`` gets the first answer.
    mutating: bool
    decoder: msgspec.json.Decoder[Any]


def _method(
    name: str,
    params: type[P],
    run: Callable[[Control, P], Awaitable[R]],
    *,
    mutating: bool = True,
) -> AdminMethod:
    return AdminMethod(name, params, run, mutating, msgspec.json.Decoder(params))


# ---------------------------------------------------------------------------------- handlers


async def time_advance(control: Control, p: aw.AdvanceParams) -> aw.MarketTimeOut:
    return aw.MarketTimeOut(market_time_ms=await control.time.advance(p.seconds))


async def block_new(control: Control, p: aw.BlockParams) -> aw.BlockOut:
    bridge = control.bridges.get(p.algorithm)
    if bridge is None:
        raise RpcError(ApiCode.INVALID_PARAMS, "no such market", {"algorithm": p.algorithm})
    pushed = bridge.new_block()
    await trio.lowlevel.checkpoint()
    return aw.BlockOut(algorithm=p.algorithm, height=bridge.chain.tip.height, jobs_pushed=pushed)


async def worker_list(control: Control, p: aw.WorkerListParams) -> aw.AdminWorkerListOut:
    await trio.lowlevel.checkpoint()
    workers = control.workers
    return aw.AdminWorkerListOut(
        workers=[workers.describe(conn) for conn in workers.connections(p.algorithm)]
    )


def _done(conn: WorkerConnection) -> aw.WorkerActionOut:
    return aw.WorkerActionOut(
        ok=True, worker=worker_name(conn) or f"conn:{conn.conn_id}", conn_id=conn.conn_id
    )


async def worker_kick(control: Control, p: aw.WorkerParams) -> aw.WorkerActionOut:
    await trio.lowlevel.checkpoint()
    return _done(control.workers.kick(p.worker))


async def worker_reconnect(control: Control, p: aw.ReconnectParams) -> aw.WorkerActionOut:
    await trio.lowlevel.checkpoint()
    return _done(control.workers.reconnect(p.worker, wait_s=p.wait_s))


async def worker_message(control: Control, p: aw.MessageParams) -> aw.WorkerActionOut:
    await trio.lowlevel.checkpoint()
    return _done(control.workers.message(p.worker, p.text))


async def worker_difficulty(control: Control, p: aw.DifficultyParams) -> aw.WorkerActionOut:
    await trio.lowlevel.checkpoint()
    return _done(control.workers.set_difficulty(p.worker, p.difficulty))


def _step_bps(text: str) -> int:
    return int(Decimal(text) * 10_000)


async def market_rules(control: Control, p: aw.RulesParams) -> wire.MarketOut:
    change = RuleChange(
        min_price_msat=None if p.min_price is None else wire.parse_price(p.min_price),
        min_limit_hs=None if p.min_limit is None else wire.parse_limit(p.min_limit, p.algorithm),
        min_amount_msat=None if p.min_amount is None else wire.parse_amount(p.min_amount),
        price_down_step_bps=None if p.price_down_step is None else _step_bps(p.price_down_step),
        price_down_interval_s=p.price_down_interval_s,
        fee_bps=p.fee_bps,
    )
    market, clock = control.market, control.clock
    rules = await control.engine.execute(
        lambda: market.change_rules(algorithm=p.algorithm, change=change, now_ms=clock.now_ms())
    )
    return wire.market_out(
        rules,
        fixed_price_msat=market.fixed_quote(p.algorithm, fleet=control.workers.fleet),
        stratum_host=control.stratum_host,
        stratum_port=control.stratum_ports.get(p.algorithm),
    )


async def fault_set(control: Control, p: aw.FaultParams) -> aw.FaultListOut:
    await trio.lowlevel.checkpoint()
    control.faults.set(p)
    return aw.FaultListOut(faults=control.faults.active())


async def fault_clear(control: Control, p: aw.NoParams) -> aw.FaultListOut:
    await trio.lowlevel.checkpoint()
    control.faults.clear()
    return aw.FaultListOut(faults=[])


async def fault_list(control: Control, p: aw.NoParams) -> aw.FaultListOut:
    await trio.lowlevel.checkpoint()
    return aw.FaultListOut(faults=control.faults.active())


ADMIN_METHODS: Final[dict[str, AdminMethod]] = {
    m.name: m
    for m in (
        _method("admin.time.advance", aw.AdvanceParams, time_advance),
        _method("admin.block.new", aw.BlockParams, block_new),
        _method("admin.worker.list", aw.WorkerListParams, worker_list, mutating=False),
        _method("admin.worker.kick", aw.WorkerParams, worker_kick),
        _method("admin.worker.reconnect", aw.ReconnectParams, worker_reconnect),
        _method("admin.worker.message", aw.MessageParams, worker_message),
        _method("admin.worker.difficulty", aw.DifficultyParams, worker_difficulty),
        _method("admin.market.rules", aw.RulesParams, market_rules),
        _method("admin.fault.set", aw.FaultParams, fault_set),  # type: ignore[arg-type]
        _method("admin.fault.clear", aw.NoParams, fault_clear),
        _method("admin.fault.list", aw.NoParams, fault_list, mutating=False),
    )
}


class _Answer:
    """An operator call's answer, or the promise of it while the call runs."""

    def __init__(self, method: str, digest: str) -> None:
        self.method = method
        self.digest = digest
        self.at = time.monotonic()
        self.done = trio.Event()
        self.result: bytes | None = None


class AdminApi:
    """The ``admin.*`` methods over one node's ``Control`` (``app.Admin``; see the module
    doc)."""

    def __init__(self, control: Control, methods: Mapping[str, AdminMethod] = ADMIN_METHODS):
        self.control = control
        self._methods = methods
        self._answers: dict[tuple[str, str], _Answer] = {}

    def knows(self, method: str) -> bool:
        """Whether ``method`` is an operator method."""
        return method in self._methods

    def api_faults(self) -> ApiTarget | None:
        """The API fault in force, if any."""
        return self.control.faults.api

    async def call(self, method: str, params: bytes, caller: Caller) -> bytes:
        """Run the operator method ``method`` (the caller has the ``operator`` scope); its
        result as JSON. Raises ``RpcError`` (-32602 bad params, -32600 a request id reused
        for another call) or the ``MarketError`` of a refusal."""
        admin = self._methods[method]
        try:
            decoded = admin.decoder.decode(params)
        except msgspec.DecodeError as exc:
            raise RpcError(ApiCode.INVALID_PARAMS, "invalid params", {"detail": str(exc)}) from None
        if not admin.mutating or caller.request_id is None:
            return rpc.encode(await admin.run(self.control, decoded))
        key = (caller.key_id, caller.request_id)
        digest = params_digest(method, params)
        answer = self._answers.get(key)
        if answer is not None:
            if (answer.method, answer.digest) != (method, digest):
                raise RpcError(
                    ApiCode.INVALID_REQUEST,
                    "X-Request-Id was already used for a different call",
                    {"header": "X-Request-Id"},
                )
            await answer.done.wait()
            if answer.result is not None:
                return answer.result
        self._forget_old()
        answer = self._answers[key] = _Answer(method, digest)
        try:
            answer.result = rpc.encode(await admin.run(self.control, decoded))
        except BaseException:
            del self._answers[key]  # a refusal is not remembered: a retry may succeed
            raise
        finally:
            answer.done.set()
        return answer.result

    def _forget_old(self) -> None:
        horizon = time.monotonic() - _REMEMBER_S
        for key in [k for k, a in self._answers.items() if a.at < horizon and a.done.is_set()]:
            del self._answers[key]
        while len(self._answers) >= _REMEMBER_MAX:
            del self._answers[next(iter(self._answers))]
