"""The operator methods' objects on the wire (control.md): params and results of ``admin.*``.

Like ``wire.py``: every params object refuses unknown fields, every result's field names are
the contract, and the clients decode the same Structs the server encodes. Faults are a tagged
union on ``target`` (``StratumFault``, ``ApiFault``, ``PoolFault``), so each target's fields
are checked against that target alone; a new target is one more Struct in ``FaultParams``.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from marketplace.api.wire import Decimal
from stratum.core.shares import Algorithm

#: The longest advance one call may ask for (400 days, control.md).
MAX_ADVANCE_S: Final = 400 * 86_400
#: A worker: ``account.worker`` or ``conn:<id>``.
WorkerName = Annotated[str, Meta(min_length=1, max_length=140)]
Rate = Annotated[float, Meta(ge=0.0, le=1.0)]
Millis = Annotated[int, Meta(ge=0, le=600_000)]
Seed = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class _Params(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every params object: by name, unknown names refused."""


class AdvanceParams(_Params, frozen=True):
    seconds: Annotated[float, Meta(gt=0, le=MAX_ADVANCE_S)]


class BlockParams(_Params, frozen=True):
    algorithm: Algorithm


class WorkerListParams(_Params, frozen=True):
    algorithm: Algorithm | None = None


class WorkerParams(_Params, frozen=True):
    worker: WorkerName


class ReconnectParams(_Params, frozen=True):
    worker: WorkerName
    wait_s: Annotated[int, Meta(ge=0, le=3600)] = 0


class MessageParams(_Params, frozen=True):
    worker: WorkerName
    text: Annotated[str, Meta(min_length=1, max_length=512)]


class DifficultyParams(_Params, frozen=True):
    worker: WorkerName
    difficulty: Annotated[float, Meta(gt=0, le=1e15)]


class RulesParams(_Params, frozen=True):
    """``admin.market.rules``: the rules to change, in the units ``market.info`` shows them."""

    algorithm: Algorithm
    min_price: Decimal | None = None
    min_limit: Decimal | None = None
    min_amount: Decimal | None = None
    #: A fraction of the price, e.g. ``"0.05"`` (market.info's ``price_down_step``).
    price_down_step: Annotated[str, Meta(pattern=r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$")] | None = (
        None
    )
    price_down_interval_s: Annotated[int, Meta(ge=0)] | None = None
    fee_bps: Annotated[int, Meta(ge=0)] | None = None


class _Fault(_Params, frozen=True, tag_field="target", omit_defaults=True):
    """What every fault names: where it applies (``None``: everywhere) and its seed."""

    algorithm: Algorithm | None = None
    worker: WorkerName | None = None
    seed: Seed = 0


class StratumFault(_Fault, frozen=True, tag="stratum"):
    """Faults towards miners: every field left ``None`` is not injected."""

    latency_ms: Millis | None = None
    drop_after_s: Annotated[float, Meta(gt=0, le=86_400)] | None = None
    reject_rate: Rate | None = None
    stall: bool | None = None
    junk_rate: Rate | None = None


class ApiFault(_Fault, frozen=True, tag="api"):
    """Faults towards API clients (``algorithm`` and ``worker`` do not apply)."""

    latency_ms: Millis | None = None
    error_rate: Rate | None = None
    rate_limit: Annotated[int, Meta(ge=1, le=100_000)] | None = None


class PoolFault(_Fault, frozen=True, tag="pool"):
    """Faults towards buyers' pools (proxy.md), for the orders of ``algorithm`` if given
    (``worker`` does not apply)."""

    drop: bool | None = None
    latency_ms: Millis | None = None


#: ``admin.fault.set``'s params: one fault, by target.
FaultParams = StratumFault | ApiFault | PoolFault


class NoParams(_Params, frozen=True):
    pass


# ---------------------------------------------------------------------------------- results


class _Result(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every result (decoding ignores fields added later)."""


class MarketTimeOut(_Result, frozen=True):
    market_time_ms: int


class BlockOut(_Result, frozen=True):
    algorithm: Algorithm
    height: int
    jobs_pushed: int


class AdminWorkerOut(_Result, frozen=True):
    """One connection as the operator sees it."""

    #: ``account.worker`` of its first authorized worker (``None`` before authorize).
    name: str | None
    algorithm: Algorithm
    conn_id: int
    peer: str
    user_agent: str | None
    difficulty: float
    order_id: str | None
    #: Estimated speed in the market's unit.
    speed: str
    unit: str
    #: ``accepted`` and each reject reason, counted on this connection.
    shares: dict[str, int]
    extranonce1: str | None
    version_mask: str
    extranonce_subscribed: bool


class AdminWorkerListOut(_Result, frozen=True):
    workers: list[AdminWorkerOut]


class WorkerActionOut(_Result, frozen=True):
    ok: bool
    worker: str
    conn_id: int


class FaultListOut(_Result, frozen=True):
    faults: list[FaultParams]
