"""``hashmarket account create|key`` and ``operator-key create|revoke``: with or without a node.

Theory of operation
-------------------
A serving node holds the database's lock (``Storage.lock``) for its whole life. A command
first tries to take that lock (``assembly.run_offline``):

- it gets it: no node is running, so the command opens the database itself, restores it, runs
  ``bootstrap_account`` (``account create``) or ``recover_account_key`` (``account key``)
  through its own engine (durably) and releases the lock;
- it does not: a node owns the database, and only that node may change its state (it holds the
  state in memory). The command goes to the node's operator inbox (``storage.inbox``) as an
  ``AccountCreate``, ``AccountKey``, ``OperatorKeyCreate`` or ``OperatorKeyRevoke``; the node
  runs it through its engine and answers ``KeyIssued`` (``KeyEnded``).

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
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TypeVar

import msgspec

from marketplace.accounts import (
    AccountCreate,
    AccountKey,
    Bootstrap,
    InboxCommand,
    KeyEnded,
    KeyIssued,
    OperatorKeyCreate,
    OperatorKeyRevoke,
)
from marketplace.assembly import Core, run_offline
from marketplace.clock import Clock
from marketplace.config import NodeConfig, load_config
from marketplace.core.errors import MarketError
from marketplace.durability import StorageUnavailable
from marketplace.masterkey import open_keyring
from marketplace.storage import JournalError, NodeBusy, Storage
from stratum.logconfig import configure_logging


def account_create(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Create ``name``; return its first key as ``{"account_id", "key_id", "secret"}``.

    Works on a database with or without a node serving it. Raises ``MarketError`` for a bad
    name or one that exists, ``TimeoutError`` if a serving node does not answer within
    ``timeout_s``, ``StorageFault`` or ``StorageUnavailable`` if the database cannot take the
    change now (its disk is full...).
    """
    return _issue(config, AccountCreate(name), Core.create_account, timeout_s=timeout_s)


def account_key(config: NodeConfig, name: str, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Mint a recovery key with every scope for the existing account ``name`` (logged as
    ``key.recovered``); return it as ``{"account_id", "key_id", "secret"}``.

    Works on a database with or without a node serving it. Raises ``MarketError`` for no such
    account, ``TimeoutError`` if a serving node does not answer within ``timeout_s``.
    """
    return _issue(config, AccountKey(name), Core.recover_key, timeout_s=timeout_s)


def operator_key_create(config: NodeConfig, *, timeout_s: float = 30.0) -> dict[str, str]:
    """Issue a key of the ``operator`` account with the single scope ``operator``; return
    ``{"key_id", "secret"}``. Works with or without a node serving the database. Raises
    ``TimeoutError`` if a serving node does not answer within ``timeout_s``."""
    try:
        made = run_offline(config, Core.issue_operator_key)
        key_id, secret = made.key_id, made.secret
    except NodeBusy:
        issued = _via_inbox(config, OperatorKeyCreate(), KeyIssued, timeout_s=timeout_s)
        key_id, secret = issued.key_id, _with_secret(config, issued)["secret"]
    return {"key_id": key_id, "secret": secret}


def operator_key_revoke(config: NodeConfig, key_id: str, *, timeout_s: float = 30.0) -> None:
    """End the operator key ``key_id`` now. Works with or without a node serving the database.
    Raises ``MarketError`` unless it is an active operator key, ``TimeoutError`` if a serving
    node does not answer within ``timeout_s``."""
    try:
        run_offline(config, partial(Core.revoke_operator_key, key_id=key_id))
    except NodeBusy:
        _via_inbox(config, OperatorKeyRevoke(key_id), KeyEnded, timeout_s=timeout_s)


def _issue(
    config: NodeConfig,
    command: AccountCreate | AccountKey,
    run: Callable[[Core, str], Awaitable[Bootstrap]],
    *,
    timeout_s: float,
) -> dict[str, str]:
    try:
        return run_offline(config, partial(_offline, run=run, name=command.name))
    except NodeBusy:
        issued = _via_inbox(config, command, KeyIssued, timeout_s=timeout_s)
        return _with_secret(config, issued)


async def _offline(
    core: Core, *, run: Callable[[Core, str], Awaitable[Bootstrap]], name: str
) -> dict[str, str]:
    made = await run(core, name)
    return {"account_id": made.account_id, "key_id": made.key_id, "secret": made.secret}


A = TypeVar("A", KeyIssued, KeyEnded)


def _via_inbox(
    config: NodeConfig, command: InboxCommand, answer: type[A], *, timeout_s: float
) -> A:
    """Leave ``command`` in the serving node's inbox and wait for its ``answer``."""
    inbox = Storage(config.db, master_key_file=config.master_key_file).inbox
    submitted = inbox.submit(msgspec.json.encode(command), created_ms=Clock().wall_ms())
    done = inbox.wait(submitted, timeout_s=timeout_s)
    if done.error is not None:
        raise MarketError(done.error)
    assert done.result is not None
    return msgspec.json.decode(done.result, type=answer)


def _with_secret(config: NodeConfig, issued: KeyIssued) -> dict[str, str]:
    """The key the node issued, with its secret derived from the master key file."""
    storage = Storage(config.db, master_key_file=config.master_key_file)
    keyring = open_keyring(storage.key_path, create=False)
    return {
        "account_id": issued.account_id,
        "key_id": issued.key_id,
        "secret": keyring.secret_of(issued.key_id, issued.version),
    }


def _main(args: argparse.Namespace, run: Callable[[NodeConfig], Mapping[str, object]]) -> int:
    configure_logging("json", level="warning")
    try:
        result = run(load_config(args))
    except (
        MarketError,
        ValueError,
        TimeoutError,
        OSError,
        StorageUnavailable,
        JournalError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def main_account_create(args: argparse.Namespace) -> int:
    """``hashmarket account create NAME [--db FILE]``: print one JSON object (exit 1 and
    "error: account exists" for a name that has keys)."""
    return _main(args, lambda config: account_create(config, args.name))


def main_account_key(args: argparse.Namespace) -> int:
    """``hashmarket account key NAME [--db FILE]``: mint a recovery key, print one JSON
    object (exit 1 for no such account)."""
    return _main(args, lambda config: account_key(config, args.name))


def main_operator_key(args: argparse.Namespace) -> int:
    """``hashmarket operator-key create|revoke ID [--db FILE]``: print one JSON object."""
    if args.operator_key_command == "create":
        return _main(args, operator_key_create)

    def revoke(config: NodeConfig) -> dict[str, object]:
        operator_key_revoke(config, args.key_id)
        return {"ok": True, "key_id": args.key_id}

    return _main(args, revoke)
