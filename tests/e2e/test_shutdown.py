"""SIGINT on the real ``hashmarket serve``: the node shuts down in order, and its log says so.

The order the assembly owns: stop accepting (Stratum and API), tell the miners (each Stratum
server's own graceful shutdown: ``stratum.shutting_down``, every connection closed with reason
``shutdown``, ``stratum.stopped``), let in-flight work finish, snapshot, commit and close the
journal, exit 0.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from marketplace.testing import Market

from .test_e2e import account_create

SUBSCRIBE = b'{"id": 1, "method": "mining.subscribe", "params": ["shutdown-test/1"]}\n'
AUTHORIZE = b'{"id": 2, "method": "mining.authorize", "params": ["alice.rig", "x"]}\n'


def read_until(sock: socket.socket, marker: bytes, *, timeout: float) -> bytes:
    """Bytes from ``sock`` until ``marker`` appears or the peer closes (bounded in time)."""
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def first(events: list[dict[str, Any]], name: str, **match: Any) -> int:
    """The index of the first event ``name`` with the ``match`` fields; fails if none."""
    for index, event in enumerate(events):
        if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
            return index
    raise AssertionError(f"no {name} {match or ''} in the log: {[e['event'] for e in events]}")


def stop_with_a_miner(market: Market) -> int:
    """SIGINT to ``market`` while a miner is connected; the market exits 0 and the miner's
    connection ends (the log says by whom). Returns the Stratum port."""
    # Journaled through the node's inbox: the shutdown snapshot has something to hold.
    account_create("alice", market.db)
    port = market.stratum_port("sha256d")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as miner:
        miner.sendall(SUBSCRIBE + AUTHORIZE)
        assert b"mining.notify" in read_until(miner, b"mining.notify", timeout=10)
        assert market.stop(signum=signal.SIGINT) == 0
        rest = read_until(miner, b"\x00never", timeout=15)
        assert b"\x00never" not in rest
    return port


def test_sigint_stops_accepting_tells_miners_snapshots_and_exits_zero(hashmarket: Market) -> None:
    port = stop_with_a_miner(hashmarket)
    with socket.socket() as late:  # nothing listens any more
        late.settimeout(2)
        assert late.connect_ex(("127.0.0.1", port)) != 0
    events = hashmarket.events()
    stopping = first(events, "node.stopping", reason="SIGINT")
    shutting_down = first(events, "stratum.shutting_down", connections=1)
    closed = first(events, "conn.closed", worker="alice.rig")
    assert events[closed]["reason"] == "shutdown"  # not peer_closed: the server closed it
    assert not [e for e in events if e["event"] == "conn.closed" and e["reason"] == "peer_closed"]
    stopped = [i for i, e in enumerate(events) if e["event"] == "stratum.stopped"]
    assert len(stopped) == 2  # both algorithms' servers ran their own shutdown
    snapshot = first(events, "engine.snapshot")
    journal_closed = first(events, "journal.closed")
    node_stopped = first(events, "node.stopped")
    assert stopping < shutting_down < closed < max(stopped) < snapshot
    assert snapshot < journal_closed < node_stopped
    assert node_stopped == len(events) - 1


def test_sigint_with_gateways_stops_them_first(tmp_path: Path) -> None:
    """``serve --gateways 2``: the children stop first (each its own Stratum shutdown, its
    miners told), then the market snapshots and closes its journal; no child is left."""
    with Market(directory=tmp_path, gateways=2) as market:
        pids = market.gateway_pids
        stop_with_a_miner(market)
        events = market.events()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    stopping = first(events, "node.stopping", reason="SIGINT")
    shutting_down = first(events, "stratum.shutting_down", connections=1)
    closed = first(events, "conn.closed", worker="alice.rig")
    assert events[closed]["reason"] == "shutdown"
    gateways_stopped = [i for i, e in enumerate(events) if e["event"] == "gateway.stopped"]
    assert len(gateways_stopped) == 2
    snapshot = first(events, "engine.snapshot")
    assert stopping < shutting_down < closed < max(gateways_stopped) < snapshot
    assert snapshot < first(events, "journal.closed") < first(events, "node.stopped")
