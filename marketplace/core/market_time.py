"""Market time as a durable component: the offset of the market's clock from the wall clock.

Theory of operation
-------------------
The market runs on its own clock, the wall clock plus an offset that starts at 0 and only
grows (control.md, "Market time"). An operator moves it forward (``admin.time.advance``); the
offset must survive a restart, or a restarted node would go back in time and find its own
events in the future. So the offset is the state of this small event-sourced component
(``component = "clock"``), journaled by the engine beside the market: each ``TimeAdvanced``
names the new offset and the market time it was reached at, and replaying them gives the
offset back. Nothing here reads a clock: the driver (``marketplace.clock.Clock``) adds the
offset to the wall time it reads, and the advance (``marketplace.control.advance``) computes
the offset it records.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from marketplace.core.errors import InvalidArgument
from marketplace.core.eventsourced import EventSourced


class TimeAdvanced(msgspec.Struct, frozen=True, kw_only=True, tag_field="event", tag="advanced"):
    """Market time was moved forward: from now on it is the wall clock plus ``offset_ms``;
    ``time_ms`` is the market time the advance reached."""

    offset_ms: int
    time_ms: int


class MarketTimeState(msgspec.Struct, frozen=True, kw_only=True):
    """The component's durable state, for snapshots."""

    offset_ms: int
    time_ms: int


class MarketTime(EventSourced[TimeAdvanced]):
    """The journaled offset of market time from the wall clock (see the module doc)."""

    component: ClassVar[str] = "clock"
    event_type: ClassVar[Any] = TimeAdvanced
    state_type: ClassVar[Any] = MarketTimeState

    def __init__(self) -> None:
        super().__init__()
        self._offset_ms = 0
        self._time_ms = 0

    @property
    def offset_ms(self) -> int:
        """Market time minus wall time, in milliseconds (0 until the first advance)."""
        return self._offset_ms

    @property
    def time_ms(self) -> int:
        """The market time the latest advance reached (0: never advanced)."""
        return self._time_ms

    def advance(self, *, offset_ms: int, time_ms: int) -> None:
        """Command: market time is now the wall clock plus ``offset_ms``, having reached
        ``time_ms``. Emits nothing when neither moves forward. Raises ``InvalidArgument`` for an
        offset smaller than the current one or a time before the latest advance's (market time
        never goes back)."""
        if offset_ms < self._offset_ms or time_ms < self._time_ms:
            raise InvalidArgument(
                "market time only moves forward",
                {"offset_ms": self._offset_ms, "time_ms": self._time_ms},
            )
        if offset_ms == self._offset_ms and time_ms == self._time_ms:
            return
        self._emit(TimeAdvanced(offset_ms=offset_ms, time_ms=time_ms))

    def apply(self, event: TimeAdvanced) -> None:
        """Fold one event into the state (deterministic)."""
        self._offset_ms = max(self._offset_ms, event.offset_ms)
        self._time_ms = max(self._time_ms, event.time_ms)

    def blank(self) -> MarketTime:
        """Market time as a new node starts it, offset 0 (see ``EventSourced``)."""
        return MarketTime()

    def export_state(self) -> MarketTimeState:
        """The durable state (see ``EventSourced``)."""
        return MarketTimeState(offset_ms=self._offset_ms, time_ms=self._time_ms)

    def import_state(self, state: MarketTimeState) -> None:
        """Become the component that exported ``state``. Raises ``RuntimeError`` once an
        event was applied."""
        if self._offset_ms or self._time_ms:
            raise RuntimeError("import_state needs a fresh market time")
        self._offset_ms = state.offset_ms
        self._time_ms = state.time_ms
