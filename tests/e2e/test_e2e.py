"""End to end: the real ``hashmarket`` programs as subprocesses on 127.0.0.1.

Synchronisation is by polling a condition under a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketplace.config import NodeConfig, load_config

PY = sys.executable
SAT = Decimal("0.00000001")
FAST_SERVE = [
    "--faucet",
    "--api-port", "0",
    "--sha256d-port", "0",
    "--scrypt-port", "0",
    "--start-difficulty", "0.0002",
    "--min-difficulty", "0.00002",
    "--target-share-interval", "3",
    "--rebalance-interval", "1",
    "--settle-interval", "1",
    "--log-format", "json",
    "--log-level", "warning",
]  # fmt: skip


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


@contextmanager
def serve(tmp_path: Path, db: Path, *extra: str, tag: str = "node") -> Iterator[tuple[Any, dict]]:
    ports_file = tmp_path / f"{tag}.ports.json"
    ports_file.unlink(missing_ok=True)
    log = (tmp_path / f"{tag}.log").open("wb")
    args = [*FAST_SERVE, *extra]
    proc = subprocess.Popen(
        [PY, "-m", "marketplace", "serve", "--db", str(db), "--ports-file", str(ports_file), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> dict | None:
            assert proc.poll() is None, (tmp_path / f"{tag}.log").read_text()
            return json.loads(ports_file.read_text()) if ports_file.exists() else None

        ports = wait_for("the ports file", ready, timeout=20, every=0.1)
        yield proc, ports
    finally:
        stop(proc, signal.SIGKILL)
        log.close()


def account_create(name: str, db: Path) -> dict[str, str]:
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

    def __init__(self, api_port: int, made: dict[str, str]) -> None:
        self.made = made
        self.port = api_port

    def __call__(self, *args: str) -> Any:
        env = {
            **os.environ,
            "HASHMARKET_URL": f"http://127.0.0.1:{self.port}",
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


def start_worker(port: int, name: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"worker-{name}.log").open("ab")
    command = [
        PY, "-m", "marketplace", "worker",
        "--url", f"stratum+tcp://127.0.0.1:{port}",
        "--user", f"seller.{name}",
        "--processes", "1",
        "--backoff-max", "1",
        "--log-format", "json",
        "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


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
def test_market_story_with_real_processes(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with serve(tmp_path, db, tag="first") as (_node, ports):
            api, port = ports["api"], ports["stratum"]["sha256d"]
            # Created through the node's operator inbox (the node holds the database).
            b1 = Cli(api, account_create("buyer1", db))
            b2 = Cli(api, account_create("buyer2", db))
            seller = Cli(api, account_create("seller", db))
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
            workers += [start_worker(port, f"w{i}", tmp_path) for i in (1, 2, 3)]

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
            assert all(w.poll() is None for w in workers)
        # The node was killed with SIGKILL (serve's exit path); restart on the same database
        # and the same Stratum port: balances are intact and the running workers reconnect.
        with serve(tmp_path, db, "--sha256d-port", str(port), tag="second") as (_node, ports2):
            for a in accounts:
                a.port = ports2["api"]
            assert [a.balance() for a in accounts] == before
            assert [b1.order(o1)["status"], b2.order(o2)["status"]] == [
                o["status"] for o in orders_before
            ]
            assert [b1.order(o1)["spent"], b2.order(o2)["spent"]] == [
                o["spent"] for o in orders_before
            ]

            def connected() -> bool:
                listed = seller("account", "workers")["workers"]
                return sum(1 for w in listed if w["connected"]) == 3

            wait_for("the workers to reconnect", connected, timeout=15)
    finally:
        for w in workers:
            stop(w, signal.SIGINT, timeout=5)


# ------------------------------------------------------------------------------ fast tests


def test_sigterm_exits_zero_after_writing_ports(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with serve(tmp_path, db) as (proc, ports):
        assert set(ports) == {"api", "stratum"}
        assert ports["api"] > 0
        assert set(ports["stratum"]) == {"sha256d", "scrypt"}
        assert all(p > 0 for p in ports["stratum"].values())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_account_create_direct_and_through_the_inbox(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    alice = account_create("alice", db)  # no node: straight on the database
    assert alice["account_id"] == "alice"
    assert db.exists()
    with serve(tmp_path, db) as (_proc, ports):
        bob = account_create("bob", db)  # the node holds the db: through its inbox
        assert bob["account_id"] == "bob"
        for made in (alice, bob):
            assert Cli(ports["api"], made)("account", "balance")["available"] == "0.00000000"
        with __import__("sqlite3").connect(db) as conn:
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
