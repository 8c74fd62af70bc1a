"""A market on PostgreSQL: the advisory lock makes it the only writer, the operator inbox works
through the database, and the master key comes from outside it (never stored in it)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import psycopg
import pytest
import trio

from marketplace.assembly import run_node, run_offline
from marketplace.masterkey import MASTER_KEY_ENV
from marketplace.operator import account_create, operator_key_create
from marketplace.storage.postgres import PostgresStore, lock_holder

from .sql import run_sql
from .test_assembly import _accounts, only_the_node_writes, serving, settings


async def test_one_market_per_database_and_the_inbox_in_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    key_file = tmp_path / "market.key"
    config = settings(pg_url, master_key_file=str(key_file))
    async with serving(config) as node:
        # A new database: the key file is made (owner only), nothing is beside a "file".
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        with psycopg.connect(pg_url, autocommit=True) as conn:
            assert lock_holder(conn) is not None
        # Operator commands go through the inbox table in PostgreSQL.
        await only_the_node_writes(node, "bob")
        operator = await trio.to_thread.run_sync(operator_key_create, config)
        assert node.core.keyring.secret_of(operator["key_id"], 1) == operator["secret"]
        rows = run_sql(pg_url, "SELECT command, result FROM operator_inbox ORDER BY id")
        assert [json.loads(command).get("name") for command, _ in rows] == ["bob", None]
        assert all("secret" not in result for _, result in rows)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert lock_holder(conn) is None  # the lock went with the market
    # No market now: an operator command takes the lock and works on the database itself.
    carol = await trio.to_thread.run_sync(account_create, config, "carol")
    assert carol["account_id"] == "carol"
    assert await trio.to_thread.run_sync(run_offline, config, _accounts) == ["bob", "carol"]
    # The master key is nowhere in the database.
    key = key_file.read_text().strip()
    for table in ("events", "snapshots", "meta", "operator_inbox"):
        dump = run_sql(pg_url, f"SELECT CAST({table} AS text) FROM {table}")
        text = " ".join(row[0] for row in dump)
        # Neither as text nor inside a body (bytea reads as hex): the raw bytes, the hex text.
        assert key not in text
        assert key.encode().hex() not in text


async def test_a_postgresql_market_needs_a_master_key_from_outside(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with pytest.raises(ValueError, match="HASHMARKET_MASTER_KEY or --master-key-file"):
        await run_node(settings(pg_url))
    # The environment's key is enough, and the refused start left the database free.
    monkeypatch.setenv(MASTER_KEY_ENV, "12" * 32)
    made = await trio.to_thread.run_sync(account_create, settings(pg_url), "bob")
    assert made["account_id"] == "bob"


def test_a_silent_peer_is_noticed_within_seconds_on_both_ends(pg_url: str) -> None:
    """The writer's connection has keepalives and a TCP user timeout on the client's side
    (unless the URL sets its own) and on the server's, so a dead machine frees the lock and a
    dead server fails a commit within seconds instead of hours."""
    writer = PostgresStore(pg_url + "?connect_timeout=7").open_writer()
    try:
        conn = writer._conn
        client = conn.info.get_parameters()
        assert client["connect_timeout"] == "7"  # the URL's own wins
        assert (client["keepalives_idle"], client["tcp_user_timeout"]) == ("5", "10000")
        names = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        server = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                ([*names, "tcp_user_timeout"],),
            ).fetchall()
        )
        assert server == {names[0]: "2", names[1]: "1", names[2]: "2", "tcp_user_timeout": "4000"}
    finally:
        writer.close()
