"""Buyers' pools: where an order's rented hash power is forwarded (proxy.md, "Pools").

Theory of operation
-------------------
``PoolRegistry`` is an event-sourced component (``component = "pools"``) journaled by the
engine beside the market and the key ring. A pool belongs to the account that created it and
names a Stratum endpoint (algorithm, host, port) and the credentials the node logs in with.
Its events (``PoolCreated``, ``PoolEdited``, ``PoolDeleted``) carry ids and times, so replay
needs no clock; ids are ``p-000001``... from a counter here. An edit (NiceHash's pools have
one) replaces a pool's settings under the same id.

The password is write-only. The node must send it again on every reconnect, also after a
restart, so it is stored, but only sealed (``sealing.seal`` under a key derived from the
node's master key, bound to the pool's id and account): the journal, snapshots and views hold
ciphertext, no view or answer ever carries the password, and only the upstream driver unseals
it (``access``) to log in. The nonce of each seal comes from the driver (``new_nonce``), since
a core draws no randomness.

The rules that need the market are checked by the caller in the same atomic command: an order
takes a pool of its own account and algorithm (``usable``), and a pool that an active order
uses cannot be deleted or edited (``in_use``): its upstream session logged in with the old
settings. Which hosts are allowed is the
operator's (``pool_hosts.AllowList``), checked at creation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, ClassVar, Final

import msgspec

from marketplace.core.errors import InvalidArgument, InvalidState, NotFound, RuleViolation
from marketplace.core.eventsourced import EventSourced
from marketplace.core.names import check_account_name
from marketplace.core.pool_hosts import AllowList, is_host
from marketplace.core.sealing import derive_key, seal, unseal
from stratum.core.shares import Algorithm

#: What the sealing key of pool passwords is derived for (``sealing.derive_key``).
SEALING_PURPOSE: Final = "pool-password"
MAX_NAME: Final = 64
MAX_HOST: Final = 253
MAX_USERNAME: Final = 256
MAX_PASSWORD: Final = 256


class _PoolEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    """Base of the pool registry's events."""


class PoolCreated(_PoolEvent, frozen=True, tag="pool_created"):
    """A pool; ``password_sealed`` is hex of ``sealing.seal`` (never the password)."""

    pool_id: str
    account: str
    name: str
    algorithm: Algorithm
    host: str
    port: int
    username: str
    password_sealed: str
    time_ms: int


class PoolEdited(_PoolEvent, frozen=True, tag="pool_edited"):
    """A pool's new settings, whole (``pool.time_ms`` stays its creation time)."""

    pool: PoolCreated
    time_ms: int


class PoolDeleted(_PoolEvent, frozen=True, tag="pool_deleted"):
    pool_id: str
    time_ms: int


PoolEvent = PoolCreated | PoolEdited | PoolDeleted


class PoolView(msgspec.Struct, frozen=True, kw_only=True):
    """A pool as its owner sees it: everything but the password."""

    id: str
    account: str
    name: str
    algorithm: Algorithm
    host: str
    port: int
    username: str
    created_ms: int
    #: When it was last edited (its creation, if never).
    updated_ms: int = 0


class PoolAccess(msgspec.Struct, frozen=True, kw_only=True):
    """What the upstream driver logs in with (the password in clear: never log this)."""

    pool_id: str
    algorithm: Algorithm
    host: str
    port: int
    username: str
    password: str = msgspec.field(default="")

    def __repr__(self) -> str:
        return f"PoolAccess({self.pool_id!r}, {self.host!r}:{self.port}, {self.username!r})"


class PoolRegistryState(msgspec.Struct, frozen=True, kw_only=True):
    """The registry's durable state for snapshots (passwords sealed, as in the events)."""

    pools: list[PoolCreated]
    seq: int
    #: When each edited pool was last edited.
    edited: dict[str, int] = msgspec.field(default_factory=dict)
    #: Deleted pools as they were last (password dropped), for the orders that named them.
    deleted: list[PoolCreated] = msgspec.field(default_factory=list)


def _text(field: str, value: str, *, max_length: int, min_length: int = 1) -> str:
    if not min_length <= len(value) <= max_length or any(c in value for c in "\r\n\x00"):
        raise InvalidArgument(
            f"{field} must be {min_length}-{max_length} characters on one line",
            {"field": field},
        )
    return value


class PoolRegistry(EventSourced[PoolEvent]):
    """Every buyer's pools (see the module doc)."""

    component: ClassVar[str] = "pools"
    event_type: ClassVar[Any] = PoolEvent
    state_type: ClassVar[Any] = PoolRegistryState

    def __init__(self, *, master_key: bytes, new_nonce: Callable[[], bytes]) -> None:
        super().__init__()
        self._master_key = master_key
        self._key = derive_key(master_key, SEALING_PURPOSE)
        self._new_nonce = new_nonce
        self._pools: dict[str, PoolCreated] = {}  # in creation order
        #: Deleted pools as they were last, without their passwords: what ended orders name.
        self._deleted: dict[str, PoolCreated] = {}
        self._edited: dict[str, int] = {}
        self._seq = 0

    # ------------------------------------------------------------------ reads

    def get_pool(self, account: str, pool_id: str) -> PoolView:
        """``account``'s pool ``pool_id``. Raises ``NotFound`` (also for another account's)."""
        return self._view(self._owned(account, pool_id))

    def former_pool(self, account: str, pool_id: str) -> PoolView:
        """``account``'s pool ``pool_id`` as it was when deleted (what an order that ended
        before shows). Raises ``NotFound`` (never deleted, or another account's)."""
        pool = self._deleted.get(pool_id)
        if pool is None or pool.account != account:
            raise NotFound("no such pool", {"id": pool_id[:MAX_NAME]})
        return self._view(pool)

    def list_pools(self, account: str) -> list[PoolView]:
        """``account``'s pools, oldest first."""
        return [self._view(p) for p in self._pools.values() if p.account == account]

    def usable(self, account: str, pool_id: str, algorithm: Algorithm) -> PoolView:
        """The pool an order of ``account`` on ``algorithm``'s market may mine for. Raises
        ``NotFound`` (no such pool of this account), ``RuleViolation`` (another algorithm)."""
        pool = self._owned(account, pool_id)
        if pool.algorithm is not algorithm:
            raise RuleViolation(
                f"pool {pool.pool_id} is a {pool.algorithm} pool, the order is {algorithm}",
                {"field": "pool_id", "pool_algorithm": pool.algorithm.value},
            )
        return self._view(pool)

    def access(self, pool_id: str) -> PoolAccess:
        """How to log in to ``pool_id`` (its password unsealed). Raises ``NotFound``, and
        ``sealing.SealError`` when the password was sealed under another master key."""
        pool = self._pools.get(pool_id)
        if pool is None:
            raise NotFound("no such pool", {"id": pool_id[:MAX_NAME]})
        password = unseal(
            self._key, bytes.fromhex(pool.password_sealed), context=_context(pool)
        ).decode()
        return PoolAccess(
            pool_id=pool.pool_id,
            algorithm=pool.algorithm,
            host=pool.host,
            port=pool.port,
            username=pool.username,
            password=password,
        )

    def _owned(self, account: str, pool_id: str) -> PoolCreated:
        pool = self._pools.get(pool_id) if isinstance(pool_id, str) else None
        if pool is None or pool.account != account:
            raise NotFound("no such pool", {"id": str(pool_id)[:MAX_NAME]})
        return pool

    # ------------------------------------------------------------------ commands

    def create_pool(
        self,
        *,
        account: str,
        name: str,
        algorithm: Algorithm,
        host: str,
        port: int,
        username: str,
        password: str,
        allow: AllowList,
        now_ms: int,
    ) -> PoolView:
        """Command: record a pool of ``account``; its view (no password). Raises
        ``InvalidArgument`` (a value no pool could have), ``RuleViolation`` with ``{"field":
        "host"}`` for a host the operator's ``allow`` list does not hold."""
        check_account_name(account)
        check_pool_params(
            name=name, host=host, port=port, username=username, password=password, allow=allow
        )
        pool_id = f"p-{self._seq + 1:06d}"
        unsealed = PoolCreated(
            pool_id=pool_id,
            account=account,
            name=name,
            algorithm=Algorithm(algorithm),
            host=host,
            port=port,
            username=username,
            password_sealed="",
            time_ms=now_ms,
        )
        self._emit(self._sealed(unsealed, password))
        return self.get_pool(account, pool_id)

    def _sealed(self, pool: PoolCreated, password: str) -> PoolCreated:
        sealed = seal(self._key, password.encode(), nonce=self._new_nonce(), context=_context(pool))
        return msgspec.structs.replace(pool, password_sealed=sealed.hex())

    def edit_pool(
        self,
        *,
        account: str,
        pool_id: str,
        name: str,
        algorithm: Algorithm,
        host: str,
        port: int,
        username: str,
        password: str,
        allow: AllowList,
        in_use: Collection[str],
        now_ms: int,
    ) -> PoolView:
        """Command: give ``account``'s pool new settings under its id; its view. ``in_use``:
        the active orders that mine for it. Raises ``NotFound``, ``InvalidState`` while an
        order uses it, and as ``create_pool`` for the settings."""
        pool = self._owned(account, pool_id)
        _not_in_use(pool_id, in_use)
        check_pool_params(
            name=name, host=host, port=port, username=username, password=password, allow=allow
        )
        edited = msgspec.structs.replace(
            pool,
            name=name,
            algorithm=Algorithm(algorithm),
            host=host,
            port=port,
            username=username,
            password_sealed="",
        )
        self._emit(PoolEdited(pool=self._sealed(edited, password), time_ms=now_ms))
        return self.get_pool(account, pool_id)

    def delete_pool(
        self, *, account: str, pool_id: str, in_use: Collection[str], now_ms: int
    ) -> PoolView:
        """Command: delete ``account``'s pool; its last view. ``in_use``: the active orders
        that mine for it. Raises ``NotFound``, ``InvalidState`` while an order uses it."""
        pool = self._owned(account, pool_id)
        _not_in_use(pool_id, in_use)
        view = self._view(pool)
        self._emit(PoolDeleted(pool_id=pool.pool_id, time_ms=now_ms))
        return view

    # ------------------------------------------------------------------ events and snapshots

    def apply(self, event: PoolEvent) -> None:
        """Fold one event into the state (deterministic)."""
        match event:
            case PoolCreated():
                self._seq += 1
                self._pools[event.pool_id] = event
            case PoolEdited(pool=pool):
                self._pools[pool.pool_id] = pool
                self._edited[pool.pool_id] = event.time_ms
            case PoolDeleted():
                gone = self._pools.pop(event.pool_id, None)
                if gone is not None:  # its edit time stays in ``_edited`` for its view
                    self._deleted[event.pool_id] = msgspec.structs.replace(gone, password_sealed="")

    def blank(self) -> PoolRegistry:
        """A registry under the same master key with no event applied (see ``EventSourced``)."""
        return PoolRegistry(master_key=self._master_key, new_nonce=self._new_nonce)

    def export_state(self) -> PoolRegistryState:
        return PoolRegistryState(
            pools=list(self._pools.values()),
            seq=self._seq,
            edited=dict(self._edited),
            deleted=list(self._deleted.values()),
        )

    def import_state(self, state: PoolRegistryState) -> None:
        """Become the registry that exported ``state``. Raises ``RuntimeError`` on a registry
        that has applied events."""
        if self._pools or self._seq:
            raise RuntimeError("import_state needs a fresh pool registry")
        self._pools = {p.pool_id: p for p in state.pools}
        self._edited = dict(state.edited)
        self._deleted = {p.pool_id: p for p in state.deleted}
        self._seq = state.seq

    def _view(self, pool: PoolCreated) -> PoolView:
        return PoolView(
            id=pool.pool_id,
            account=pool.account,
            name=pool.name,
            algorithm=pool.algorithm,
            host=pool.host,
            port=pool.port,
            username=pool.username,
            created_ms=pool.time_ms,
            updated_ms=self._edited.get(pool.pool_id, pool.time_ms),
        )


def check_pool_params(
    *, name: str, host: str, port: int, username: str, password: str, allow: AllowList
) -> None:
    """The checks of a pool's parameters (``create_pool``; ``pool.verify`` runs them before it
    connects). Raises ``InvalidArgument`` or ``RuleViolation`` (``{"field": "host"}``)."""
    _text("name", name, max_length=MAX_NAME)
    _text("username", username, max_length=MAX_USERNAME)
    _text("password", password, max_length=MAX_PASSWORD, min_length=0)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidArgument("port must be 1-65535", {"field": "port"})
    if len(host) > MAX_HOST or not is_host(host):
        raise InvalidArgument("host must be a host name or an IP address", {"field": "host"})
    if not allow.allows_host(host):
        raise RuleViolation(
            "host is not allowed: the operator's --pool-allow does not list it",
            {"field": "host"},
        )


def _context(pool: PoolCreated) -> bytes:
    """What a pool's sealed password is bound to: it opens for this pool only."""
    return f"{pool.pool_id}\x00{pool.account}".encode()


def _not_in_use(pool_id: str, in_use: Collection[str]) -> None:
    if in_use:
        raise InvalidState(
            f"pool {pool_id} is used by active order {min(in_use)}",
            {"id": pool_id, "order_id": min(in_use)},
        )
