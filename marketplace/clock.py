"""The node's one clock: market time for everything the market does, wall time for signing.

Theory of operation
-------------------
A node has exactly one ``Clock`` and hands the same object to every part that reads the time:
the engine (event and snapshot times) and through it the market scheduler (settlements, order
ends, rebalances), the Stratum bridges (jobs, the emulated chain) and servers (share times,
vardiff, deadlines), and the API. It gives two readings:

- ``now_ms()``, market time: every time in the market, the journal, Stratum and the API's
  objects. Today it is the wall clock. control.md's market time (the wall clock plus a
  journaled offset that only grows) changes this method and nothing else.
- ``wall_ms()``, the system clock: request signing alone reads it (a signed request's
  ``X-Time`` is checked against it, and ``server.time`` answers it), because clients sign with
  their own wall clocks and must keep working whatever market time does.

Tests give the node a subclass (a manual clock) so that one object drives the engine, the
bridges and the API together.
"""

from __future__ import annotations

import time


class Clock:
    """Milliseconds since the epoch, as market time and as wall time (see the module doc)."""

    def wall_ms(self) -> int:
        """The system clock: what signed requests are checked against."""
        return time.time_ns() // 1_000_000

    def now_ms(self) -> int:
        """Market time: what every event, job, share and API object is stamped with."""
        return self.wall_ms()
