"""kill -9 under share load: every share a miner saw acknowledged is journaled exactly once.

A node process (``node.py``: journal with synchronous=FULL + engine + scheduler + bridge +
Stratum server) serves a few connections that submit valid shares at a tiny difficulty. Each
share is submitted under its own worker name (authorized on the same connection just before),
so the journal's ``ShareRecorded.worker`` names exactly one submission. The node is killed with
SIGKILL mid-load and restarted on the same database (a SQLite file, then a PostgreSQL one); the
restarted node takes new shares; the database, replayed here, must hold every acknowledged
share exactly once and reconcile.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import trio

from marketplace.core.fleet import Fleet
from marketplace.core.views import MarketViews

from .killcheck import check_charges, check_exactly_once, journal_shares, share_after_restart
from .miner import RawMiner
from .node import PRICE, TINY

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 4
KILL_AFTER_ACKS = 60


async def start_node(db: str, tmp: Path) -> tuple[trio.Process, int]:
    port_file = tmp / "port"
    port_file.unlink(missing_ok=True)
    proc = await trio.lowlevel.open_process(
        [
            *(sys.executable, "-m", "tests.marketplace_io.node", "--db", db),
            *("--port-file", str(port_file), "--synchronous", "FULL"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(tmp / "node.log").open("ab"),
    )
    assert proc.stdout is not None
    line = b""
    with trio.fail_after(15):
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some(64)
            assert chunk, f"node exited: {(tmp / 'node.log').read_text()[-2000:]}"
            line += chunk
    port = int(line.split()[1])
    assert int(port_file.read_text()) == port
    return proc, port


async def load(
    port: int, *, prefix: str, acked: set[str], submitted: set[str], enough: trio.Event
) -> None:
    """One connection submitting shares, each under a fresh worker name, until the node dies."""
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        miner = RawMiner(stream, timeout=10)
        await miner.login(f"seller.{prefix}")
        for i in range(400):
            name = f"{prefix}s{i}"
            assert await miner.call("mining.authorize", [f"seller.{name}", "x"]) is True
            submitted.add(name)
            if await miner.submit(f"seller.{name}") is True:
                acked.add(name)
                if len(acked) >= KILL_AFTER_ACKS:
                    enough.set()
    except (EOFError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the node was killed under us


@pytest.mark.slow
async def test_acknowledged_shares_survive_kill_9_exactly_once(
    journal_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = journal_db
    monkeypatch.setenv("HASHMARKET_MASTER_KEY", "ef" * 32)  # the node's, on either backend
    acked: set[str] = set()
    submitted: set[str] = set()
    with trio.fail_after(30):
        proc, port = await start_node(db, tmp_path)
        try:
            enough = trio.Event()
            async with trio.open_nursery() as nursery:
                for k in range(CONNECTIONS):
                    nursery.start_soon(
                        lambda p=f"k{k}": load(
                            port, prefix=p, acked=acked, submitted=submitted, enough=enough
                        )
                    )
                await enough.wait()
                proc.send_signal(signal.SIGKILL)  # mid-load: shares are in flight
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert len(acked) >= KILL_AFTER_ACKS

        # Restart on the same database: it restores and takes new shares.
        proc, port = await start_node(db, tmp_path)
        try:
            await share_after_restart(port)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()

        shares, market = await journal_shares(db)
    names = check_exactly_once(shares, acked=acked, submitted=submitted)
    # Only one buyer order existed, seeded once (the restart did not seed again).
    orders = MarketViews(market, Fleet(config=market.config)).list_orders(account="buyer")
    assert len(orders) == 1
    order = orders[0]
    assert len([s for s in shares if s.accepted and s.order_id == order.id]) == len(names)
    value = Fraction(TINY) * PRICE * 2**32 / (10**6 * 86_400)
    check_charges(market, shares, buyer="buyer", order_id=order.id, value=value)
