"""What the handshake's parameters mean: usernames, password options, BIP 310 version rolling.

Theory of operation
-------------------
A username is ``<account>[.<worker>]`` (stratum.md, with the one name rule of ``names.py``):
the account is who gets paid, the worker names one rig of it (``default`` when absent).
Authorize and submit both parse it here, so a name one accepts the other accepts. A password
is free text, except that a ``d=<number>`` option in it (comma-separated options, as NiceHash
and ckpool read them) suggests a start difficulty. ``mining.configure`` offers extensions; the
only one spoken here is BIP 310 version rolling, granted with the server's mask intersected
with the miner's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from stratum.core.errors import StratumError, StratumErrorCode
from stratum.core.names import USERNAME_RE

DEFAULT_WORKER: Final = "default"
VERSION_ROLLING: Final = "version-rolling"


@dataclass(frozen=True, slots=True)
class Worker:
    """One authorized username on a connection."""

    account: str
    worker: str


def parse_username(username: str) -> Worker:
    """``<account>[.<worker>]`` as stratum.md allows it; raises ``StratumError`` (24) otherwise."""
    match = USERNAME_RE.match(username)
    if match is None:
        raise StratumError(
            StratumErrorCode.UNAUTHORIZED,
            "Invalid username: expected <account>.<worker>, account 1-64 and worker 1-32 of "
            "[A-Za-z0-9_-]",
        )
    return Worker(match.group(1), match.group(2) or DEFAULT_WORKER)


def password_difficulty(password: str | None) -> float | None:
    """The ``d=<number>`` option of a password (comma-separated options), if valid."""
    if not password:
        return None
    for option in password.split(","):
        key, sep, value = option.strip().partition("=")
        if sep and key.strip() == "d":
            try:
                difficulty = float(value)
            except ValueError:
                return None
            return difficulty if difficulty > 0 and math.isfinite(difficulty) else None
    return None


def negotiate_extensions(
    extensions: list[str], options: Mapping[str, Any], *, server_mask: int
) -> tuple[int | None, dict[str, Any]]:
    """The version-rolling mask granted (``None``: not asked for) and the configure result.

    Unknown extensions are answered ``false``. Raises ``StratumError`` (20) for a mask that is
    not 1-8 hex digits.
    """
    granted: int | None = None
    result: dict[str, Any] = {}
    for extension in extensions:
        if extension != VERSION_ROLLING:
            result[extension] = False
            continue
        requested = options.get(f"{VERSION_ROLLING}.mask", "ffffffff")
        try:
            if not isinstance(requested, str) or not 1 <= len(requested) <= 8:
                raise ValueError(requested)
            miner_mask = int(requested, 16)
        except ValueError:
            raise StratumError(
                StratumErrorCode.OTHER, "Invalid version-rolling.mask: expected 8 hex digits"
            ) from None
        granted = server_mask & miner_mask
        result[VERSION_ROLLING] = True
        result[f"{VERSION_ROLLING}.mask"] = f"{granted:08x}"
    return granted, result
