"""Opening an account, a recovery key for one, operator keys: durable commands an operator runs.

An operator opens accounts (``hashmarket account create``, the demo, test stacks), mints a
recovery key for an account whose owner lost theirs (``hashmarket account key``) and issues
or ends operator keys (``hashmarket operator-key create|revoke``); the API can do none of
these, so this lives beside the components rather than in the ASGI app. Each is one
command through the executor: the market account, the key and its activity entry
(``key.created`` or ``key.recovered``) are journaled together or not at all.

An account exists once it was issued a key: ``account create`` refuses such a name ("account
exists"), so a second key for an existing account is always the explicit, logged
``account key``. A name that mined before it signed up (a seller paid before) has a market
account but no key yet: ``account create`` signs it up.

Operator keys (control.md) belong to the reserved account ``operator`` (``OPERATOR_ACCOUNT``,
which also receives the marketplace's fees) and have the single scope ``operator``: the key
ring refuses any other combination, so an account's key never has it and an operator key
never has a buyer's scope; ``account create`` and ``account key`` refuse the name.

The same commands travel through the operator inbox (``marketplace.storage.inbox``) when a node
serves the database: ``AccountCreate``, ``AccountKey``, ``OperatorKeyCreate`` and
``OperatorKeyRevoke`` are what the operator leaves there, ``KeyIssued`` (or ``KeyEnded``) what
the node answers (no secret: the operator derives it from the master key file), and
``answer_inbox`` is how the node runs them.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from marketplace.core.errors import InvalidArgument, InvalidState, NotFound
from marketplace.core.eventsourced import Executor
from marketplace.core.key_events import ALL_SCOPES, OPERATOR_ACCOUNT, Scope
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

    Raises ``InvalidArgument`` for a bad name (1-64 of ``[A-Za-z0-9_-]``) or the reserved
    ``operator``, ``InvalidState`` ("account exists") if the account was ever issued a key.
    """
    _check_not_reserved(account)
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
    ``InvalidArgument`` for a bad name or the reserved ``operator``."""
    _check_not_reserved(account)
    market, keyring = components.market, components.keyring

    def command() -> Bootstrap:
        if not (keyring.has_account(account) or market.has_account(account)):
            raise NotFound("no such account", {"account": account})
        return _all_scope_key(components, account, ActivityKind.KEY_RECOVERED, now_ms)

    return await components.executor.execute(command)


def _check_not_reserved(account: str) -> None:
    check_account_name(account)
    if account == OPERATOR_ACCOUNT:
        raise InvalidArgument(
            f"{OPERATOR_ACCOUNT!r} is reserved for operator keys (hashmarket operator-key create)",
            {"field": "account"},
        )


async def issue_operator_key(components: Components, *, now_ms: int) -> Bootstrap:
    """A new key of the ``operator`` account with the single scope ``operator``, durably,
    logged in that account's activity as ``key.created``."""

    def command() -> Bootstrap:
        return _logged_key(
            components,
            OPERATOR_ACCOUNT,
            (Scope.OPERATOR,),
            label="operator",
            kind=ActivityKind.KEY_CREATED,
            now_ms=now_ms,
        )

    return await components.executor.execute(command)


async def revoke_operator_key(components: Components, *, key_id: str, now_ms: int) -> None:
    """End the operator key ``key_id`` now, durably, logged as ``key.revoked``. Raises
    ``NotFound`` unless it is an active key of the ``operator`` account."""
    keyring, security = components.keyring, components.security

    def command() -> None:
        keyring.revoke_key(account=OPERATOR_ACCOUNT, key_id=key_id, now_ms=now_ms)
        security.record(
            account=OPERATOR_ACCOUNT,
            kind=ActivityKind.KEY_REVOKED,
            actor=OPERATOR,
            detail={"key_id": key_id},
            now_ms=now_ms,
        )

    await components.executor.execute(command)


def _all_scope_key(
    components: Components, account: str, kind: ActivityKind, now_ms: int
) -> Bootstrap:
    label = "recovery" if kind is ActivityKind.KEY_RECOVERED else "bootstrap"
    return _logged_key(components, account, ALL_SCOPES, label=label, kind=kind, now_ms=now_ms)


def _logged_key(
    components: Components,
    account: str,
    scopes: tuple[Scope, ...],
    *,
    label: str,
    kind: ActivityKind,
    now_ms: int,
) -> Bootstrap:
    """A key issued by the operator and its activity entry (inside a command)."""
    issued = components.keyring.create_key(
        account=account, label=label, scopes=scopes, expires_ms=None, now_ms=now_ms
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


class OperatorKeyCreate(msgspec.Struct, frozen=True, tag="operator_key.create"):
    """The operator inbox command that issues an operator key."""


class OperatorKeyRevoke(msgspec.Struct, frozen=True, tag="operator_key.revoke"):
    """The operator inbox command that ends the operator key ``key_id``."""

    key_id: str


InboxCommand = AccountCreate | AccountKey | OperatorKeyCreate | OperatorKeyRevoke


class KeyIssued(msgspec.Struct, frozen=True):
    """The node's answer to an inbox command that issues a key: the key, without its secret."""

    account_id: str
    key_id: str
    version: int


class KeyEnded(msgspec.Struct, frozen=True):
    """The node's answer to ``OperatorKeyRevoke``."""

    key_id: str


_inbox_decoder = msgspec.json.Decoder(InboxCommand)


async def answer_inbox(
    command: bytes, *, components: Components, now_ms: int
) -> KeyIssued | KeyEnded:
    """Run the inbox command ``command`` (JSON ``InboxCommand``) durably; the key it issued
    (or ended).

    Raises ``msgspec.DecodeError`` (or ``ValidationError``) for a command of another shape,
    ``MarketError`` as ``bootstrap_account``, ``recover_account_key``, ``issue_operator_key``
    or ``revoke_operator_key``.
    """
    order = _inbox_decoder.decode(command)
    if isinstance(order, OperatorKeyRevoke):
        await revoke_operator_key(components, key_id=order.key_id, now_ms=now_ms)
        return KeyEnded(key_id=order.key_id)
    if isinstance(order, OperatorKeyCreate):
        made = await issue_operator_key(components, now_ms=now_ms)
    else:
        run = bootstrap_account if isinstance(order, AccountCreate) else recover_account_key
        made = await run(components, account=order.name, now_ms=now_ms)
    key = components.keyring.get(made.key_id)
    assert key is not None, "a key just created must exist"
    return KeyIssued(account_id=made.account_id, key_id=made.key_id, version=key.version)
