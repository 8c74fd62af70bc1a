"""Shared bits of the examples: the API URL and credentials from the environment.

Not an example itself; the scripts import it (run them from the repository root or from
``examples/``, ``python examples/NAME.py``).
"""

from __future__ import annotations

import os
import sys

from marketplace.client import DEFAULT_URL, Credentials


def api_url() -> str:
    """``HASHMARKET_URL`` or the node's default address."""
    return os.environ.get("HASHMARKET_URL", DEFAULT_URL)


def credentials_or_exit() -> Credentials:
    """``Credentials.from_env()``; exits with a clear message when a variable is missing."""
    credentials = Credentials.from_env()
    if credentials is None:
        sys.exit("set HASHMARKET_ACCOUNT, HASHMARKET_KEY_ID and HASHMARKET_SECRET")
    return credentials
