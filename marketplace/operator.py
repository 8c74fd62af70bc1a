"""Operator commands that work whether or not a node is serving the database.

Theory of operation
-------------------
A serving node holds an exclusive advisory lock on ``<db>.lock`` for its whole life. An
operator command (``hashmarket account create NAME``) first tries to take that lock:

- it gets it: no node is running, so the command opens the journal itself, replays it, runs the
  command through its own engine (durably) and releases the lock;
- it does not: a node owns the database, and only that node may change its state (it holds the
  state in memory). The command is written to the ``operator_inbox`` table of the same SQLite
  file; the node polls the inbox, runs the command through its engine and writes back the result,
  which the command waits for.

The inbox never holds a secret: the node answers with the key id and version, and the command
derives the secret itself from the master key file next to the database (``<db>.key``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any

import msgspec
import structlog
import trio

from marketplace.accounts import bootstrap_account
from marketplace.config import NodeConfig, load_config
from marketplace.core.errors import MarketError
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.engine import Engine
from marketplace.masterkey import open_keyring

log = structlog.get_logger("marketplace.operator")

_INBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS operator_inbox (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    result TEXT,
    error TEXT
)
"""


class AccountCreate(msgspec.Struct, frozen=True, tag="account.create"):
    """The one operator command the inbox carries today."""

    name: str


class NodeBusy(RuntimeError):
    """Another node holds the database's lock."""


@contextmanager
def node_lock(db: str | Path) -> Iterator[IO[str]]:
    """Hold the database's exclusive lock; raises ``NodeBusy`` if a node already holds it."""
    path = Path(str(db) + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeBusy(f"{db} is served by a running node") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield handle
    finally:
        handle.close()


def _connect(db: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=10.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(_INBOX_SCHEMA)
    return conn


class Inbox:
    """The node's side of the operator inbox: take pending commands, post their results."""

    def __init__(self, db: str | Path) -> None:
        self._db = str(db)

    def pending(self) -> list[tuple[int, bytes]]:
        conn = _connect(self._db)
        try:
            rows = conn.execute(
                "SELECT id, command FROM operator_inbox WHERE result IS NULL AND error IS NULL"
                " ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        return [(int(row[0]), str(row[1]).encode()) for row in rows]

    def finish(self, command_id: int, *, result: dict[str, Any] | None, error: str | None) -> None:
        conn = _connect(self._db)
        try:
            conn.execute(
                "UPDATE operator_inbox SET result = ?, error = ? WHERE id = ?",
                (None if result is None else json.dumps(result), error, command_id),
            )
        finally:
            conn.close()


async def serve_inbox(
    *,
    db: str | Path,
    engine: Engine,
    market: Market,
    keyring: KeyRing,
    poll_s: float = 0.5,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Node task: run operator commands left in the inbox, one by one, until cancelled."""
    inbox = Inbox(db)
    await trio.to_thread.run_sync(inbox.pending)  # creates the table before we say "started"
    task_status.started()
    while True:
        for command_id, body in await trio.to_thread.run_sync(inbox.pending):
            result: dict[str, Any] | None = None
            error: str | None = None
            try:
                command = msgspec.json.decode(body, type=AccountCreate)
                made = await bootstrap_account(
                    executor=engine,
                    market=market,
                    keyring=keyring,
                    account=command.name,
                    now_ms=engine.now_ms(),
                    allow_existing=True,
                )
                key = keyring.get(made.key_id)
                assert key is not None, "a key just created must exist"
                result = {
                    "account_id": made.account_id,
                    "key_id": made.key_id,
                    "version": key.version,
                }
                log.info("operator.account_created", account=made.account_id, key=made.key_id)
            except (MarketError, msgspec.ValidationError, msgspec.DecodeError) as exc:
                error = str(exc)
                log.warning("operator.refused", error=error)
            await trio.to_thread.run_sync(
                partial(inbox.finish, command_id, result=result, error=error)
            )
        await trio.sleep(poll_s)


def _via_inbox(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
    conn = _connect(config.db)
    try:
        cursor = conn.execute(
            "INSERT INTO operator_inbox (command, created_ms) VALUES (?, ?)",
            (msgspec.json.encode(AccountCreate(name)).decode(), int(time.time() * 1000)),
        )
        command_id = cursor.lastrowid
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT result, error FROM operator_inbox WHERE id = ?", (command_id,)
            ).fetchone()
            if row is not None and row[1] is not None:
                raise MarketError(str(row[1]))
            if row is not None and row[0] is not None:
                answer: dict[str, Any] = json.loads(row[0])
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"the node serving {config.db} did not answer in {timeout_s} s")
    finally:
        conn.close()
    keyring = open_keyring(config.db, create=False)
    answer["secret"] = keyring.secret_of(answer["key_id"], int(answer.pop("version")))
    return answer


async def _direct(config: NodeConfig, name: str) -> dict[str, Any]:
    from marketplace.node import build_components, open_storage

    fresh = not await trio.Path(config.db).exists()
    market, keyring = build_components(config, create_master_key=fresh)
    async with open_storage(config) as journal:
        engine = Engine(components=[market, keyring], journal=journal)
        await engine.restore()
        made = await bootstrap_account(
            executor=engine,
            market=market,
            keyring=keyring,
            account=name,
            now_ms=engine.now_ms(),
            allow_existing=True,
        )
    return {"account_id": made.account_id, "key_id": made.key_id, "secret": made.secret}


def account_create(config: NodeConfig, name: str) -> dict[str, Any]:
    """Create ``name`` (or give an existing account a new key); return its first key.

    Works on a database with or without a node serving it. Raises ``MarketError`` for a bad
    name, ``TimeoutError`` if a serving node does not answer.
    """
    try:
        with node_lock(config.db):
            return trio.run(_direct, config, name)
    except NodeBusy:
        return _via_inbox(config, name)


def main_account_create(args: argparse.Namespace) -> int:
    """``hashmarket account create NAME [--db FILE]``: print one JSON object."""
    from stratum.logconfig import configure_logging

    configure_logging("json", level="warning")
    try:
        config = load_config(args)
        result = account_create(config, args.name)
    except (MarketError, ValueError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
