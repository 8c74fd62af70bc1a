"""The node's one clock: market time for everything the market does, wall time for signing.

Theory of operation
-------------------
A node has exactly one ``Clock`` and hands the same object to every part that reads the time:
the engine (event and snapshot times) and through it the market scheduler (settlements, order
ends, rebalances), the Stratum bridges (jobs, the emulated chain) and servers (share times,
vardiff, deadlines), and the API. It gives two readings:

- ``wall_ms()``, the system clock: request signing alone reads it (a signed request's
  ``X-Time`` is checked against it, and ``server.time`` answers it as ``time_ms``), because
  clients sign with their own wall clocks and must keep working whatever market time does.
- ``now_ms()``, market time: every time in the market, the journal, Stratum and the API's
  objects. It is the wall clock plus an offset that only grows (control.md, "Market time"):
  the offset is the state of the journaled ``MarketTime`` component, which the clock follows
  (``follow``), so a restarted node keeps the market time it had.

An operator's advance (``marketplace.control.advance``) moves market time in steps: ``pin``
holds it at each due time while that step's work runs (so every event of the step carries
exactly that time, however long the step takes in wall time), and ``release`` lets it run again
from the offset the advance journaled. Every forward move is told to the jump listeners
(``add_jump_listener``) with its size: the parts that measure a live peer (a Stratum session's
idle timer and vardiff, the fleet's speed estimates) shift their own timers by it, since a jump
of market time is not time a connected miner was silent.

Tests give the node a subclass (a manual clock) so that one object drives the engine, the
bridges and the API together; the offset and pins work the same on top of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from marketplace.core.market_time import MarketTime

#: Called with how far market time just jumped forward, in milliseconds (> 0).
JumpListener = Callable[[int], None]


class Clock:
    """Milliseconds since the epoch, as market time and as wall time (see the module doc)."""

    # Class-level defaults: subclasses made in tests need not call ``__init__``.
    _timeline: MarketTime | None = None
    _pinned_ms: int | None = None
    _listeners: tuple[JumpListener, ...] = ()

    def wall_ms(self) -> int:
        """The system clock: what signed requests are checked against."""
        return time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        """Market time: what every event, job, share and API object is stamped with."""
        pinned = self._pinned_ms
        if pinned is not None:
            return pinned
        return self.wall_ms() + self.offset_ms

    @property
    def offset_ms(self) -> int:
        """Market time minus wall time (the followed ``MarketTime``'s; 0 without one)."""
        timeline = self._timeline
        return 0 if timeline is None else timeline.offset_ms

    @property
    def pinned(self) -> bool:
        """Whether an advance holds market time still (``pin``)."""
        return self._pinned_ms is not None

    def follow(self, timeline: MarketTime) -> None:
        """Read the offset from ``timeline`` from now on (the node's restored component)."""
        self._timeline = timeline

    def add_jump_listener(self, listener: JumpListener) -> None:
        """Call ``listener(delta_ms)`` whenever market time jumps forward (``pin``)."""
        self._listeners = (*self._listeners, listener)

    def remove_jump_listener(self, listener: JumpListener) -> None:
        """Stop calling ``listener``. Raises ``ValueError`` if it was not added."""
        listeners = list(self._listeners)
        listeners.remove(listener)
        self._listeners = tuple(listeners)

    def pin(self, time_ms: int) -> None:
        """Hold market time at ``time_ms`` until the next ``pin`` or ``release``, and tell the
        jump listeners how far it moved. Raises ``ValueError`` for a time before now (market
        time never goes back)."""
        now = self.now_ms()
        if time_ms < now:
            raise ValueError(f"market time cannot go back from {now} to {time_ms}")
        self._pinned_ms = time_ms
        if time_ms > now:
            for listener in self._listeners:
                listener(time_ms - now)

    def release(self) -> None:
        """Let market time run again from the followed offset (an advance journaled it so
        that no time is lost: the market time reached is never behind the pin)."""
        self._pinned_ms = None
