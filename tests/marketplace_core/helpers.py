"""Shared builders for the marketplace core tests."""

from __future__ import annotations

from collections.abc import Callable

from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_invariants
from marketplace.core.market import Market
from marketplace.core.model import (
    Assignment,
    MarketConfig,
    OrderType,
    OrderView,
    WorkerKey,
    default_rules,
)
from marketplace.core.views import MarketViews
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

SHA = Algorithm.SHA256D
MH = 10**6
BTC = 10**11
RULES = default_rules(SHA)


class Core:
    """A market, its fleet and their views, driven the way the scheduler and the bridge do:
    rebalance = the fleet over the market's queue; a recorded share that was accepted also
    feeds its connection's estimate."""

    def __init__(
        self, config: MarketConfig, *, market: Market | None = None, fleet: Fleet | None = None
    ) -> None:
        self.market = market or Market(config=config)
        self.fleet = fleet or Fleet(config=config)
        self.views = MarketViews(self.market, self.fleet)
        self.keys: dict[int, WorkerKey] = {}

    def rebalance(
        self,
        algorithm: Algorithm = SHA,
        *,
        now_ms: int,
        alive: Callable[[str], bool] | None = None,
    ) -> list[Assignment]:
        return self.fleet.rebalance(
            algorithm, queue=self.market.allocation_queue(algorithm, alive=alive), now_ms=now_ms
        )

    def record_share(
        self, share: Share, *, order_id: str | None, billable: bool = True
    ) -> int | None:
        price = self.market.record_share(share, order_id=order_id, billable=billable)
        key = self.keys.get(share.conn_id)
        if share.accepted and key is not None:
            self.fleet.share_accepted(
                worker=key, difficulty=share.difficulty, time_ms=share.time_ms
            )
        return price

    def check(self) -> None:
        check_invariants(self.market, self.fleet)


def make_market(*, faucet: bool = True, **config: object) -> Market:
    """A market alone (what replay and the account rules need: no fleet)."""
    return Market(config=MarketConfig(faucet=faucet, **config))  # type: ignore[arg-type]


def make_core(*, faucet: bool = True, **config: object) -> Core:
    return Core(MarketConfig(faucet=faucet, **config))  # type: ignore[arg-type]


def funded(core: Core, account: str, amount_msat: int = BTC, now_ms: int = 0) -> None:
    core.market.create_account(account=account, now_ms=now_ms)
    core.market.deposit(account=account, amount_msat=amount_msat, now_ms=now_ms)


def standard(
    core: Core,
    account: str = "buyer",
    *,
    price_msat: int = 200_000_000,
    limit_hs: int = 0,
    amount_msat: int = 100_000_000,
    duration_s: int | None = None,
    now_ms: int = 0,
    request_id: str | None = None,
) -> OrderView:
    """Place a standard order; its view right after (as ``order.create`` answers)."""
    order_id = core.market.create_order(
        account=account,
        algorithm=SHA,
        type=OrderType.STANDARD,
        price_msat=price_msat,
        limit_hs=limit_hs,
        amount_msat=amount_msat,
        duration_s=duration_s,
        now_ms=now_ms,
        fleet=core.fleet,
        request_id=request_id,
    )
    return core.views.get_order(account=account, order_id=order_id, now_ms=now_ms)


def worker(conn_id: int, account: str = "seller", name: str | None = None) -> WorkerKey:
    return WorkerKey(conn_id, account, name or f"w{conn_id}", SHA)


def join(core: Core, key: WorkerKey, speed_hs: int = MH, now_ms: int = 0) -> None:
    core.market.ensure_account(account=key.account, now_ms=now_ms)
    core.fleet.worker_joined(worker=key, estimate_hs=speed_hs, now_ms=now_ms)
    core.keys[key.conn_id] = key


def share(
    key: WorkerKey,
    *,
    difficulty: float = 1.0,
    time_ms: int = 1000,
    accepted: bool = True,
    reason: str | None = None,
    source: str = "",
    worker_name: str | None = None,
) -> Share:
    return Share(
        conn_id=key.conn_id,
        account=key.account,
        worker=worker_name or key.worker,
        algorithm=key.algorithm,
        source=source,
        difficulty=difficulty,
        accepted=accepted,
        reason=None if accepted else (reason or "stale"),
        time_ms=time_ms,
    )
