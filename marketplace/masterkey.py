"""The key ring's secrets outside the journal: the master key, and fresh random key ids.

Theory of operation
-------------------
Every API key's secret is derived from one master key (``marketplace.core.keys``), which must
never be in the journal: a stolen database then yields no secret. It comes from the
environment (``HASHMARKET_MASTER_KEY``, hex) or from a file (``--master-key-file``, else
``<db>.key`` next to a SQLite database: ``Storage.key_path`` names it), created with mode 0600
and 32 random bytes on a new database and refused when group or others may read it. A
PostgreSQL database has no file next to it: without the environment variable or
``--master-key-file`` there is no key, and the market refuses to start. Only a new database may
get a new master key: a new one invalidates every key issued under the old.

This module is the driver half of the key ring: it reads the environment and files and draws
random ids, so that ``marketplace.core.keys`` stays pure. ``open_keyring`` is how a node (and
the operator's commands) build their ``KeyRing``.
"""

from __future__ import annotations

import os
import secrets
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from marketplace.core.keys import MIN_MASTER_KEY_BYTES, KeyRing
from marketplace.core.sealing import NONCE_BYTES

MASTER_KEY_ENV: Final = "HASHMARKET_MASTER_KEY"
_MASTER_KEY_BYTES: Final = 32


def load_master_key(
    path: Path | str | None, *, environ: Mapping[str, str] | None = None, create: bool = True
) -> bytes:
    """The key ring's master key: ``HASHMARKET_MASTER_KEY`` (hex) if set, else the hex file
    at ``path``, created with mode 0600 (32 random bytes) when missing and ``create``.

    Raises ``ValueError`` for a malformed key or for neither the variable nor a ``path``,
    ``PermissionError`` for a file that group or others may read, ``FileNotFoundError`` when
    missing and not ``create``.
    """
    env = os.environ if environ is None else environ
    text = env.get(MASTER_KEY_ENV)
    where = MASTER_KEY_ENV
    if text is None:
        if path is None:
            raise ValueError(
                f"no master key: a PostgreSQL --db needs {MASTER_KEY_ENV} or --master-key-file"
                " (the same key for every market of that database)"
            )
        file = Path(path)
        where = str(file)
        if create and not file.exists():
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(_MASTER_KEY_BYTES) + "\n")
        mode = file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{file} must be readable by its owner only (chmod 600)")
        text = file.read_text()
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"master key in {where} is not hex") from None
    if len(key) < MIN_MASTER_KEY_BYTES:
        raise ValueError(f"master key in {where} is shorter than {MIN_MASTER_KEY_BYTES} bytes")
    return key


def random_key_id() -> str:
    """A new key id: a random UUID (unguessable, so ids reveal nothing about other keys)."""
    return str(uuid.uuid4())


def open_keyring(
    key_path: Path | str | None, *, create: bool, environ: Mapping[str, str] | None = None
) -> KeyRing:
    """An empty ``KeyRing`` (state comes from replaying the journal) under the master key in
    ``key_path`` (a database's ``Storage.key_path``) or the environment, issuing random key
    ids. ``create``: make the key file if it is missing (a new database only). Raises as
    ``load_master_key``."""
    master_key = load_master_key(key_path, environ=environ, create=create)
    return KeyRing(master_key=master_key, new_key_id=random_key_id)


def random_nonce() -> bytes:
    """A fresh random nonce for sealing a pool password (never repeats in practice)."""
    return secrets.token_bytes(NONCE_BYTES)
