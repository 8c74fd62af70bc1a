"""Operator keys (control.md): ``hashmarket operator-key create|revoke`` with and without a
serving node, the reserved ``operator`` account, and what an operator key may call."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import structlog
import trio

from marketplace import cli
from marketplace.accounts import Bootstrap
from marketplace.core.key_events import OPERATOR_ACCOUNT, Scope
from marketplace.core.model import MarketConfig
from marketplace.operator import account_create, operator_key_create, operator_key_revoke

from .test_assembly import Api, serving, settings


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``hashmarket ARGV`` in this process; the logging it configures is put back after."""
    capsys.readouterr()  # what ran before (a node's logs) is not this command's output
    saved = structlog.get_config()
    try:
        status = cli.main(list(argv))
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    return status, out, err


async def test_operator_keys_with_and_without_a_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "m.db")
    # No node: the command opens the database itself.
    status, out, _ = await trio.to_thread.run_sync(
        run_cli, capsys, "operator-key", "create", "--db", db
    )
    assert status == 0
    first = json.loads(out)
    assert set(first) == {"key_id", "secret"}
    assert MarketConfig().fee_account == OPERATOR_ACCOUNT  # the operator holds the fees
    status, _, err = await trio.to_thread.run_sync(
        run_cli, capsys, "account", "create", OPERATOR_ACCOUNT, "--db", db
    )
    assert status == 1
    assert "reserved" in err
    config = settings(tmp_path / "m.db")
    async with serving(config) as node:
        keyring = node.core.keyring
        key = keyring.get(first["key_id"])
        assert key is not None
        assert (key.account, key.scopes) == (OPERATOR_ACCOUNT, (Scope.OPERATOR,))
        assert keyring.secret_of(key.key_id, key.version) == first["secret"]
        # A node serves the database: through its inbox.
        second = await trio.to_thread.run_sync(operator_key_create, config)
        assert keyring.secret_of(second["key_id"], 1) == second["secret"]
        with pytest.raises(Exception, match="reserved"):
            await trio.to_thread.run_sync(account_create, config, OPERATOR_ACCOUNT)
        operator = Bootstrap(OPERATOR_ACCOUNT, second["key_id"], second["secret"])
        async with httpx.AsyncClient() as http:
            api = Api(node, http, operator)
            now = node.core.clock.wall_ms()
            # Public methods work; a buyer's method does not (4003 names the scope).
            assert "result" in await api.call("market.info", signed_at=now)
            refused = await api.call("account.balance", signed_at=now)
            assert refused["error"]["code"] == 4003
            assert refused["error"]["data"] == {"scope": "read"}
            await trio.to_thread.run_sync(operator_key_revoke, config, second["key_id"])
            revoked = await api.call("account.balance", signed_at=now)
            assert revoked["error"]["code"] == 4001
            assert revoked["error"]["message"] == "key revoked"
        # Only an operator key can be revoked this way.
        buyer = await node.core.create_account("buyer")
        with pytest.raises(Exception, match="no such key"):
            await trio.to_thread.run_sync(operator_key_revoke, config, buyer.key_id)
    # No node again: revoke the first key offline.
    status, out, _ = await trio.to_thread.run_sync(
        run_cli, capsys, "operator-key", "revoke", first["key_id"], "--db", db
    )
    assert status == 0
    assert json.loads(out) == {"ok": True, "key_id": first["key_id"]}
    status, _, err = await trio.to_thread.run_sync(
        run_cli, capsys, "operator-key", "revoke", first["key_id"], "--db", db
    )
    assert status == 1
    assert "no such key" in err
