"""Account names as the marketplace checks them: ``stratum.core.names``'s rule, refused with a
``MarketError``.

The market (``create_account``, ``ensure_account``), the key ring (``create_key``) and the
API's ``X-Organization-Id`` check all use this one rule, the same one miners' usernames obey,
so a name one side accepts is never refused by another.
"""

from __future__ import annotations

from marketplace.core.errors import InvalidArgument
from stratum.core.names import ACCOUNT_RULE, is_account_name


def check_account_name(account: object) -> str:
    """``account`` if it names an account (1-64 of ``[A-Za-z0-9_-]``); otherwise raises
    ``InvalidArgument`` (field ``account``)."""
    if not is_account_name(account):
        raise InvalidArgument(f"account names are {ACCOUNT_RULE}", {"field": "account"})
    return account
