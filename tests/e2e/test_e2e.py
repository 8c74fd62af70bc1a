"""End to end: the real ``hashmarket`` programs as subprocesses on 127.0.0.1.

Synchronisation is by polling a condition under a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketplace.config import NodeConfig, load_config
from marketplace.testing import Market

PY = sys.executable
SAT = Decimal("0.00000001")
FAST = {
    "start_difficulty": 0.0002,
    "min_difficulty": 0.00002,
    "target_share_interval": 3,
    "rebalance_interval": 1,
    "settle_interval": 1,
}


def wait_for(
    what: str, check: Callable[[], Any], *, timeout: float = 30, every: float = 0.5
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def account_create(name: str, db: Path) -> dict[str, str]:
    """``hashmarket account create NAME --db DB``, the real command."""
    done = subprocess.run(
        [PY, "-m", "marketplace", "account", "create", name, "--db", str(db)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    made: dict[str, str] = json.loads(done.stdout)
    assert set(made) == {"account_id", "key_id", "secret"}
    return made


class Cli:
    """The API client commands, as one account."""

    def __init__(self, market: Market, made: dict[str, str]) -> None:
        self.made = made
        self.market = market

    def __call__(self, *args: str) -> Any:
        env = {
            **os.environ,
            "HASHMARKET_URL": self.market.api_url,
            "HASHMARKET_ACCOUNT": self.made["account_id"],
            "HASHMARKET_KEY_ID": self.made["key_id"],
            "HASHMARKET_SECRET": self.made["secret"],
        }
        done = subprocess.run(
            [PY, "-m", "marketplace", *args, "--json"],
            capture_output=True,
            env=env,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"{args}: {done.stderr.decode()}"
        return json.loads(done.stdout)

    def balance(self) -> tuple[Decimal, Decimal]:
        b = self("account", "balance")
        return Decimal(b["available"]), Decimal(b["escrowed"])

    def ledger(self) -> list[dict[str, Any]]:
        return list(self("account", "ledger", "--limit", "1000")["entries"])

    def order(self, order_id: str) -> dict[str, Any]:
        return dict(self("order", "get", order_id))


def sum_kind(entries: list[dict[str, Any]], kind: str, order_id: str) -> Decimal:
    return sum(
        (
            Decimal(e["amount"])
            for e in entries
            if e["kind"] == kind and e["ref"].endswith("/" + order_id)
        ),
        Decimal(0),
    )


# ------------------------------------------------------------------------------- the story


@pytest.mark.slow
def test_market_story_with_real_processes(hashmarket_factory: Callable[..., Market]) -> None:
    market = hashmarket_factory(control=False, **FAST)
    # Created through the node's operator inbox (the node holds the database).
    b1 = Cli(market, account_create("buyer1", market.db))
    b2 = Cli(market, account_create("buyer2", market.db))
    seller = Cli(market, account_create("seller", market.db))
    for buyer in (b1, b2):
        buyer("account", "deposit", "1")
    # A high bid limited to one worker whose budget runs out in seconds,
    # and a lower unlimited bid with a budget that lasts.
    o1 = b1(
        "order", "create", "--algorithm", "sha256d", "--type", "standard",
        "--price", "20", "--limit", "0.01", "--amount", "0.001",
    )["id"]  # fmt: skip
    o2 = b2(
        "order", "create", "--algorithm", "sha256d", "--type", "standard",
        "--price", "0.5", "--limit", "0", "--amount", "0.01",
    )["id"]  # fmt: skip
    workers = [market.worker(f"seller.w{i}", log_level="warning") for i in (1, 2, 3)]

    def split() -> tuple[int, int] | None:
        got = (b1.order(o1)["workers"], b2.order(o2)["workers"])
        return got if got == (1, 2) else None

    # The better bid gets exactly one worker (its limit), the other two go to o2.
    wait_for("workers split 1/2", split, timeout=20)

    # o1's budget runs out: it completes, and its worker moves to o2.
    done1 = wait_for(
        "o1 to complete",
        lambda: (o := b1.order(o1))["status"] == "completed" and o,
        timeout=45,
    )
    assert Decimal(done1["spent"]) == Decimal("0.001")
    wait_for("o2 to get all 3 workers", lambda: b2.order(o2)["workers"] == 3, timeout=6)

    # Cancel o2: its unspent budget comes back to available at once.
    available_before, _ = b2.balance()
    cancelled = b2("order", "cancel", o2)
    assert cancelled["status"] == "cancelled"
    released = Decimal(cancelled["amount"]) - Decimal(cancelled["spent"])
    assert released > 0
    available_after, _ = b2.balance()
    # Wire amounts are truncated to 8 decimals (spec): allow one sat per string.
    assert abs(available_after - (available_before + released)) <= 3 * SAT

    # After settlement no escrow is left and every order's charges equal its sellers'
    # earnings plus the market's fee (2 %, to the operator account, which no buyer key
    # reads), settlement by settlement.
    wait_for("escrow settled", lambda: b1.balance()[1] == b2.balance()[1] == 0, timeout=10)
    seller_ledger = seller.ledger()
    for buyer, order_id in ((b1, o1), (b2, o2)):
        spent = Decimal(buyer.order(order_id)["spent"])
        charges = [e for e in buyer.ledger() if e["kind"] == "charge"]
        charges = [e for e in charges if e["ref"].endswith("/" + order_id)]
        assert charges
        total = fee_total = Decimal(0)
        for charge in charges:
            ref = charge["ref"]
            assert ref.startswith("s-")
            earnings = [e for e in seller_ledger if e["ref"] == ref]
            assert {e["kind"] for e in earnings} == {"earning"}
            paid = sum((Decimal(e["amount"]) for e in earnings), Decimal(0))
            charged = -Decimal(charge["amount"])
            fee = charged - paid
            # Each wire string is truncated to whole sats: one sat per string.
            assert abs(fee - charged * Decimal("0.02")) <= (len(earnings) + 2) * SAT
            total += charged
            fee_total += fee
        assert abs(total - spent) <= (len(charges) + 1) * SAT
        assert abs(fee_total - total * Decimal("0.02")) <= 3 * len(charges) * SAT
    assert abs(-sum_kind(b1.ledger(), "charge", o1) - Decimal("0.001")) <= 20 * SAT
    # No order is active: balances are stable while the workers idle.
    accounts = (b1, b2, seller)
    before = [a.balance() for a in accounts]
    orders_before = [b1.order(o1), b2.order(o2)]
    assert all(w.running for w in workers)

    # SIGKILL, then a restart on the same database and ports: balances are intact and the
    # running workers reconnect.
    market.kill()
    market.restart()
    assert [a.balance() for a in accounts] == before
    assert [b1.order(o1)["status"], b2.order(o2)["status"]] == [o["status"] for o in orders_before]
    assert [b1.order(o1)["spent"], b2.order(o2)["spent"]] == [o["spent"] for o in orders_before]

    def connected() -> bool:
        listed = seller("account", "workers")["workers"]
        return sum(1 for w in listed if w["connected"]) == 3

    wait_for("the workers to reconnect", connected, timeout=15)


# ------------------------------------------------------------------------------ fast tests


def test_sigterm_exits_zero_after_writing_ports(hashmarket: Market) -> None:
    ports = json.loads((hashmarket.directory / "ports.json").read_text())
    assert set(ports) == {"api", "stratum"}
    assert ports["api"] > 0
    assert set(ports["stratum"]) == {"sha256d", "scrypt"}
    assert all(p > 0 for p in ports["stratum"].values())
    assert hashmarket.stop(signum=signal.SIGTERM) == 0


def test_account_create_direct_and_through_the_inbox(tmp_path: Path) -> None:
    market = Market(control=False, directory=tmp_path)
    alice = account_create("alice", market.db)  # no node: straight on the database
    assert alice["account_id"] == "alice"
    with market:
        bob = account_create("bob", market.db)  # the node holds the db: through its inbox
        assert bob["account_id"] == "bob"
        for made in (alice, bob):
            assert Cli(market, made)("account", "balance")["available"] == "0.00000000"
        with sqlite3.connect(market.db) as conn:
            rows = conn.execute("SELECT command, result FROM operator_inbox").fetchall()
        assert len(rows) == 1
        assert json.loads(rows[0][0])["name"] == "bob"
        assert "secret" not in rows[0][1]


def test_config_precedence_flags_over_toml_over_env(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('api_port = 9001\nsha256d_port = 4001\ndb = "toml.db"\n')
    env = {"HASHMARKET_API_PORT": "9000", "HASHMARKET_SHA256D_PORT": "4000",
           "HASHMARKET_SCRYPT_PORT": "5000", "HASHMARKET_FAUCET": "true"}  # fmt: skip
    args = argparse.Namespace(config=str(toml), api_port=9002, faucet=None)
    config = load_config(args, environ=env)
    assert config.api_port == 9002  # flag
    assert config.sha256d_port == 4001  # TOML over env
    assert config.db == "toml.db"
    assert config.scrypt_port == 5000  # env over default
    assert config.faucet is True
    assert config.host == NodeConfig().host  # default
    assert load_config(None, environ={}) == NodeConfig()
    with pytest.raises(ValueError, match="bad setting"):
        load_config(None, environ={"HASHMARKET_API_PORT": "lots"})
