"""``hashmarket account create``: works whether or not a node is serving the database.

Theory of operation
-------------------
A serving node holds the database's lock (``Storage.lock``) for its whole life. The command
first tries to take that lock (``assembly.run_offline``):

- it gets it: no node is running, so the command opens the database itself, restores it, runs
  ``bootstrap_account`` through its own engine (durably) and releases the lock;
- it does not: a node owns the database, and only that node may change its state (it holds the
  state in memory). The command goes to the node's operator inbox (``storage.inbox``) as an
  ``AccountCreate``; the node runs it through its engine and answers ``KeyIssued``.

The inbox never holds a secret: the node answers with the key id and version, and the command
derives the secret itself from the master key file next to the database (``<db>.key``).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

import msgspec

from marketplace.accounts import AccountCreate, KeyIssued
from marketplace.assembly import Core, run_offline
from marketplace.clock import Clock
from marketplace.config import NodeConfig, load_config
from marketplace.core.errors import MarketError
from marketplace.masterkey import open_keyring
from marketplace.storage import NodeBusy, Storage
from stratum.logconfig import configure_logging


def account_create(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Create ``name`` (or give an existing account a new key); return its first key as
    ``{"account_id", "key_id", "secret"}``.

    Works on a database with or without a node serving it. Raises ``MarketError`` for a bad
    name, ``TimeoutError`` if a serving node does not answer within ``timeout_s``.
    """
    try:
        return run_offline(config, partial(_create, name=name))
    except NodeBusy:
        return _via_inbox(config, name, timeout_s=timeout_s)


async def _create(core: Core, *, name: str) -> dict[str, str]:
    made = await core.create_account(name, allow_existing=True)
    return {"account_id": made.account_id, "key_id": made.key_id, "secret": made.secret}


def _via_inbox(config: NodeConfig, name: str, *, timeout_s: float) -> dict[str, str]:
    storage = Storage(config.db)
    command = msgspec.json.encode(AccountCreate(name))
    inbox = storage.inbox
    answer = inbox.wait(inbox.submit(command, created_ms=Clock().wall_ms()), timeout_s=timeout_s)
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


def main_account_create(args: argparse.Namespace) -> int:
    """``hashmarket account create NAME [--db FILE]``: print one JSON object."""
    configure_logging("json", level="warning")
    try:
        config = load_config(args)
        result = account_create(config, args.name)
    except (MarketError, ValueError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
