"""Opening an account: the account in the market and its first key, in one durable command.

An operator opens accounts (``hashmarket account create``, the demo, test stacks); the API
cannot, so this lives beside the components rather than in the ASGI app. The market's
``create_account`` and the key ring's ``create_key`` run in one command through the executor,
so both are journaled together or neither is.

The same command travels through the operator inbox (``marketplace.storage.inbox``) when a node
serves the database: ``AccountCreate`` is what the operator leaves there, ``KeyIssued`` what the
node answers (no secret: the operator derives it from the master key file), and
``answer_account_create`` is how the node runs it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from marketplace.core.eventsourced import Executor
from marketplace.core.key_events import ALL_SCOPES
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.names import check_account_name


class Bootstrap(NamedTuple):
    """A new account and its first key (show the secret once)."""

    account_id: str
    key_id: str
    secret: str


async def bootstrap_account(
    *,
    executor: Executor,
    market: Market,
    keyring: KeyRing,
    account: str,
    now_ms: int,
    allow_existing: bool = False,
) -> Bootstrap:
    """Create ``account`` in the market and its first key with every scope, durably (one
    command through ``executor``). With ``allow_existing`` an account that exists (a seller
    paid before) just gets a new key.

    Raises ``InvalidArgument`` for a bad name (1-64 of ``[A-Za-z0-9_-]``), ``InvalidState``
    if the account exists and not ``allow_existing``.
    """
    check_account_name(account)

    def command() -> Bootstrap:
        if not (allow_existing and market.has_account(account)):
            market.create_account(account=account, now_ms=now_ms)
        issued = keyring.create_key(
            account=account, label="bootstrap", scopes=ALL_SCOPES, expires_ms=None, now_ms=now_ms
        )
        return Bootstrap(account, issued.key.key_id, issued.secret)

    return await executor.execute(command)


class AccountCreate(msgspec.Struct, frozen=True, tag="account.create"):
    """The operator inbox command that opens ``name`` (or gives it a new key)."""

    name: str


class KeyIssued(msgspec.Struct, frozen=True):
    """The node's answer to ``AccountCreate``: the key, without its secret."""

    account_id: str
    key_id: str
    version: int


async def answer_account_create(
    command: bytes, *, executor: Executor, market: Market, keyring: KeyRing, now_ms: int
) -> KeyIssued:
    """Run the inbox command ``command`` (JSON ``AccountCreate``) durably, allowing an existing
    account (a seller paid before); the key it issued.

    Raises ``msgspec.DecodeError`` (or ``ValidationError``) for a command that is not an
    ``AccountCreate``, ``InvalidArgument`` for a bad name.
    """
    order = msgspec.json.decode(command, type=AccountCreate)
    made = await bootstrap_account(
        executor=executor,
        market=market,
        keyring=keyring,
        account=order.name,
        now_ms=now_ms,
        allow_existing=True,
    )
    key = keyring.get(made.key_id)
    assert key is not None, "a key just created must exist"
    return KeyIssued(account_id=made.account_id, key_id=made.key_id, version=key.version)
