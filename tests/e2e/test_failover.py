"""Failover (cluster.md): an active market and a standby on one PostgreSQL database, miners
and an API client on the same ports; SIGKILL the active market mid-load. The standby serves
within 5 s, every share a miner saw acknowledged is in the journal exactly once, every
acknowledged deposit is applied once, and the miners reconnect and keep mining; through two
gateways the miners keep their connections and mine on. (The times are the spec's bound, not a
benchmark: ``bench/failover.py`` measures them.)"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import trio

from marketplace.core.invariants import check_market

from .failover import Markets, run_failover

MINERS = 4


@pytest.mark.slow
async def test_the_standby_takes_over_and_nothing_acknowledged_is_lost(
    pg_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(240):
        seen = await run_failover(pg_url, tmp_path, miners=MINERS, before=40, after=40)
    assert seen.crashes == []
    assert seen.serving_after_s < 5.0, seen.serving_after_s
    assert seen.lost == set(), "acknowledged shares lost in the failover"
    assert seen.doubled == 0
    assert set(seen.journaled) <= seen.submitted
    # Every miner came back to the same port and mined on the standby.
    assert len(seen.acked_after_kill) == MINERS
    # Each deposit was retried with its request id until answered: applied exactly once.
    assert seen.deposits_acked == seen.deposits_sent
    assert seen.deposits_journaled == len(seen.deposits_acked) > 0
    assert seen.market is not None
    check_market(seen.market)


@pytest.mark.slow
async def test_miners_on_two_gateways_keep_mining_through_a_failover(
    pg_url: str, tmp_path: Path
) -> None:
    with trio.fail_after(240):
        seen = await run_failover(pg_url, tmp_path, miners=MINERS, before=40, after=40, gateways=2)
    assert seen.crashes == []
    assert seen.serving_after_s < 5.0, seen.serving_after_s
    assert seen.first_ack_after_s < 5.0 + 2.0, seen.first_ack_after_s
    assert seen.lost == set(), "acknowledged shares lost in the failover"
    assert seen.doubled == 0
    assert set(seen.journaled) <= seen.submitted
    # Every miner mined on through the standby without ever reconnecting.
    assert len(seen.acked_after_kill) == MINERS
    assert seen.connects == {f"m{k}": 1 for k in range(MINERS)}
    assert seen.market is not None
    check_market(seen.market)


@pytest.mark.slow
async def test_one_active_market_and_a_standby_that_stops_on_a_signal(
    pg_url: str, tmp_path: Path
) -> None:
    markets = Markets(pg_url, tmp_path)
    try:
        with trio.fail_after(60):
            await markets.start("active")
            # A second active market on the database is refused: it is served.
            second = await trio.run_process(
                [sys.executable, "-m", "marketplace", "serve", *markets.flags()],
                capture_stderr=True,
                check=False,
                cwd=tmp_path,
            )
            assert second.returncode == 1
            assert b"served by a running market" in second.stderr
            standby = await markets.start("standby", standby=True)
            # Following, it holds no port and no lock, and a signal stops it at once.
            standby.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                assert await standby.wait() == 0
            assert not markets.serving("standby")
    finally:
        await markets.kill_all()
