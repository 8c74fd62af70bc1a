"""Shared builders for the marketplace core tests."""

from __future__ import annotations

from marketplace.core.market import Market
from marketplace.core.model import MarketConfig, OrderType, OrderView, WorkerKey, default_rules
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm

SHA = Algorithm.SHA256D
MH = 10**6
BTC = 10**11
RULES = default_rules(SHA)


def make_market(*, faucet: bool = True, **config: object) -> Market:
    return Market(config=MarketConfig(faucet=faucet, **config))  # type: ignore[arg-type]


def funded(market: Market, account: str, amount_msat: int = BTC, now_ms: int = 0) -> None:
    market.create_account(account=account, now_ms=now_ms)
    market.deposit(account=account, amount_msat=amount_msat, now_ms=now_ms)


def standard(
    market: Market,
    account: str = "buyer",
    *,
    price_msat: int = 200_000_000,
    limit_hs: int = 0,
    amount_msat: int = 100_000_000,
    duration_s: int | None = None,
    now_ms: int = 0,
) -> OrderView:
    return market.create_order(
        account=account,
        algorithm=SHA,
        type=OrderType.STANDARD,
        price_msat=price_msat,
        limit_hs=limit_hs,
        amount_msat=amount_msat,
        duration_s=duration_s,
        now_ms=now_ms,
    )


def worker(conn_id: int, account: str = "seller", name: str | None = None) -> WorkerKey:
    return WorkerKey(conn_id, account, name or f"w{conn_id}", SHA)


def join(market: Market, key: WorkerKey, speed_hs: int = MH, now_ms: int = 0) -> None:
    market.ensure_account(account=key.account, now_ms=now_ms)
    market.worker_joined(worker=key, estimate_hs=speed_hs, now_ms=now_ms)


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
