"""API keys: scopes, several per account, rotation with a grace period, revocation, expiry.

Theory of operation
-------------------
``KeyRing`` is an event-sourced component (``component = "keys"``) journaled by the engine next
to the market. Its events (``key_events.py``: ``KeyCreated``, ``KeyExpirySet``, ``KeyRevoked``,
``KeyUsed``, ``RequestRecorded``) carry ids and times, so replay needs no clock and rebuilds the
same keys. Key ids are random, so they come from the driver too: the ``new_key_id`` factory
(``marketplace.masterkey.random_key_id`` in a node, a counter in tests).

Secrets. The signature scheme is symmetric (HMAC), so the server must be able to recompute a
key's secret; hashing it like a password is not an option. Instead no secret is stored at all:
each one is *derived* as ``hex(HMAC-SHA256(master_key, key_id \\0 version))``
(``derive_secret``). The master key lives outside the journal and is handed in by the driver
(``marketplace.masterkey``: the environment or a 0600 file next to the database). The journal
and the in-memory state hold key ids, labels and scopes only; a stolen database yields no
secret, and the secret is shown once, in the answer of ``apikey.create``/``apikey.rotate``.
Losing the master key invalidates every key (the operator then bootstraps a new one).

Rotation creates a new key (new id, version + 1, same label and scopes) and sets the old one
to expire ``grace`` later; both sign until then. Revocation ends a key at once. Expiry is a
time; a key whose ``expires_ms`` is reached no longer authenticates.

Last use. Every authenticated request updates an in-memory time (shown by ``list_keys``); a
``KeyUsed`` event persists it at most once per ``used_interval_ms`` per key, so a busy key costs
one journal record a minute, not one per request.

Idempotency records (``idempotency.py``) live here too: they are per key, and keeping them in
this component lets the engine journal a record together with the mutation it answers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Final

from marketplace.core.errors import InvalidArgument, NotFound
from marketplace.core.eventsourced import EventSourced
from marketplace.core.idempotency import IdempotencyRecords, Recorded, RecordKey
from marketplace.core.key_events import (
    ALL_SCOPES,
    OPERATOR_ACCOUNT,
    IssuedKey,
    KeyCreated,
    KeyEvent,
    KeyExpirySet,
    KeyRevoked,
    KeyRingState,
    KeyState,
    KeyUsed,
    KeyView,
    RequestRecorded,
    Scope,
)
from marketplace.core.names import check_account_name

_LABEL_MAX: Final = 64
#: Shortest master key accepted (bytes).
MIN_MASTER_KEY_BYTES: Final = 16
DAY_MS: Final = 86_400_000


def check_master_key(master_key: bytes) -> bytes:
    """``master_key`` if it is long enough to derive secrets from; else ``ValueError``."""
    if len(master_key) < MIN_MASTER_KEY_BYTES:
        raise ValueError(f"the master key must be at least {MIN_MASTER_KEY_BYTES} bytes")
    return master_key


def derive_secret(master_key: bytes, key_id: str, version: int) -> str:
    """The secret of key ``key_id`` at ``version`` under ``master_key`` (lowercase hex)."""
    message = key_id.encode() + b"\x00" + str(version).encode()
    return hmac.new(master_key, message, hashlib.sha256).hexdigest()


class _Key:
    __slots__ = (
        "account",
        "created_ms",
        "expires_ms",
        "key_id",
        "label",
        "last_used_ms",
        "revoked_ms",
        "scopes",
        "version",
    )

    def __init__(self, event: KeyCreated) -> None:
        self.key_id = event.key_id
        self.account = event.account
        self.label = event.label
        self.scopes = event.scopes
        self.version = event.version
        self.created_ms = event.time_ms
        self.expires_ms = event.expires_ms
        self.revoked_ms: int | None = None
        self.last_used_ms: int | None = None

    def view(self, live_used_ms: int | None) -> KeyView:
        used = self.last_used_ms
        if live_used_ms is not None and (used is None or live_used_ms > used):
            used = live_used_ms
        return KeyView(
            key_id=self.key_id,
            account=self.account,
            label=self.label,
            scopes=self.scopes,
            version=self.version,
            created_ms=self.created_ms,
            expires_ms=self.expires_ms,
            revoked_ms=self.revoked_ms,
            last_used_ms=used,
        )


def _check_scopes(scopes: Iterable[Scope]) -> tuple[Scope, ...]:
    chosen = set()
    for scope in scopes:
        try:
            chosen.add(Scope(scope))
        except ValueError:
            raise InvalidArgument(
                "unknown scope", {"field": "scopes", "allowed": ",".join(Scope)}
            ) from None
    if not chosen:
        raise InvalidArgument("a key needs at least one scope", {"field": "scopes"})
    return tuple(s for s in Scope if s in chosen)


def _check_scope_owner(account: str, scopes: tuple[Scope, ...]) -> None:
    """The operator scope is the reserved operator account's, and its keys have no other."""
    if account == OPERATOR_ACCOUNT:
        if scopes != (Scope.OPERATOR,):
            raise InvalidArgument(
                f"the {OPERATOR_ACCOUNT} account's keys have the operator scope alone",
                {"field": "scopes", "allowed": Scope.OPERATOR.value},
            )
    elif Scope.OPERATOR in scopes:
        raise InvalidArgument(
            f"the operator scope is for the {OPERATOR_ACCOUNT} account's keys alone",
            {"field": "scopes", "allowed": ",".join(ALL_SCOPES)},
        )


class KeyRing(EventSourced[KeyEvent]):
    """Every API key and its recorded first answers (see the module doc)."""

    component: ClassVar[str] = "keys"
    event_type: ClassVar[Any] = KeyEvent
    state_type: ClassVar[Any] = KeyRingState

    def __init__(
        self,
        *,
        master_key: bytes,
        new_key_id: Callable[[], str],
        used_interval_ms: int = 60_000,
        idempotency_ttl_ms: int = DAY_MS,
    ) -> None:
        super().__init__()
        self._master_key = check_master_key(master_key)
        self._new_key_id = new_key_id
        self._used_interval_ms = used_interval_ms
        self._idempotency_ttl_ms = idempotency_ttl_ms
        self._keys: dict[str, _Key] = {}
        self._keys_of: dict[str, list[_Key]] = {}
        self._live_used: dict[str, int] = {}  # ephemeral
        self._requests = IdempotencyRecords(ttl_ms=idempotency_ttl_ms)

    # ------------------------------------------------------------------ secrets

    def secret_of(self, key_id: str, version: int) -> str:
        """The secret of key ``key_id`` at ``version``: derived, never stored."""
        return derive_secret(self._master_key, key_id, version)

    # ------------------------------------------------------------------ queries

    def get(self, key_id: str) -> KeyView | None:
        """Key ``key_id`` in whatever state, or ``None``."""
        key = self._keys.get(key_id)
        return None if key is None else key.view(self._live_used.get(key_id))

    def has_account(self, account: str) -> bool:
        """Whether ``account`` was ever issued a key (it signed up), whatever their state."""
        return account in self._keys_of

    def list_keys(self, account: str, *, now_ms: int) -> list[KeyView]:
        """``account``'s keys that still authenticate at ``now_ms``, oldest first."""
        views = [k.view(self._live_used.get(k.key_id)) for k in self._keys_of.get(account, ())]
        return [v for v in views if v.state(now_ms) is KeyState.ACTIVE]

    def _own_active(self, account: str, key_id: str, now_ms: int) -> _Key:
        key = self._keys.get(key_id) if isinstance(key_id, str) else None
        if (
            key is None
            or key.account != account
            or key.view(None).state(now_ms) is not KeyState.ACTIVE
        ):
            raise NotFound("no such key", {"key_id": str(key_id)[:64]})
        return key

    # ------------------------------------------------------------------ commands

    def create_key(
        self,
        *,
        account: str,
        label: str,
        scopes: Iterable[Scope],
        expires_ms: int | None,
        now_ms: int,
    ) -> IssuedKey:
        """Issue a key for ``account``. Raises ``InvalidArgument`` for a bad account name,
        label (1-64 printable characters), scope list (the ``operator`` scope belongs to the
        ``operator`` account alone, and its keys have no other) or an expiry not in the
        future."""
        check_account_name(account)
        if (
            not isinstance(label, str)
            or not 0 < len(label) <= _LABEL_MAX
            or not label.isprintable()
        ):
            raise InvalidArgument(
                f"label must be 1-{_LABEL_MAX} printable characters", {"field": "label"}
            )
        chosen = _check_scopes(scopes)
        _check_scope_owner(account, chosen)
        if expires_ms is not None and expires_ms <= now_ms:
            raise InvalidArgument("expiry must be in the future", {"field": "expires_in_s"})
        return self._issue(
            account=account,
            label=label,
            scopes=chosen,
            version=1,
            expires_ms=expires_ms,
            now_ms=now_ms,
        )

    def _issue(
        self,
        *,
        account: str,
        label: str,
        scopes: tuple[Scope, ...],
        version: int,
        expires_ms: int | None,
        now_ms: int,
    ) -> IssuedKey:
        key_id = self._new_key_id()
        if key_id in self._keys:
            raise RuntimeError(f"key id {key_id!r} issued twice")
        self._emit(
            KeyCreated(
                key_id=key_id,
                account=account,
                label=label,
                scopes=scopes,
                version=version,
                expires_ms=expires_ms,
                time_ms=now_ms,
            )
        )
        return IssuedKey(self._keys[key_id].view(None), self.secret_of(key_id, version))

    def rotate_key(self, *, account: str, key_id: str, grace_ms: int, now_ms: int) -> IssuedKey:
        """Issue the successor of ``account``'s active key ``key_id`` (same label and scopes,
        version + 1, the same lifetime if it had one) and make the old key expire
        ``grace_ms`` from now (or earlier, if it already would). Raises ``NotFound`` (no such
        active key of this account), ``InvalidArgument`` (negative grace)."""
        old = self._own_active(account, key_id, now_ms)
        if grace_ms < 0:
            raise InvalidArgument("grace must not be negative", {"field": "grace_s"})
        lifetime = None if old.expires_ms is None else old.expires_ms - old.created_ms
        issued = self._issue(
            account=account,
            label=old.label,
            scopes=old.scopes,
            version=old.version + 1,
            expires_ms=None if lifetime is None else now_ms + lifetime,
            now_ms=now_ms,
        )
        ends = now_ms + grace_ms
        if old.expires_ms is None or ends < old.expires_ms:
            self._emit(KeyExpirySet(key_id=old.key_id, expires_ms=ends, time_ms=now_ms))
        return issued

    def revoke_key(self, *, account: str, key_id: str, now_ms: int) -> KeyView:
        """End ``account``'s active key ``key_id`` now. Raises ``NotFound``."""
        self._own_active(account, key_id, now_ms)
        self._emit(KeyRevoked(key_id=key_id, time_ms=now_ms))
        return self._keys[key_id].view(self._live_used.get(key_id))

    def note_used(self, key_id: str, *, now_ms: int) -> None:
        """Record (in memory only) that ``key_id`` just authenticated."""
        if key_id in self._keys:
            self._live_used[key_id] = now_ms

    def use_due(self, key_id: str, *, now_ms: int) -> bool:
        """Whether ``persist_used`` would emit: the journaled last use is a minute old."""
        key = self._keys.get(key_id)
        if key is None or key.revoked_ms is not None:
            return False
        return key.last_used_ms is None or now_ms - key.last_used_ms >= self._used_interval_ms

    def persist_used(self, key_id: str, *, now_ms: int) -> None:
        """Journal ``key_id``'s last use if ``use_due``; otherwise do nothing."""
        if self.use_due(key_id, now_ms=now_ms):
            self._emit(KeyUsed(key_id=key_id, time_ms=now_ms))

    # ------------------------------------------------------------------ idempotency

    def recall(self, record_key: RecordKey, *, now_ms: int) -> Recorded | None:
        """The recorded first answer for (key, request id, index), if younger than the TTL."""
        return self._requests.get(record_key, now_ms=now_ms)

    def remember(
        self, record_key: RecordKey, *, method: str, digest: str, result: bytes, now_ms: int
    ) -> None:
        """Record the first answer of a call (run this in the command that made the change,
        so both are journaled together). ``result`` must hold no secret."""
        key_id, request_id, index = record_key
        self._emit(
            RequestRecorded(
                key_id=key_id,
                request_id=request_id,
                index=index,
                method=method,
                digest=digest,
                result=result,
                time_ms=now_ms,
            )
        )

    # ------------------------------------------------------------------ snapshots

    def blank(self) -> KeyRing:
        """A key ring with this one's master key and settings and no key (see
        ``EventSourced``)."""
        return KeyRing(
            master_key=self._master_key,
            new_key_id=self._new_key_id,
            used_interval_ms=self._used_interval_ms,
            idempotency_ttl_ms=self._idempotency_ttl_ms,
        )

    def export_state(self) -> KeyRingState:
        """The durable state (see ``EventSourced``); live last-used times are not in it."""
        records, order = self._requests.export_state()
        return KeyRingState(
            keys=[k.view(None) for k in self._keys.values()],
            requests=[
                RequestRecorded(
                    key_id=key[0],
                    request_id=key[1],
                    index=key[2],
                    method=r.method,
                    digest=r.digest,
                    result=r.result,
                    time_ms=r.time_ms,
                )
                for key, r in records
            ],
            prune_queue=[(time_ms, *key) for time_ms, key in order],
        )

    def import_state(self, state: KeyRingState) -> None:
        """Become the key ring that exported ``state``. Raises ``RuntimeError`` on a key ring
        that has keys already."""
        if self._keys:
            raise RuntimeError("import_state needs a fresh key ring")
        for saved in state.keys:
            key = _Key(
                KeyCreated(
                    key_id=saved.key_id,
                    account=saved.account,
                    label=saved.label,
                    scopes=saved.scopes,
                    version=saved.version,
                    expires_ms=saved.expires_ms,
                    time_ms=saved.created_ms,
                )
            )
            key.revoked_ms = saved.revoked_ms
            key.last_used_ms = saved.last_used_ms
            self._keys[key.key_id] = key
            self._keys_of.setdefault(key.account, []).append(key)
        self._requests.import_state(
            [
                (
                    (r.key_id, r.request_id, r.index),
                    Recorded(r.method, r.digest, r.result, r.time_ms),
                )
                for r in state.requests
            ],
            [
                (t, (key_id, request_id, index))
                for t, key_id, request_id, index in state.prune_queue
            ],
        )

    # ------------------------------------------------------------------ apply

    def apply(self, event: KeyEvent) -> None:
        """Fold one event into the state (deterministic)."""
        match event:
            case KeyCreated():
                key = _Key(event)
                self._keys[key.key_id] = key
                self._keys_of.setdefault(key.account, []).append(key)
            case KeyExpirySet():
                self._keys[event.key_id].expires_ms = event.expires_ms
            case KeyRevoked():
                self._keys[event.key_id].revoked_ms = event.time_ms
                self._requests.drop_key(event.key_id)
            case KeyUsed():
                self._keys[event.key_id].last_used_ms = event.time_ms
            case RequestRecorded():
                self._requests.put(
                    (event.key_id, event.request_id, event.index),
                    Recorded(event.method, event.digest, event.result, event.time_ms),
                )
