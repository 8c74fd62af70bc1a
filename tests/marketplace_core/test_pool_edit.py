"""A pool's edit (NiceHash's door edits pools): new settings under the same id, the password
sealed again, refused while an active order uses the pool or for settings a new pool could not
have (changing nothing), and kept by replay and snapshots."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from marketplace.core.errors import InvalidArgument, InvalidState, NotFound, RuleViolation
from marketplace.core.pool_hosts import AllowList

from .test_pools import PASSWORD, SCRYPT, create, registry


def settings(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "account": "alice",
        "pool_id": "p-000001",
        "name": "away",
        "algorithm": SCRYPT,
        "host": "127.0.0.2",
        "port": 4444,
        "username": "other.rig",
        "password": "new-secret",
        "allow": AllowList(),
        "in_use": (),
        "now_ms": 5000,
    }
    params.update(overrides)
    return params


def test_an_edit_keeps_the_id_and_seals_the_new_password() -> None:
    pools = registry()
    create(pools)
    view = pools.edit_pool(**settings())
    assert (view.id, view.name, view.algorithm, view.host, view.port, view.username) == (
        "p-000001",
        "away",
        SCRYPT,
        "127.0.0.2",
        4444,
        "other.rig",
    )
    assert (view.created_ms, view.updated_ms) == (1000, 5000)
    assert pools.access("p-000001").password == "new-secret"
    (event,) = pools.drain_events()[1:]
    assert b"new-secret" not in pools.encode_event(event)
    assert create(pools) == "p-000002"  # an edit takes no id


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"in_use": ("o-000001",)}, InvalidState),
        ({"account": "bob"}, NotFound),
        ({"pool_id": "p-000009"}, NotFound),
        ({"host": "10.0.0.1"}, RuleViolation),
        ({"port": 0}, InvalidArgument),
        ({"name": ""}, InvalidArgument),
    ],
)
def test_a_refused_edit_changes_nothing(change: dict[str, Any], error: type[Exception]) -> None:
    pools = registry()
    create(pools)
    before = pools.export_state()
    with pytest.raises(error):
        pools.edit_pool(**settings(**change, allow=AllowList(("127.0.0.0/8",))))
    assert pools.export_state() == before
    assert pools.access("p-000001").password == PASSWORD


def test_replay_and_snapshots_keep_the_edit() -> None:
    pools = registry()
    create(pools)
    pools.edit_pool(**settings())
    events = pools.drain_events()
    replayed = registry()
    for event in events:
        replayed.apply(pools.decode_event(pools.encode_event(event)))
    assert replayed.export_state() == pools.export_state()
    restored = registry()
    restored.import_state(pools.decode_state(pools.encode_state()))
    assert restored.get_pool("alice", "p-000001") == pools.get_pool("alice", "p-000001")
    assert restored.access("p-000001").password == "new-secret"
    assert msgspec.json.encode(restored.get_pool("alice", "p-000001")).count(b"new-secret") == 0
    pools.delete_pool(account="alice", pool_id="p-000001", in_use=(), now_ms=6000)
    # A deleted pool is shown as it was last (its edit time too) to the orders that named it.
    assert pools.former_pool("alice", "p-000001").updated_ms == 5000
