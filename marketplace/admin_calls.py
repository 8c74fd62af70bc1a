"""The operator's calls (``admin.*``, control.md), written once like the buyer API's.

``AdminCalls`` is the second table of ``marketplace.client_calls``' kind: each row is one
decorated method naming the JSON-RPC method, its result, what the client returns and its
``hashmarket admin ...`` command. Both clients inherit it beside ``ApiCalls``, so a
``MarketClient`` signed in with an operator key (account ``operator``) can ``advance`` market
time, ``set_fault`` and so on; the CLI builds ``hashmarket admin`` from these rows and signs
them with ``HASHMARKET_OPERATOR_KEY_ID`` / ``HASHMARKET_OPERATOR_SECRET`` (or flags). The
server's table is ``marketplace.api.admin.ADMIN_METHODS``; a test checks that the two agree.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from marketplace.api import admin_wire as aw
from marketplace.api import wire
from marketplace.client_calls import ApiCall, api_call, arg, cli
from stratum.core.shares import Algorithm

_ALGORITHMS: Final = tuple(Algorithm)
_WORKER: Final = arg("worker", help="account.worker or conn:<id>")
_NO_PARAMS: Final = aw.NoParams()


def _fault(target: str, given: dict[str, Any]) -> aw.FaultParams:
    """The fault of ``target`` with the fields given; ``ValueError`` for a field that target
    does not have or a value out of range."""
    fields = {k: v for k, v in given.items() if v is not None}
    try:
        fault: aw.FaultParams = msgspec.convert({"target": target, **fields}, aw.FaultParams)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{target} fault: {exc}") from None
    return fault


class AdminCalls:
    """Every operator method (control.md), one row each. Every method raises ``ApiError``:
    -32601 from a node without ``serve --control``, 4003 for a key without the ``operator``
    scope, and the refusals of each call."""

    @api_call(
        "admin.time.advance",
        aw.MarketTimeOut,
        pick=lambda r: r.market_time_ms,
        mutating=True,
        cli=cli(
            "admin time-advance",
            "move market time forward, running what falls due",
            arg("seconds", type=float, help="up to 400 days (34560000)"),
        ),
    )
    def advance(self, seconds: float, *, request_id: str | None = None) -> aw.AdvanceParams:
        """Move market time ``seconds`` forward (up to 400 days), running everything due in
        between in time order; the market time reached, once durable (``int``, ms)."""
        return aw.AdvanceParams(seconds=seconds)

    @api_call(
        "admin.block.new",
        aw.BlockOut,
        mutating=True,
        cli=cli(
            "admin block",
            "the emulated chain finds a block now",
            arg("algorithm", choices=_ALGORITHMS),
        ),
    )
    def new_block(
        self, algorithm: Algorithm | str, *, request_id: str | None = None
    ) -> aw.BlockParams:
        """The emulated chain of ``algorithm`` finds a block now: every worker of that market
        gets a clean job (``BlockOut``). Raises ``ValueError`` for an unknown algorithm."""
        return aw.BlockParams(algorithm=Algorithm(algorithm))

    @api_call(
        "admin.worker.list",
        aw.AdminWorkerListOut,
        pick=lambda r: r.workers,
        cli=cli(
            "admin workers",
            "every connected worker",
            arg("--algorithm", choices=_ALGORITHMS, default=None),
        ),
    )
    def connected_workers(self, algorithm: Algorithm | str | None = None) -> aw.WorkerListParams:
        """Every connected worker (of ``algorithm``'s market, if given): name, connection,
        difficulty, order, speed, shares (``list[AdminWorkerOut]``)."""
        return aw.WorkerListParams(algorithm=None if algorithm is None else Algorithm(algorithm))

    @api_call(
        "admin.worker.kick",
        aw.WorkerActionOut,
        mutating=True,
        cli=cli("admin kick", "close a worker's connection", _WORKER),
    )
    def kick(self, worker: str, *, request_id: str | None = None) -> aw.WorkerParams:
        """Close ``worker``'s connection (``WorkerActionOut``)."""
        return aw.WorkerParams(worker=worker)

    @api_call(
        "admin.worker.reconnect",
        aw.WorkerActionOut,
        mutating=True,
        cli=cli(
            "admin reconnect",
            "send client.reconnect",
            _WORKER,
            arg("--wait", to="wait_s", type=int, default=0, help="seconds before reconnecting"),
        ),
    )
    def reconnect(
        self, worker: str, *, wait_s: int = 0, request_id: str | None = None
    ) -> aw.ReconnectParams:
        """Send ``worker`` ``client.reconnect`` (to this server, after ``wait_s``) and close
        its connection (``WorkerActionOut``)."""
        return aw.ReconnectParams(worker=worker, wait_s=wait_s)

    @api_call(
        "admin.worker.message",
        aw.WorkerActionOut,
        mutating=True,
        cli=cli("admin message", "send client.show_message", _WORKER, arg("text")),
    )
    def message(self, worker: str, text: str, *, request_id: str | None = None) -> aw.MessageParams:
        """Send ``worker`` ``client.show_message`` with ``text`` (``WorkerActionOut``)."""
        return aw.MessageParams(worker=worker, text=text)

    @api_call(
        "admin.worker.difficulty",
        aw.WorkerActionOut,
        mutating=True,
        cli=cli(
            "admin difficulty",
            "set a worker's share difficulty",
            _WORKER,
            arg("difficulty", type=float),
        ),
    )
    def set_difficulty(
        self, worker: str, difficulty: float, *, request_id: str | None = None
    ) -> aw.DifficultyParams:
        """Set ``worker``'s share difficulty now (vardiff resumes from it), followed by a job
        (``WorkerActionOut``)."""
        return aw.DifficultyParams(worker=worker, difficulty=difficulty)

    @api_call(
        "admin.market.rules",
        wire.MarketOut,
        mutating=True,
        cli=cli(
            "admin rules",
            "change a market's rules from now on",
            arg("algorithm", choices=_ALGORITHMS),
            arg("--min-price", default=None, help="BTC per unit/s per day"),
            arg("--min-limit", default=None, help="in the market's unit"),
            arg("--min-amount", default=None, help="BTC"),
            arg("--price-down-step", default=None, help="a fraction, e.g. 0.05"),
            arg("--price-down-interval", to="price_down_interval_s", type=int, default=None),
            arg("--fee-bps", type=int, default=None, help="fee in 1/10000 of the spend"),
        ),
    )
    def set_rules(
        self,
        algorithm: Algorithm | str,
        *,
        min_price: str | None = None,
        min_limit: str | None = None,
        min_amount: str | None = None,
        price_down_step: str | None = None,
        price_down_interval_s: int | None = None,
        fee_bps: int | None = None,
        request_id: str | None = None,
    ) -> aw.RulesParams:
        """Change ``algorithm``'s rules from now on (only those given); the market as
        ``market.info`` shows it (``MarketOut``). Raises ``ValueError`` for an unknown
        algorithm."""
        return aw.RulesParams(
            algorithm=Algorithm(algorithm),
            min_price=min_price,
            min_limit=min_limit,
            min_amount=min_amount,
            price_down_step=price_down_step,
            price_down_interval_s=price_down_interval_s,
            fee_bps=fee_bps,
        )

    @api_call(
        "admin.fault.set",
        aw.FaultListOut,
        pick=lambda r: r.faults,
        mutating=True,
        cli=cli(
            "admin fault set",
            "start injecting a fault",
            arg("--target", choices=("stratum", "api", "pool"), required=True),
            arg("--algorithm", choices=_ALGORITHMS, default=None),
            arg("--worker", default=None, help="account.worker or conn:<id>"),
            arg("--seed", type=int, default=0),
            arg("--latency-ms", type=int, default=None),
            arg("--drop-after-s", type=float, default=None, help="stratum"),
            arg("--reject-rate", type=float, default=None, help="stratum: 0..1"),
            arg("--stall", action="store_const", const=True, default=None, help="stratum"),
            arg("--junk-rate", type=float, default=None, help="stratum: 0..1"),
            arg("--error-rate", type=float, default=None, help="api: 0..1"),
            arg("--rate-limit", type=int, default=None, help="api: requests/s per key"),
            arg(
                "--drop",
                action="store_const",
                const=True,
                default=None,
                help="pool: close the upstream connections now",
            ),
        ),
    )
    def set_fault(
        self,
        target: str,
        *,
        algorithm: Algorithm | str | None = None,
        worker: str | None = None,
        seed: int = 0,
        latency_ms: int | None = None,
        drop_after_s: float | None = None,
        reject_rate: float | None = None,
        stall: bool | None = None,
        junk_rate: float | None = None,
        error_rate: float | None = None,
        rate_limit: int | None = None,
        drop: bool | None = None,
        request_id: str | None = None,
    ) -> aw.FaultParams:
        """Start injecting a fault (control.md, "Faults"): ``target`` ``"stratum"`` with
        ``latency_ms``, ``drop_after_s``, ``reject_rate``, ``stall``, ``junk_rate`` (for one
        ``algorithm`` or ``worker`` if given), or ``"api"`` with ``latency_ms``,
        ``error_rate``, ``rate_limit``, or ``"pool"`` with ``drop`` and ``latency_ms`` on
        forwarded shares (for one ``algorithm``'s orders if given); randomness from
        ``seed``. The faults in force (``list[FaultParams]``). Raises ``ValueError`` for a
        field the target does not have or a value out of range."""
        return _fault(
            target,
            {
                "algorithm": algorithm,
                "worker": worker,
                "seed": seed,
                "latency_ms": latency_ms,
                "drop_after_s": drop_after_s,
                "reject_rate": reject_rate,
                "stall": stall,
                "junk_rate": junk_rate,
                "error_rate": error_rate,
                "rate_limit": rate_limit,
                "drop": drop,
            },
        )

    @api_call(
        "admin.fault.clear",
        aw.FaultListOut,
        pick=lambda r: r.faults,
        mutating=True,
        cli=cli("admin fault clear", "stop every fault"),
    )
    def clear_faults(self, *, request_id: str | None = None) -> aw.NoParams:
        """Stop every fault; the faults in force after: none (``list[FaultParams]``)."""
        return _NO_PARAMS

    @api_call(
        "admin.fault.list",
        aw.FaultListOut,
        pick=lambda r: r.faults,
        cli=cli("admin fault list", "the faults in force"),
    )
    def list_faults(self) -> aw.NoParams:
        """The faults in force (``list[FaultParams]``)."""
        return _NO_PARAMS


def admin_rows() -> list[ApiCall[Any, Any]]:
    """The operator table's rows in declaration order."""
    return [row for row in vars(AdminCalls).values() if isinstance(row, ApiCall)]
