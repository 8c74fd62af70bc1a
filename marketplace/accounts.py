"""Opening an account, and a recovery key for one: durable commands an operator runs.

An operator opens accounts (``hashmarket account create``, the demo, test stacks) and mints a
recovery key for an account whose owner lost theirs (``hashmarket account key``); the API can
do neither, so this lives beside the components rather than in the ASGI app. Each is one
command through the executor: the market account, the key and its activity entry
(``key.created`` or ``key.recovered``) are journaled together or not at all.

An account exists once it was issued a key: ``account create`` refuses such a name ("account
exists"), so a second key for an existing account is always the explicit, logged
``account key``. A name that mined before it signed up (a seller paid before) has a market
account but no key yet: ``account create`` signs it up.

The same commands travel through the operator inbox (``marketplace.storage.inbox``) when a node
serves the database: ``AccountCreate`` and ``AccountKey`` are what the operator leaves there,
``KeyIssued`` what the node answers (no secret: the operator derives it from the master key
file), and ``answer_inbox`` is how the node runs them.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from marketplace.core.errors import InvalidState, NotFound
from marketplace.core.eventsourced import Executor
from marketplace.core.key_events import ALL_SCOPES
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.names import check_account_name
from marketplace.core.security import AccountSecurity, Actor
from marketplace.core.security_events import ActivityKind

#: Who an operator command acts as in the activity log: no key, no client address.
OPERATOR = Actor(key_id=None, remote=None)


class Bootstrap(NamedTuple):
    """A new account and its first key (show the secret once)."""

    account_id: str
    key_id: str
    secret: str


class Components(NamedTuple):
    """The components an operator command changes, and the executor that journals them."""

    executor: Executor
    market: Market
    keyring: KeyRing
    security: AccountSecurity


async def bootstrap_account(components: Components, *, account: str, now_ms: int) -> Bootstrap:
    """Create ``account`` (or sign up a seller that mined before) and its first key with every
    scope, durably (one command), logged as ``key.created``.

    Raises ``InvalidArgument`` for a bad name (1-64 of ``[A-Za-z0-9_-]``), ``InvalidState``
    ("account exists") if the account was ever issued a key.
    """
    check_account_name(account)
    market, keyring = components.market, components.keyring

    def command() -> Bootstrap:
        if keyring.has_account(account):
            raise InvalidState("account exists", {"account": account})
        if not market.has_account(account):
            market.create_account(account=account, now_ms=now_ms)
        return _all_scope_key(components, account, ActivityKind.KEY_CREATED, now_ms)

    return await components.executor.execute(command)


async def recover_account_key(components: Components, *, account: str, now_ms: int) -> Bootstrap:
    """Mint a new key with every scope for the existing ``account`` (its owner lost theirs),
    durably, logged as ``key.recovered``. Raises ``NotFound`` for no such account,
    ``InvalidArgument`` for a bad name."""
    check_account_name(account)
    market, keyring = components.market, components.keyring

    def command() -> Bootstrap:
        if not (keyring.has_account(account) or market.has_account(account)):
            raise NotFound("no such account", {"account": account})
        return _all_scope_key(components, account, ActivityKind.KEY_RECOVERED, now_ms)

    return await components.executor.execute(command)


def _all_scope_key(
    components: Components, account: str, kind: ActivityKind, now_ms: int
) -> Bootstrap:
    label = "recovery" if kind is ActivityKind.KEY_RECOVERED else "bootstrap"
    issued = components.keyring.create_key(
        account=account, label=label, scopes=ALL_SCOPES, expires_ms=None, now_ms=now_ms
    )
    components.security.record(
        account=account,
        kind=kind,
        actor=OPERATOR,
        detail={"key_id": issued.key.key_id, "scopes": ",".join(issued.key.scopes)},
        now_ms=now_ms,
    )
    return Bootstrap(account, issued.key.key_id, issued.secret)


class AccountCreate(msgspec.Struct, frozen=True, tag="account.create"):
    """The operator inbox command that opens ``name``."""

    name: str


class AccountKey(msgspec.Struct, frozen=True, tag="account.key"):
    """The operator inbox command that mints a recovery key for ``name``."""

    name: str


InboxCommand = AccountCreate | AccountKey


class KeyIssued(msgspec.Struct, frozen=True):
    """The node's answer to an inbox command: the key, without its secret."""

    account_id: str
    key_id: str
    version: int


_inbox_decoder = msgspec.json.Decoder(InboxCommand)


async def answer_inbox(command: bytes, *, components: Components, now_ms: int) -> KeyIssued:
    """Run the inbox command ``command`` (JSON ``AccountCreate`` or ``AccountKey``) durably;
    the key it issued.

    Raises ``msgspec.DecodeError`` (or ``ValidationError``) for a command of another shape,
    ``MarketError`` as ``bootstrap_account`` or ``recover_account_key``.
    """
    order = _inbox_decoder.decode(command)
    run = bootstrap_account if isinstance(order, AccountCreate) else recover_account_key
    made = await run(components, account=order.name, now_ms=now_ms)
    key = components.keyring.get(made.key_id)
    assert key is not None, "a key just created must exist"
    return KeyIssued(account_id=made.account_id, key_id=made.key_id, version=key.version)
