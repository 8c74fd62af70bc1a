"""Account and worker names: the one rule, for miners, the market and the API alike.

Theory of operation
-------------------
An account is named by miners (``<account>.<worker>`` in ``mining.authorize``), by operators
(``hashmarket account create NAME``) and by buyers (``X-Organization-Id`` on every signed
request), so all of them must accept exactly the same names: 1-64 of ``[A-Za-z0-9_-]``
(stratum.md). Worker names are 1-32 of the same characters. Only the pattern text and pure
predicates live here; each side raises its own error (a Stratum 24, a ``MarketError``, an API
4001). It lives in ``stratum.core`` because the marketplace may import the Stratum core and
never the reverse.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

#: The characters of account and worker names.
NAME_CHARS: Final = "A-Za-z0-9_-"
#: An account name, as a regular expression to ``fullmatch``.
ACCOUNT_PATTERN: Final = rf"[{NAME_CHARS}]{{1,64}}"
#: A worker name (the part after the dot of a Stratum username).
WORKER_PATTERN: Final = rf"[{NAME_CHARS}]{{1,32}}"
#: What an account name may be, in words (for error messages).
ACCOUNT_RULE: Final = "1-64 of A-Z a-z 0-9 _ -"

ACCOUNT_RE: Final = re.compile(ACCOUNT_PATTERN)
#: ``<account>[.<worker>]``: group 1 the account, group 2 the worker (``None`` when absent).
USERNAME_RE: Final = re.compile(rf"^({ACCOUNT_PATTERN})(?:\.({WORKER_PATTERN}))?$")


def is_account_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a string that names an account. Never raises."""
    return isinstance(value, str) and ACCOUNT_RE.fullmatch(value) is not None
