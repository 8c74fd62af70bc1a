"""The master key's driver: the 0600 file next to the database, the environment, random ids."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from marketplace.core.key_events import Scope
from marketplace.masterkey import MASTER_KEY_ENV, load_master_key, open_keyring
from marketplace.storage import Storage


def test_master_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = Storage(tmp_path / "market.db").key_path
    assert path.name == "market.db.key"
    key = load_master_key(path, environ={})
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_master_key(path, environ={}) == key
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        load_master_key(path, environ={})
    assert load_master_key(path, environ={MASTER_KEY_ENV: "ab" * 32}) == b"\xab" * 32
    with pytest.raises(ValueError, match="hex"):
        load_master_key(path, environ={MASTER_KEY_ENV: "zz"})
    with pytest.raises(FileNotFoundError):
        load_master_key(tmp_path / "missing.key", environ={}, create=False)


def test_open_keyring_derives_the_same_secrets_from_the_same_file(tmp_path: Path) -> None:
    key_path = Storage(tmp_path / "market.db").key_path
    with pytest.raises(FileNotFoundError):
        open_keyring(key_path, create=False, environ={})
    first = open_keyring(key_path, create=True, environ={})
    issued = first.create_key(
        account="alice", label="x", scopes=[Scope.READ], expires_ms=None, now_ms=0
    )
    assert uuid.UUID(issued.key.key_id).version == 4  # random, unguessable ids
    other = first.create_key(
        account="alice", label="y", scopes=[Scope.READ], expires_ms=None, now_ms=0
    )
    assert other.key.key_id != issued.key.key_id
    again = open_keyring(key_path, create=False, environ={})
    assert again.secret_of(issued.key.key_id, 1) == issued.secret
    from_env = open_keyring(key_path, create=False, environ={MASTER_KEY_ENV: "ab" * 32})
    assert from_env.secret_of(issued.key.key_id, 1) != issued.secret
