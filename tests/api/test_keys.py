"""The key ring: scopes, rotation, revocation, expiry, replay, and no secret at rest."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from marketplace.api.keys import (
    ALL_SCOPES,
    MASTER_KEY_ENV,
    KeyRing,
    KeyState,
    Scope,
    load_master_key,
    master_key_path,
)
from marketplace.core.errors import InvalidArgument, NotFound
from tests.api.conftest import MASTER, T0, counter_ids


def ring() -> KeyRing:
    return KeyRing(master_key=MASTER, new_key_id=counter_ids())


def replayed(source: KeyRing, events: list[bytes]) -> KeyRing:
    fresh = ring()
    for body in events:
        fresh.apply(KeyRing.decode_event(body))
    return fresh


def test_create_rotate_revoke_expire_and_replay() -> None:
    keys = ring()
    journal: list[bytes] = []

    def flush() -> None:
        journal.extend(KeyRing.encode_event(e) for e in keys.drain_events())

    first = keys.create_key(
        account="alice", label="main", scopes=ALL_SCOPES, expires_ms=None, now_ms=T0
    )
    reader = keys.create_key(
        account="alice", label="ro", scopes=[Scope.READ], expires_ms=T0 + 5_000, now_ms=T0
    )
    flush()
    assert first.key.key_id != reader.key.key_id
    assert first.secret != reader.secret
    assert [k.key_id for k in keys.list_keys("alice", now_ms=T0)] == [
        first.key.key_id,
        reader.key.key_id,
    ]
    # Rotation: a successor with the same scopes; the old key ends after the grace.
    successor = keys.rotate_key(
        account="alice", key_id=first.key.key_id, grace_ms=10_000, now_ms=T0 + 1_000
    )
    flush()
    assert successor.key.scopes == first.key.scopes
    assert successor.key.version == 2
    old = keys.get(first.key.key_id)
    assert old is not None
    assert old.state(T0 + 10_999) is KeyState.ACTIVE
    assert old.state(T0 + 11_000) is KeyState.EXPIRED
    assert keys.get(reader.key.key_id).state(T0 + 5_000) is KeyState.EXPIRED  # type: ignore[union-attr]
    # Revocation is immediate; another account cannot touch the key.
    with pytest.raises(NotFound):
        keys.revoke_key(account="bob", key_id=successor.key.key_id, now_ms=T0 + 2_000)
    keys.revoke_key(account="alice", key_id=successor.key.key_id, now_ms=T0 + 2_000)
    flush()
    assert keys.get(successor.key.key_id).state(T0 + 2_000) is KeyState.REVOKED  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        keys.revoke_key(account="alice", key_id=successor.key.key_id, now_ms=T0 + 2_000)
    with pytest.raises(NotFound):
        keys.rotate_key(account="alice", key_id="nope", grace_ms=0, now_ms=T0)
    # Replay gives the same keys and the same (derived) secrets.
    again = replayed(keys, journal)
    for key_id in (first.key.key_id, reader.key.key_id, successor.key.key_id):
        assert again.get(key_id) == keys.get(key_id)
    assert again.secret_of(successor.key.key_id, 2) == successor.secret
    # No secret in the journal.
    for secret in (first.secret, reader.secret, successor.secret):
        assert all(secret.encode() not in body for body in journal)


def test_refusals_change_nothing() -> None:
    keys = ring()
    with pytest.raises(InvalidArgument):
        keys.create_key(account="a b", label="x", scopes=[Scope.READ], expires_ms=None, now_ms=T0)
    with pytest.raises(InvalidArgument):
        keys.create_key(account="a", label="", scopes=[Scope.READ], expires_ms=None, now_ms=T0)
    with pytest.raises(InvalidArgument):
        keys.create_key(account="a", label="x", scopes=[], expires_ms=None, now_ms=T0)
    with pytest.raises(InvalidArgument):
        keys.create_key(account="a", label="x", scopes=["root"], expires_ms=None, now_ms=T0)  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        keys.create_key(account="a", label="x", scopes=[Scope.READ], expires_ms=T0, now_ms=T0)
    assert keys.drain_events() == []


def test_last_use_is_journaled_at_most_once_a_minute() -> None:
    keys = ring()
    issued = keys.create_key(
        account="a", label="x", scopes=[Scope.READ], expires_ms=None, now_ms=T0
    )
    keys.drain_events()
    key_id = issued.key.key_id
    keys.note_used(key_id, now_ms=T0 + 5)
    assert keys.get(key_id).last_used_ms == T0 + 5  # type: ignore[union-attr]
    keys.persist_used(key_id, now_ms=T0 + 5)
    keys.persist_used(key_id, now_ms=T0 + 59_000)
    assert len(keys.drain_events()) == 1
    keys.persist_used(key_id, now_ms=T0 + 60_005)
    assert len(keys.drain_events()) == 1


def test_master_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = master_key_path(tmp_path / "market.db")
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
