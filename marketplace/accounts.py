"""Opening an account: the account in the market and its first key, in one durable command.

An operator opens accounts (``hashmarket account create``, the demo, test stacks); the API
cannot, so this lives beside the components rather than in the ASGI app. The market's
``create_account`` and the key ring's ``create_key`` run in one command through the executor,
so both are journaled together or neither is.
"""

from __future__ import annotations

from typing import NamedTuple

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
