"""``hashmarket account create`` and ``account key``: work whether or not a node serves the db.

Theory of operation
-------------------
A serving node holds the database's lock (``Storage.lock``) for its whole life. A command
first tries to take that lock (``assembly.run_offline``):

- it gets it: no node is running, so the command opens the database itself, restores it, runs
  ``bootstrap_account`` (``account create``) or ``recover_account_key`` (``account key``)
  through its own engine (durably) and releases the lock;
- it does not: a node owns the database, and only that node may change its state (it holds the
  state in memory). The command goes to the node's operator inbox (``storage.inbox``) as an
  ``AccountCreate`` or ``AccountKey``; the node runs it through its engine and answers
  ``KeyIssued``.

The inbox never holds a secret: the node answers with the key id and version, and the command
derives the secret itself from the master key file next to the database (``<db>.key``).
``account create`` refuses a name that has keys ("account exists"); minting another key for
an existing account is ``account key``, which the account's activity log records as
``key.recovered``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from functools import partial

import msgspec

from marketplace.accounts import AccountCreate, AccountKey, Bootstrap, InboxCommand, KeyIssued
from marketplace.assembly import Core, run_offline
from marketplace.clock import Clock
from marketplace.config import NodeConfig, load_config
from marketplace.core.errors import MarketError
from marketplace.masterkey import open_keyring
from marketplace.storage import NodeBusy, Storage
from stratum.logconfig import configure_logging


def account_create(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Create ``name``; return its first key as ``{"account_id", "key_id", "secret"}``.

    Works on a database with or without a node serving it. Raises ``MarketError`` for a bad
    name or one that exists, ``TimeoutError`` if a serving node does not answer within
    ``timeout_s``.
    """
    return _issue(config, AccountCreate(name), Core.create_account, timeout_s=timeout_s)


def account_key(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Mint a recovery key with every scope for the existing account ``name`` (logged as
    ``key.recovered``); return it as ``{"account_id", "key_id", "secret"}``.

    Works on a database with or without a node serving it. Raises ``MarketError`` for no such
    account, ``TimeoutError`` if a serving node does not answer within ``timeout_s``.
    """
    return _issue(config, AccountKey(name), Core.recover_key, timeout_s=timeout_s)


def _issue(
    config: NodeConfig,
    command: InboxCommand,
    run: Callable[[Core, str], Awaitable[Bootstrap]],
    *,
    timeout_s: float,
) -> dict[str, str]:
    try:
        return run_offline(config, partial(_offline, run=run, name=command.name))
    except NodeBusy:
        return _via_inbox(config, command, timeout_s=timeout_s)


async def _offline(
    core: Core, *, run: Callable[[Core, str], Awaitable[Bootstrap]], name: str
) -> dict[str, str]:
    made = await run(core, name)
    return {"account_id": made.account_id, "key_id": made.key_id, "secret": made.secret}


def _via_inbox(config: NodeConfig, command: InboxCommand, *, timeout_s: float) -> dict[str, str]:
    storage = Storage(config.db)
    inbox = storage.inbox
    submitted = inbox.submit(msgspec.json.encode(command), created_ms=Clock().wall_ms())
    answer = inbox.wait(submitted, timeout_s=timeout_s)
    if answer.error is not None:
        raise MarketError(answer.error)
    assert answer.result is not None
    issued = msgspec.json.decode(answer.result, type=KeyIssued)
    keyring = open_keyring(storage.key_path, create=False)
    return {
        "account_id": issued.account_id,
        "key_id": issued.key_id,
        "secret": keyring.secret_of(issued.key_id, issued.version),
    }


def _main(args: argparse.Namespace, issue: Callable[[NodeConfig, str], dict[str, str]]) -> int:
    configure_logging("json", level="warning")
    try:
        config = load_config(args)
        result = issue(config, args.name)
    except (MarketError, ValueError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def main_account_create(args: argparse.Namespace) -> int:
    """``hashmarket account create NAME [--db FILE]``: print one JSON object (exit 1 and
    "error: account exists" for a name that has keys)."""
    return _main(args, account_create)


def main_account_key(args: argparse.Namespace) -> int:
    """``hashmarket account key NAME [--db FILE]``: mint a recovery key, print one JSON
    object (exit 1 for no such account)."""
    return _main(args, account_key)
