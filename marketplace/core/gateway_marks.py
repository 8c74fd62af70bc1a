"""Which gateway share ids the market took: each id once, across reconnects, restarts and a
standby's takeover.

Theory of operation
-------------------
A gateway numbers the shares it sends in its incarnation (``stratum.gateway``): the id of a
share is (gateway id, incarnation, number). After a lost link it sends again, unchanged, every
batch it has no answer for, and the market that answers may be the same one, a restarted one or
a standby that took over. So what the market took is durable state, journaled in the same
command as the shares (``SharesTaken``: a batch's first number and its count), and folded here
into ranges per incarnation; a standby folds the same events while it follows the journal. A
batch whose ids were all taken is answered as durable again and recorded nothing.

Batches of one link may be recorded out of order (several commands in flight), so the state is
a sorted list of disjoint ranges, merged where they touch: one range in the usual case. Only
the newest ``MAX_INCARNATIONS`` incarnations are kept (a gateway's earlier incarnations died
with their process and send nothing again).
"""

from __future__ import annotations

import bisect
from typing import Any, ClassVar, Final

import msgspec

from marketplace.core.eventsourced import EventSourced

MAX_INCARNATIONS: Final = 1024


class SharesTaken(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="taken"):
    """Shares ``first`` .. ``first + count - 1`` of a gateway incarnation were recorded."""

    gateway: str
    incarnation: str
    first: int
    count: int


class GatewayMarksState(msgspec.Struct, frozen=True, kw_only=True):
    """The component's durable state, for snapshots: ranges (first, last) per incarnation,
    oldest incarnation first."""

    taken: list[tuple[str, list[tuple[int, int]]]]


def _key(gateway: str, incarnation: str) -> str:
    return f"{gateway}/{incarnation}"


class GatewayMarks(EventSourced[SharesTaken]):
    """The share ids taken from each gateway incarnation (see the module doc)."""

    component: ClassVar[str] = "gateways"
    event_type: ClassVar[Any] = SharesTaken
    state_type: ClassVar[Any] = GatewayMarksState

    def __init__(self) -> None:
        super().__init__()
        self._taken: dict[str, list[tuple[int, int]]] = {}

    def untaken(self, *, gateway: str, incarnation: str, first: int, count: int) -> list[int]:
        """The offsets in ``0 .. count - 1`` of the ids ``first + offset`` not taken yet."""
        ranges = self._taken.get(_key(gateway, incarnation))
        if not ranges:
            return list(range(count))
        return [i for i in range(count) if not _inside(ranges, first + i)]

    def take(self, *, gateway: str, incarnation: str, first: int, count: int) -> None:
        """Command: ids ``first`` .. ``first + count - 1`` are taken (with the shares, in the
        same command). Raises ``ValueError`` for a negative first id or a count below 1 (a
        bug: the link checks what a gateway sends)."""
        if first < 0 or count < 1:
            raise ValueError("share ids start at 0 and a batch has at least one")
        self._emit(SharesTaken(gateway=gateway, incarnation=incarnation, first=first, count=count))

    def apply(self, event: SharesTaken) -> None:
        """Fold one event into the state (deterministic)."""
        key = _key(event.gateway, event.incarnation)
        ranges = self._taken.pop(key, [])
        self._taken[key] = _merge(ranges, event.first, event.first + event.count - 1)
        while len(self._taken) > MAX_INCARNATIONS:
            del self._taken[next(iter(self._taken))]

    def blank(self) -> GatewayMarks:
        """Nothing taken (see ``EventSourced``)."""
        return GatewayMarks()

    def export_state(self) -> GatewayMarksState:
        """The durable state (see ``EventSourced``)."""
        return GatewayMarksState(taken=[(k, list(v)) for k, v in self._taken.items()])

    def import_state(self, state: GatewayMarksState) -> None:
        """Become the component that exported ``state``. Raises ``RuntimeError`` once an
        event was applied."""
        if self._taken:
            raise RuntimeError("import_state needs fresh gateway marks")
        self._taken = {key: [tuple(r) for r in ranges] for key, ranges in state.taken}  # type: ignore[misc]


def _inside(ranges: list[tuple[int, int]], seq: int) -> bool:
    at = bisect.bisect_right(ranges, (seq, float("inf"))) - 1
    return at >= 0 and ranges[at][0] <= seq <= ranges[at][1]


def _merge(ranges: list[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """``ranges`` with ``first .. last`` added, sorted, disjoint, touching ones merged."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted([*ranges, (first, last)]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
