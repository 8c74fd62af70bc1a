"""Buyers' pools (pure): the registry's rules and events, the write-only password (sealed, never
in a view, an event or a snapshot in clear), and the operator's allow list."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.errors import InvalidArgument, InvalidState, NotFound, RuleViolation
from marketplace.core.pool_hosts import DEFAULT_POOL_ALLOW, AllowList, is_host
from marketplace.core.pools import PoolCreated, PoolRegistry
from marketplace.core.sealing import NONCE_BYTES, SealError, derive_key, seal, unseal
from stratum.core.shares import Algorithm

MASTER = b"m" * 32
PASSWORD = "hunter2-pool-password"
SHA, SCRYPT = Algorithm.SHA256D, Algorithm.SCRYPT


def registry() -> PoolRegistry:
    counter = itertools.count(1)
    return PoolRegistry(
        master_key=MASTER, new_nonce=lambda: next(counter).to_bytes(NONCE_BYTES, "big")
    )


def create(pools: PoolRegistry, account: str = "alice", **overrides: object) -> str:
    params: dict[str, object] = {
        "account": account,
        "name": "home",
        "algorithm": SHA,
        "host": "127.0.0.1",
        "port": 3333,
        "username": "addr.rig",
        "password": PASSWORD,
        "allow": AllowList(),
        "now_ms": 1000,
    }
    params.update(overrides)
    return pools.create_pool(**params).id  # type: ignore[arg-type]


def test_a_pool_is_its_owners_and_never_shows_its_password() -> None:
    pools = registry()
    pool_id = create(pools)
    assert pool_id == "p-000001"
    view = pools.get_pool("alice", pool_id)
    assert (view.name, view.host, view.port, view.username) == (
        "home",
        "127.0.0.1",
        3333,
        "addr.rig",
    )
    assert PASSWORD not in repr(view)
    assert PASSWORD not in msgspec.json.encode(view).decode()
    with pytest.raises(NotFound):
        pools.get_pool("bob", pool_id)
    assert pools.list_pools("bob") == []
    # Only the driver, by id, gets the password back (and its repr does not show it).
    access = pools.access(pool_id)
    assert access.password == PASSWORD
    assert PASSWORD not in repr(access)
    # Neither the journal's events nor the snapshot hold it in clear.
    (event,) = pools.drain_events()
    assert isinstance(event, PoolCreated)
    assert PASSWORD.encode() not in pools.encode_event(event)
    assert PASSWORD.encode() not in pools.encode_state()
    assert PASSWORD.encode().hex() not in event.password_sealed


def test_replay_and_snapshot_rebuild_the_same_registry() -> None:
    pools = registry()
    first = create(pools)
    create(pools, name="second", algorithm=SCRYPT)
    pools.delete_pool(account="alice", pool_id=first, in_use=[], now_ms=2000)
    events = pools.drain_events()
    replica = registry()
    for event in events:
        replica.apply(PoolRegistry.decode_event(PoolRegistry.encode_event(event)))
    assert replica.encode_state() == pools.encode_state()
    restored = registry()
    restored.import_state(PoolRegistry.decode_state(pools.encode_state()))
    assert restored.list_pools("alice") == pools.list_pools("alice")
    assert restored.access("p-000002").password == PASSWORD
    assert create(restored) == "p-000003"  # ids go on after a snapshot


def test_bad_pools_are_refused_and_change_nothing() -> None:
    pools = registry()
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"name": ""}, InvalidArgument, "name"),
        ({"name": "x" * 65}, InvalidArgument, "name"),
        ({"port": 0}, InvalidArgument, "port"),
        ({"port": 70000}, InvalidArgument, "port"),
        ({"username": ""}, InvalidArgument, "username"),
        ({"username": "a\nb"}, InvalidArgument, "username"),
        ({"password": "p" * 257}, InvalidArgument, "password"),
        ({"host": "not a host!"}, InvalidArgument, "host"),
        ({"host": "10.0.0.1"}, RuleViolation, "host"),
        ({"host": "pool.example.com"}, RuleViolation, "host"),
        ({"account": "bad name"}, InvalidArgument, ""),
    ]
    for overrides, error, field in cases:
        with pytest.raises(error) as refused:
            create(pools, **overrides)
        if field:
            assert refused.value.data.get("field") == field, overrides
        assert pools.drain_events() == []
    assert pools.list_pools("alice") == []


def test_an_order_takes_a_pool_of_its_account_and_algorithm() -> None:
    pools = registry()
    pool_id = create(pools)
    assert pools.usable("alice", pool_id, SHA).id == pool_id
    with pytest.raises(RuleViolation) as refused:
        pools.usable("alice", pool_id, SCRYPT)
    assert refused.value.data["field"] == "pool_id"
    with pytest.raises(NotFound):
        pools.usable("bob", pool_id, SHA)


def test_a_pool_in_use_cannot_be_deleted() -> None:
    pools = registry()
    pool_id = create(pools)
    with pytest.raises(InvalidState) as refused:
        pools.delete_pool(account="alice", pool_id=pool_id, in_use=["o-000002"], now_ms=5)
    assert refused.value.data == {"id": pool_id, "order_id": "o-000002"}
    pools.drain_events()
    assert pools.delete_pool(account="alice", pool_id=pool_id, in_use=[], now_ms=5).id == pool_id
    with pytest.raises(NotFound):
        pools.access(pool_id)


@given(plaintext=st.binary(max_size=300), context=st.binary(max_size=40))
def test_seal_round_trips_and_refuses_anything_altered(plaintext: bytes, context: bytes) -> None:
    key = derive_key(MASTER, "pool-password")
    nonce = bytes(range(NONCE_BYTES))
    sealed = seal(key, plaintext, nonce=nonce, context=context)
    assert unseal(key, sealed, context=context) == plaintext
    assert len(sealed) == NONCE_BYTES + len(plaintext) + 32
    if len(plaintext) >= 8:
        assert plaintext not in sealed
    for i in range(0, len(sealed), max(1, len(sealed) // 7)):
        altered = bytearray(sealed)
        altered[i] ^= 1
        with pytest.raises(SealError):
            unseal(key, bytes(altered), context=context)
    with pytest.raises(SealError):
        unseal(key, sealed, context=context + b"x")
    with pytest.raises(SealError):
        unseal(derive_key(b"n" * 32, "pool-password"), sealed, context=context)


def test_a_password_sealed_under_another_master_key_does_not_open() -> None:
    pools = registry()
    pool_id = create(pools)
    other = PoolRegistry(master_key=b"o" * 32, new_nonce=lambda: bytes(NONCE_BYTES))
    other.import_state(PoolRegistry.decode_state(pools.encode_state()))
    with pytest.raises(SealError):
        other.access(pool_id)


def test_the_allow_list() -> None:
    default = AllowList()
    assert default.entries == DEFAULT_POOL_ALLOW
    assert default.allows_host("127.0.0.1")
    assert default.allows_host("127.200.1.2")
    assert default.allows_host("::1")
    assert default.allows_host("[::1]")
    assert default.allows_host("localhost")
    assert default.allows_host("LOCALHOST.")
    for refused in ("10.0.0.1", "192.168.1.1", "::2", "pool.example.com", "169.254.169.254"):
        assert not default.allows_host(refused), refused
    custom = AllowList(["10.1.0.0/16", "pool.example.com", "2001:db8::/32"])
    assert custom.allows_host("10.1.2.3")
    assert not custom.allows_host("10.2.0.1")
    assert custom.allows_host("Pool.Example.com")
    assert not custom.allows_host("evil.example.com")
    assert custom.allows_host("2001:db8::1")
    assert not custom.allows_host("127.0.0.1")
    # At connect time: a listed name is the operator's choice; any other name must resolve
    # only to allowed addresses (and to some).
    assert custom.allows_resolved("pool.example.com", ["203.0.113.9"])
    assert custom.allows_resolved("other.example.com", ["10.1.9.9"])
    assert not custom.allows_resolved("other.example.com", ["10.1.9.9", "127.0.0.1"])
    assert not custom.allows_resolved("other.example.com", [])
    assert not custom.allows_resolved("10.9.9.9", ["10.9.9.9"])
    with pytest.raises(ValueError, match="not a host name"):
        AllowList(["not a host!"])
    assert is_host("a-b.example")
    assert is_host("127.0.0.1")
    assert not is_host("-bad.example")


def test_a_deleted_pool_is_still_shown_as_it_was_for_the_orders_that_named_it() -> None:
    pools = registry()
    pool_id = create(pools)
    before = pools.get_pool("alice", pool_id)
    with pytest.raises(NotFound):
        pools.former_pool("alice", pool_id)  # not deleted
    pools.delete_pool(account="alice", pool_id=pool_id, in_use=[], now_ms=7)
    assert pools.former_pool("alice", pool_id) == before
    with pytest.raises(NotFound):
        pools.former_pool("bob", pool_id)
    # No password kept for it, and it is no usable pool any more.
    assert PASSWORD.encode() not in pools.encode_state()
    assert '"password_sealed":""' in pools.encode_state().decode()
    with pytest.raises(NotFound):
        pools.get_pool("alice", pool_id)
    # Replay and a snapshot keep it.
    events = pools.drain_events()
    replica = registry()
    for event in events:
        replica.apply(event)
    assert replica.former_pool("alice", pool_id) == before
    restored = registry()
    restored.import_state(PoolRegistry.decode_state(pools.encode_state()))
    assert restored.former_pool("alice", pool_id) == before
