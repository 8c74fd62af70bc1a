"""Workers in transit: told to reconnect to take another extranonce layout, their place kept
until they come back.

Theory of operation
-------------------
A miner that never sent ``mining.extranonce.subscribe`` cannot take a new extranonce in place:
to move it between layouts (the emulated chain and a buyer's pool, or two pools) the bridge
sends it ``client.reconnect`` and expects it back, resuming its session id in
``mining.subscribe`` as cpuminer does. Meanwhile its place in the fleet is kept (no rebalance
gives it away, no second move follows), and ``Transits`` remembers, by session id, which
worker it was, the order it moves to and the layout it must be given when it subscribes
(``layout_for``, then ``take`` when it authorizes). A worker that does not come back by its
deadline loses its place (``expired``). Pure bookkeeping: the bridge does the fleet and relay
work around it.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.core.model import WorkerKey
from stratum.core.jobs import Layout


@dataclass(eq=False)
class Transit:
    """One worker told to reconnect: who, to which order, with which layout, until when."""

    key: WorkerKey
    order_id: str | None
    layout: Layout | None
    until_ms: int


class Transits:
    """The workers in transit, by session id and by worker (see the module doc)."""

    def __init__(self) -> None:
        self._by_session: dict[bytes, Transit] = {}
        self._session_of: dict[WorkerKey, bytes] = {}
        #: Layouts given at subscribe, by session id, until the connection authorizes.
        self._given: dict[bytes, Layout] = {}

    def __len__(self) -> int:
        return len(self._by_session)

    def begin(
        self,
        session_id: bytes,
        *,
        key: WorkerKey,
        order_id: str | None,
        layout: Layout | None,
        until_ms: int,
    ) -> None:
        """``key`` (the connection with ``session_id``) was told to reconnect."""
        self._by_session[session_id] = Transit(key, order_id, layout, until_ms)
        self._session_of[key] = session_id

    def layout_for(self, session_id: bytes) -> Layout | None:
        """A connection subscribes with ``session_id``: the layout reserved for it (remembered
        until it authorizes: ``given``), or ``None``."""
        transit = self._by_session.get(session_id)
        if transit is None or transit.layout is None:
            return None
        self._given[session_id] = transit.layout
        return transit.layout

    def given(self, session_id: bytes) -> Layout | None:
        """The layout handed to ``session_id`` at subscribe, forgotten now."""
        return self._given.pop(session_id, None)

    def take(self, session_id: bytes) -> Transit | None:
        """The worker resuming ``session_id``, no longer in transit."""
        transit = self._by_session.pop(session_id, None)
        if transit is not None:
            del self._session_of[transit.key]
        return transit

    def of(self, key: WorkerKey) -> Transit | None:
        """``key``'s transit, if it is in one."""
        session_id = self._session_of.get(key)
        return None if session_id is None else self._by_session[session_id]

    def holds(self, key: WorkerKey, session_id: bytes) -> bool:
        """Whether ``key``, on ``session_id``, was told to reconnect."""
        return self._session_of.get(key) == session_id

    def expired(self, now_ms: int) -> list[Transit]:
        """The transits whose deadline passed, removed."""
        late = [sid for sid, t in self._by_session.items() if t.until_ms <= now_ms]
        out = []
        for session_id in late:
            transit = self._by_session.pop(session_id)
            del self._session_of[transit.key]
            self._given.pop(session_id, None)
            out.append(transit)
        return out

    def next_deadline_ms(self) -> int | None:
        """When the earliest transit expires (``None``: none)."""
        return min((t.until_ms for t in self._by_session.values()), default=None)
