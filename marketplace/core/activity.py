"""The activity log: what happened to each account's security, newest first.

Theory of operation
-------------------
Every call that changes an account's keys, second factor, addresses or money out leaves one
entry (``ActivityRecorded``), emitted by the same command that made the change, so both are
journaled together. Entries have ids from one counter (``before`` pages by id), a market time,
the key that acted (``None`` for the operator), the client's address and a few details; never a
secret, a code or a signature (the component checks the details' names).

Failed authentication with a known key is worth seeing but must not let a flood of bad requests
fill the journal: an ``auth.failed`` entry is written at most once per key and rule per
``AUTH_ENTRY_INTERVAL_MS``. The failures in between are counted in memory and the next entry
says how many it stands for (``detail.count``). When the last entry of a (key, rule) was
written is durable state (the fold keeps it), so a restart does not reopen the gate early;
the in-between count is ephemeral (a restart loses at most a minute's count).

The log keeps the newest ``MAX_ENTRIES_PER_ACCOUNT`` entries of each account in memory and in
snapshots; older ones stay in the journal only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Final

from marketplace.core.security_events import ActivityKind, ActivityRecorded, AuthRule

MAX_ENTRIES_PER_ACCOUNT: Final = 1000
AUTH_ENTRY_INTERVAL_MS: Final = 60_000
MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100


class ActivityLog:
    """Every account's kept activity entries (see the module doc)."""

    def __init__(self) -> None:
        self._entries: dict[str, deque[ActivityRecorded]] = {}
        self.seq = 0
        self._auth_last: dict[tuple[str, str], int] = {}
        self._auth_unlogged: dict[tuple[str, str], int] = {}  # ephemeral

    def entries(
        self, account: str, *, limit: int = DEFAULT_LIMIT, before: int | None = None
    ) -> list[ActivityRecorded]:
        """Up to ``limit`` of ``account``'s entries with ids below ``before``, newest first."""
        found: list[ActivityRecorded] = []
        for entry in reversed(self._entries.get(account, ())):
            if before is not None and entry.id >= before:
                continue
            if len(found) >= limit:
                break
            found.append(entry)
        return found

    # ------------------------------------------------------------------ auth failures

    def auth_entry_due(self, key_id: str, rule: AuthRule, *, now_ms: int) -> bool:
        """Whether a failure of ``rule`` with ``key_id`` at ``now_ms`` gets an entry (none
        for this key and rule in the last interval)."""
        last = self._auth_last.get((key_id, rule.value))
        return last is None or now_ms - last >= AUTH_ENTRY_INTERVAL_MS

    def count_unlogged(self, key_id: str, rule: AuthRule) -> None:
        """One more failure that gets no entry of its own (the next entry counts it)."""
        gate = (key_id, rule.value)
        self._auth_unlogged[gate] = self._auth_unlogged.get(gate, 0) + 1

    def unlogged(self, key_id: str, rule: AuthRule) -> int:
        """Failures counted since the last entry of this key and rule."""
        return self._auth_unlogged.get((key_id, rule.value), 0)

    # ------------------------------------------------------------------ the fold

    def append(self, event: ActivityRecorded) -> None:
        """Fold one entry in (deterministic): keep it, drop the account's oldest beyond the
        cap, and note when an ``auth.failed`` entry was written."""
        self.seq = max(self.seq, event.id)
        kept = self._entries.setdefault(event.account, deque())
        kept.append(event)
        if len(kept) > MAX_ENTRIES_PER_ACCOUNT:
            kept.popleft()
        if event.kind is ActivityKind.AUTH_FAILED and event.key_id is not None:
            rule = str(event.detail.get("rule", ""))
            self._auth_last[(event.key_id, rule)] = event.time_ms
            self._auth_unlogged.pop((event.key_id, rule), None)

    def export(self) -> tuple[list[ActivityRecorded], list[tuple[str, str, int]]]:
        """(every kept entry in id order, when each (key, rule) last got an entry)."""
        kept = sorted((e for log in self._entries.values() for e in log), key=lambda e: e.id)
        return kept, [(key, rule, t) for (key, rule), t in self._auth_last.items()]

    def restore(
        self, entries: Iterable[ActivityRecorded], auth: Iterable[tuple[str, str, int]], seq: int
    ) -> None:
        """Become the log that exported these (on a fresh log)."""
        for entry in entries:
            self._entries.setdefault(entry.account, deque()).append(entry)
        self._auth_last = {(key, rule): t for key, rule, t in auth}
        self.seq = seq
