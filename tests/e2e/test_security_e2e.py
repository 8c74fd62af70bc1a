"""Account security with the real programs: ``account create`` / ``account key``, the CLI's
2FA, address and activity commands against ``hashmarket serve`` over real HTTP, and a search
of everything the node left on disk and in its log for a secret.

The secrets searched for: every API key secret printed, the TOTP secret (as base32 in both
cases, as bytes and as hex), every recovery code (with and without dashes, both cases) and
every request signature sent, and a buyer pool's password (proxy.md: write-only, sealed under
the master key; also given to pool.verify and used by the order's upstream session). None may
appear in the database file, its WAL, the snapshots (rows of the same file, read after the
node's last snapshot) or the node's log.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketplace.api.signing import sign_headers
from marketplace.core import totp
from marketplace.testing import Market
from tests.e2e.test_e2e import PY, Cli

pytestmark = pytest.mark.slow


def operator(*args: str, db: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PY, "-m", "marketplace", "account", *args, "--db", str(db)],
        capture_output=True,
        timeout=30,
        check=False,
    )


def issued(*args: str, db: Path) -> dict[str, str]:
    done = operator(*args, db=db)
    assert done.returncode == 0, done.stderr.decode()
    made: dict[str, str] = json.loads(done.stdout)
    return made


def refused(cli: Cli, *args: str) -> str:
    """Run a CLI command that must be refused; its stderr."""
    env = {
        **os.environ,
        "HASHMARKET_URL": cli.market.api_url,
        "HASHMARKET_ACCOUNT": cli.made["account_id"],
        "HASHMARKET_KEY_ID": cli.made["key_id"],
        "HASHMARKET_SECRET": cli.made["secret"],
    }
    done = subprocess.run(
        [PY, "-m", "marketplace", *args], capture_output=True, env=env, timeout=30, check=False
    )
    assert done.returncode == 1, done.stdout.decode()
    return done.stderr.decode()


def now_code(secret: str, steps: int = 0) -> str:
    return totp.code_at(secret, totp.step_at(time.time_ns() // 1_000_000) + steps)


class Signer:
    """Signed calls made here, so the signatures sent are known."""

    def __init__(self, market: Market, made: dict[str, str]) -> None:
        self.url = f"{market.api_url}/rpc"
        self.made = made
        self.signatures: list[str] = []

    def __call__(self, method: str, params: dict[str, Any] | None = None) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}})
        headers = sign_headers(
            key_id=self.made["key_id"],
            secret=self.made["secret"],
            org_id=self.made["account_id"],
            time_ms=time.time_ns() // 1_000_000,
            nonce=f"n{len(self.signatures)}",
            body=body.encode(),
        )
        self.signatures.append(headers["X-Auth"].split(":", 1)[1])
        answer = httpx.post(self.url, content=body, headers=headers, timeout=10).json()
        assert "result" in answer, answer
        return answer["result"]


def closed_port() -> int:
    """A loopback port nothing listens on (just released by the kernel)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def forms(secret: str) -> set[bytes]:
    """The ways a secret could be written down."""
    texts = {secret, secret.lower(), secret.upper(), secret.replace("-", "")}
    texts |= {t.replace("-", "").upper() for t in list(texts)}
    found = {t.encode() for t in texts}
    try:
        raw = base64.b32decode(secret.upper())
    except ValueError:
        raw = b""
    if raw:
        found |= {raw, raw.hex().encode()}
    return found


def leaks(places: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for form in forms(secret)
        for where, content in places.items()
        if form in content
    ]


def test_account_create_refuses_an_existing_name_and_account_key_recovers(
    tmp_path: Path,
) -> None:
    market = Market(control=False, directory=tmp_path)
    db = market.db
    alice = issued("create", "alice", db=db)  # no node: straight on the database
    again = operator("create", "alice", db=db)
    assert (again.returncode, again.stderr.decode()) == (1, "error: account exists\n")
    assert operator("key", "nobody", db=db).stderr.decode() == "error: no such account\n"
    recovered = issued("key", "alice", db=db)
    assert recovered["account_id"] == "alice"
    assert recovered["key_id"] != alice["key_id"]
    with market:
        # Through the node's inbox the same rules hold.
        bob = issued("create", "bob", db=db)
        assert operator("create", "bob", db=db).stderr.decode() == "error: account exists\n"
        bob_again = issued("key", "bob", db=db)
        for made in (alice, recovered, bob, bob_again):
            assert Cli(market, made)("account", "balance")["available"] == "0.00000000"
        events = Cli(market, bob_again)("account", "activity")["events"]
        assert [(e["kind"], e["key_id"]) for e in events] == [
            ("key.recovered", None),
            ("key.created", None),
        ]
        assert events[0]["detail"]["key_id"] == bob_again["key_id"]


def test_nothing_on_disk_or_in_the_log_holds_a_secret(tmp_path: Path) -> None:
    market = Market(control=False, directory=tmp_path, log_level="debug", address_lock=0)
    db = market.db
    secrets: dict[str, str] = {}
    alice = issued("create", "alice", db=db)
    secrets["bootstrap secret"] = alice["secret"]
    with market:
        cli = Cli(market, alice)
        sign = Signer(market, alice)
        cli("account", "deposit", "1")
        made = cli("key", "create", "--label", "bot", "--scopes", "read,trade")
        secrets["created key secret"] = made["secret"]
        # A pool whose password the node keeps: verified and mined for (nothing listens there,
        # so the session keeps trying and logging why).
        secrets["pool password"] = "pw-Zq81xKv3Lm"
        port = closed_port()
        pool = cli(
            "pool", "create", "--name", "mine", "--algorithm", "sha256d", "--host", "127.0.0.1",
            "--port", str(port), "--username", "me.rig", "--password", secrets["pool password"],
        )  # fmt: skip
        assert "password" not in pool
        assert cli("pool", "verify", pool["id"])["ok"] is False
        cli(
            "order", "create", "--algorithm", "sha256d", "--type", "standard", "--price", "0.5",
            "--limit", "0", "--amount", "0.01", "--pool", pool["id"],
        )  # fmt: skip
        rotated = sign("apikey.rotate", {"key_id": made["key_id"], "grace_s": 0})
        secrets["rotated key secret"] = rotated["secret"]
        # 2FA with the CLI: the code comes from the secret, as an authenticator app's would.
        enabled = cli("account", "2fa", "enable")
        secret = enabled["secret"]
        assert secret in enabled["otpauth_uri"]
        secrets["TOTP secret"] = secret
        confirmed = cli("account", "2fa", "confirm", "--otp", now_code(secret))
        recovery = confirmed["recovery_codes"]
        for n, code in enumerate(recovery):
            secrets[f"recovery code {n}"] = code
        assert cli("account", "2fa", "status") == {"enabled": True, "pending": False}
        assert "otp required" in refused(cli, "account", "withdraw", "0.1", "a1")
        withdrawer = cli("key", "create", "--scopes", "read,withdraw", "--otp", now_code(secret, 1))
        secrets["withdraw key secret"] = withdrawer["secret"]
        cli("account", "address", "add", "bc1qcold", "--label", "cold", "--otp", recovery[0])
        assert [a["address"] for a in cli("account", "address", "list")["addresses"]] == [
            "bc1qcold"
        ]
        assert "otp reused" in refused(
            cli, "account", "withdraw", "0.1", "bc1qcold", "--otp", recovery[0]
        )
        cli("account", "withdraw", "0.1", "bc1qcold", "--otp", recovery[1])
        cli("account", "address", "remove", "bc1qcold")
        sign("account.2fa.disable", {"otp": recovery[2]})
        recovered = issued("key", "alice", db=db)  # through the inbox
        secrets["recovered key secret"] = recovered["secret"]
        kinds = [e["kind"] for e in cli("account", "activity", "--limit", "500")["events"]]
        assert kinds == [
            "key.recovered",
            "2fa.disabled",
            "address.removed",
            "withdrawal",
            "2fa.failed",  # the replayed recovery code (a missing code is not counted)
            "address.added",
            "key.created",
            "2fa.enabled",
            "2fa.enabled",
            "key.rotated",
            "key.created",
            "key.created",
        ]
        for n, signature in enumerate(sign.signatures):
            secrets[f"signature {n}"] = signature
        running = {
            "the database": db.read_bytes(),
            "its WAL": Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b"",
            "the log so far": (tmp_path / "node.log").read_bytes(),
        }
        assert running["its WAL"] or running["the database"]
        assert leaks(running, secrets) == []
        assert market.stop(signum=signal.SIGTERM) == 0
    stopped = {"the database after the last snapshot": db.read_bytes()}
    assert b"snapshots" in stopped["the database after the last snapshot"]
    stopped["the whole log"] = (tmp_path / "node.log").read_bytes()
    assert b"api.request" in stopped["the whole log"]
    assert leaks(stopped, secrets) == []
