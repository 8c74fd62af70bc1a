"""A standby market: follow the active market's journal, take over the moment it is gone.

Theory of operation
-------------------
Only one market writes a database: the one whose journal writer holds the database's lock
(``storage.store``: a PostgreSQL advisory lock, or ``<db>.lock`` for a SQLite file). A market
started with ``serve --standby`` on the same ``--db`` restores its components from the journal
as any market does, and then, holding no lock and opening no port, loops every ``poll_s``:

1. try to open the journal's writer (``Journal.open``). ``NodeBusy``: the active market is
   alive, so
2. apply the events it committed since the last look (``Engine.catch_up``) and wait.

When the active market dies its lock goes with it (its PostgreSQL session ends, its ``flock``
is released), the next try gets the lock, and from then on nobody else can write: one last
``catch_up`` applies whatever the old market committed after our last look, so memory holds
every event it ever acknowledged, and the node goes on to bind its ports and serve as an
active market (``assembly.run_node``). The takeover takes one poll, a replay of the tail and
the listeners' start: well under the 5 s the spec allows.

A store that cannot be read or opened meanwhile (the database server restarting) is logged and
tried again at the next poll: a standby has nothing to refuse, it only waits.
"""

from __future__ import annotations

import time

import structlog
import trio

from marketplace.engine import Engine
from marketplace.storage import Journal, NodeBusy, StorageFault

log = structlog.get_logger("marketplace.standby")

#: How often a standby tries the lock and reads the journal's new events.
POLL_S = 0.2


async def follow_until_active(engine: Engine, journal: Journal, *, poll_s: float = POLL_S) -> int:
    """Restore ``engine``'s components from ``journal`` (not open), follow it until this
    process holds the database's lock, and return once memory holds every stored event with
    ``journal`` open (see the module doc); how many events were applied in all.

    Raises as ``Engine.restore``, and as ``Journal.open`` except ``NodeBusy`` and
    ``StorageFault`` while following, which are waited out.
    """
    applied = await engine.restore()
    log.info("standby.following", db=journal.name, events=applied, seq=engine.durable_seq)
    while True:
        try:
            await journal.open()
        except NodeBusy:
            applied += await _catch_up(engine, poll_s=poll_s)
            await trio.sleep(poll_s)
            continue
        except StorageFault as fault:
            log.warning("standby.store_unavailable", cause=fault.cause)
            await trio.sleep(poll_s)
            continue
        break
    started = time.perf_counter()
    try:
        # The lock is ours: nobody writes now, so this reads the journal to its end.
        applied += await engine.catch_up()
    except BaseException:
        with trio.CancelScope(shield=True):
            await journal.close()
        raise
    log.warning(
        "standby.active",
        db=journal.name,
        seq=engine.durable_seq,
        catch_up_ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return applied


async def _catch_up(engine: Engine, *, poll_s: float) -> int:
    """``engine.catch_up()``, tried again at every poll while the store cannot be read."""
    while True:
        try:
            return await engine.catch_up()
        except StorageFault as fault:
            log.warning("standby.store_unavailable", cause=fault.cause)
            await trio.sleep(poll_s)
