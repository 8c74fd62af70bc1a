"""The garbage collector's settings for a process that serves Stratum shares.

CPython's cyclic collector runs a young collection every 700 net container allocations and
moves what survives it to an older generation, whose collections walk every object there. On
the share path almost nothing is garbage in a cycle, but much lives a little while: a share's
coroutine frames, outcome, event and journal ticket wait across a commit (milliseconds, tens of
thousands of allocations on a busy node), so they survive young collections, are promoted,
and make the old generations' collections frequent and long. With 1,000 connections that was
a tenth to a third of the server's CPU (``bench/stratum_shares.py``: a node's CPU per 1,000
shares fell from about 280 ms to 200 ms with these settings).

``tune_gc`` freezes what the program built before serving (modules, configuration: never
garbage, so never walked again) and makes young collections rare enough that a share's objects
die before one comes. Cycles are still collected (connections that closed, tracebacks), only
later; the old generations keep their thresholds and CPython's rule that a full collection
waits until a quarter of the long-lived objects are new.
"""

from __future__ import annotations

import gc
from typing import Final

#: Net container allocations between young collections (CPython's default: 700).
YOUNG_THRESHOLD: Final = 50_000


def tune_gc() -> None:
    """Freeze every object that exists now and raise the young generation's threshold; call it
    once, after start-up and before serving."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
