"""SIGINT on the real ``hashmarket serve``: the node shuts down in order, and its log says so.

The order the assembly owns: stop accepting (Stratum and API), tell the miners (each Stratum
server's own graceful shutdown: ``stratum.shutting_down``, every connection closed with reason
``shutdown``, ``stratum.stopped``), let in-flight work finish, snapshot, commit and close the
journal, exit 0.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

from .test_e2e import account_create, serve

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


def log_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def first(events: list[dict[str, Any]], name: str, **match: Any) -> int:
    """The index of the first event ``name`` with the ``match`` fields; fails if none."""
    for index, event in enumerate(events):
        if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
            return index
    raise AssertionError(f"no {name} {match or ''} in the log: {[e['event'] for e in events]}")


def test_sigint_stops_accepting_tells_miners_snapshots_and_exits_zero(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with serve(tmp_path, db, "--log-level", "info", tag="node") as (proc, ports):
        # Journaled through the node's inbox: the shutdown snapshot has something to hold.
        account_create("alice", db)
        port = ports["stratum"]["sha256d"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as miner:
            miner.sendall(SUBSCRIBE + AUTHORIZE)
            assert b"mining.notify" in read_until(miner, b"mining.notify", timeout=10)
            proc.send_signal(signal.SIGINT)
            # The server closes the connection itself (after its last lines, if any).
            rest = read_until(miner, b"\x00never", timeout=15)
            assert b"\x00never" not in rest
            assert proc.wait(timeout=20) == 0
        with socket.socket() as late:  # nothing listens any more
            late.settimeout(2)
            assert late.connect_ex(("127.0.0.1", port)) != 0
    events = log_events(tmp_path / "node.log")
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
