"""The key ring: scopes, rotation, revocation, expiry, replay, and no secret at rest."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.key_events import (
    ALL_SCOPES,
    OPERATOR_ACCOUNT,
    KeyCreated,
    KeyExpirySet,
    KeyRevoked,
    KeyState,
    KeyUsed,
    RequestRecorded,
    Scope,
)
from marketplace.core.keys import KeyRing

T0 = 1_700_000_000_000
MASTER = b"m" * 32


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"k-{next(numbers):04d}"


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


# Bytes journaled and snapshotted by the key ring before it moved from marketplace.api.keys to
# marketplace.core (recorded with that code): existing databases hold exactly these, so the
# events' tags, field names and field order must keep decoding to the same values.
RECORDED_EVENTS = [
    (
        b"\x88\xa5event\xabkey_created\xa6key_id\xa3k-1\xa7account\xa5alice\xa5label\xa3bot"
        b"\xa6scopes\x92\xa4read\xa5trade\xa7version\x01\xaaexpires_ms\xc0"
        b"\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x00",
        KeyCreated(
            key_id="k-1",
            account="alice",
            label="bot",
            scopes=(Scope.READ, Scope.TRADE),
            version=1,
            expires_ms=None,
            time_ms=T0,
        ),
    ),
    (
        b"\x88\xa5event\xabkey_created\xa6key_id\xa3k-2\xa7account\xa5alice\xa5label\xa3bot"
        b"\xa6scopes\x91\xa4read\xa7version\x02\xaaexpires_ms\xcf\x00\x00\x01\x8b\xcf\xea\xe6@"
        b"\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x01",
        KeyCreated(
            key_id="k-2",
            account="alice",
            label="bot",
            scopes=(Scope.READ,),
            version=2,
            expires_ms=T0 + 360_000,
            time_ms=T0 + 1,
        ),
    ),
    (
        b"\x84\xa5event\xaekey_expiry_set\xa6key_id\xa3k-1"
        b"\xaaexpires_ms\xcf\x00\x00\x01\x8b\xd0\x1cV\x80\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x01",
        KeyExpirySet(key_id="k-1", expires_ms=T0 + 3_600_000, time_ms=T0 + 1),
    ),
    (
        b"\x83\xa5event\xabkey_revoked\xa6key_id\xa3k-2\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x02",
        KeyRevoked(key_id="k-2", time_ms=T0 + 2),
    ),
    (
        b"\x83\xa5event\xa8key_used\xa6key_id\xa3k-1\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe6R`",
        KeyUsed(key_id="k-1", time_ms=T0 + 60_000),
    ),
    (
        b"\x88\xa5event\xb0request_recorded\xa6key_id\xa3k-1\xaarequest_id\xa2r1\xa5index\x00"
        b"\xa6method\xacorder.create\xa6digest\xd9 abababababababababababababababab"
        b'\xa6result\xc4\x11{"id":"o-000001"}\xa7time_ms\xcf\x00\x00\x01\x8b\xcf\xe5h\x03',
        RequestRecorded(
            key_id="k-1",
            request_id="r1",
            index=0,
            method="order.create",
            digest="ab" * 16,
            result=b'{"id":"o-000001"}',
            time_ms=T0 + 3,
        ),
    ),
]

RECORDED_SNAPSHOT = (
    b'{"keys":[{"key_id":"k-1","account":"alice","label":"bot","scopes":["read","trade"],'
    b'"version":1,"created_ms":1700000000000,"expires_ms":null,"revoked_ms":null,'
    b'"last_used_ms":1700000060000}],"requests":[{"event":"request_recorded","key_id":"k-1",'
    b'"request_id":"r1","index":0,"method":"order.create",'
    b'"digest":"abababababababababababababababab","result":"eyJpZCI6Im8tMDAwMDAxIn0=",'
    b'"time_ms":1700000000003}],"prune_queue":[[1700000000003,"k-1","r1",0]]}'
)


@pytest.mark.parametrize(("recorded", "event"), RECORDED_EVENTS)
def test_events_journaled_before_the_move_decode_and_encode_the_same(
    recorded: bytes, event: object
) -> None:
    assert KeyRing.decode_event(recorded) == event
    assert KeyRing.encode_event(event) == recorded  # type: ignore[arg-type]


def test_a_snapshot_taken_before_the_move_restores_and_encodes_the_same() -> None:
    keys = KeyRing(master_key=MASTER, new_key_id=iter(["k-1"]).__next__)
    issued = keys.create_key(
        account="alice", label="bot", scopes=ALL_SCOPES[:2], expires_ms=None, now_ms=T0
    )
    keys.remember(
        ("k-1", "r1", 0),
        method="order.create",
        digest="ab" * 16,
        result=b'{"id":"o-000001"}',
        now_ms=T0 + 3,
    )
    keys.persist_used("k-1", now_ms=T0 + 60_000)
    assert keys.encode_state() == RECORDED_SNAPSHOT
    # Secrets are derived, never stored: the derivation must not change either.
    assert issued.secret == "14961d0530a11468f5c23bc3e5962074db35d9af774fcecea70e708a90a9532c"
    restored = KeyRing(master_key=MASTER, new_key_id=counter_ids())
    restored.import_state(KeyRing.decode_state(RECORDED_SNAPSHOT))
    assert restored.get("k-1") == keys.get("k-1")
    assert restored.secret_of("k-1", 1) == issued.secret
    recalled = restored.recall(("k-1", "r1", 0), now_ms=T0 + 4)
    assert recalled is not None
    assert recalled.result == b'{"id":"o-000001"}'


def test_the_operator_scope_is_the_operator_accounts_alone() -> None:
    keys = ring()
    operator = keys.create_key(
        account=OPERATOR_ACCOUNT, label="op", scopes=[Scope.OPERATOR], expires_ms=None, now_ms=T0
    )
    assert operator.key.scopes == (Scope.OPERATOR,)
    assert Scope.OPERATOR not in ALL_SCOPES  # an account's first key never has it
    refusals = [
        ("alice", [Scope.OPERATOR]),
        ("alice", [Scope.READ, Scope.OPERATOR]),
        (OPERATOR_ACCOUNT, [Scope.READ]),
        (OPERATOR_ACCOUNT, [Scope.OPERATOR, Scope.TRADE]),
        (OPERATOR_ACCOUNT, ALL_SCOPES),
    ]
    for account, scopes in refusals:
        with pytest.raises(InvalidArgument, match="operator") as info:
            keys.create_key(account=account, label="x", scopes=scopes, expires_ms=None, now_ms=T0)
        assert info.value.data["field"] == "scopes"
    assert len(keys.drain_events()) == 1
    # Rotation keeps the scope; revocation ends it.
    successor = keys.rotate_key(
        account=OPERATOR_ACCOUNT, key_id=operator.key.key_id, grace_ms=0, now_ms=T0
    )
    assert successor.key.scopes == (Scope.OPERATOR,)
    keys.revoke_key(account=OPERATOR_ACCOUNT, key_id=successor.key.key_id, now_ms=T0)
    assert keys.list_keys(OPERATOR_ACCOUNT, now_ms=T0 + 1) == []
