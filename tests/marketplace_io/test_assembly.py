"""The single assembly: one node on a temp database, free ports, one injected clock; storage
owns every ``<db>*`` file; operator commands with and without a serving node."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from structlog.testing import capture_logs

from marketplace.accounts import Bootstrap
from marketplace.assembly import Core, Node, run_node, run_offline
from marketplace.clock import Clock
from marketplace.config import NodeConfig
from marketplace.core.events import ShareRecorded
from marketplace.core.market import Market
from marketplace.operator import account_create
from marketplace.storage import Journal, NodeBusy, Storage
from stratum.core.shares import Algorithm
from tests.api.conftest import rpc_body, signed_headers
from tests.clocks import T0, ManualClock

from .miner import RawMiner

TINY = 1e-7
DAY_MS = 86_400_000


class MarketAhead(ManualClock):
    """Market time a day ahead of wall time: what control.md's offset will make of a node."""

    def now_ms(self) -> int:
        return self.wall_ms() + DAY_MS


def settings(db: str | Path, **overrides: Any) -> NodeConfig:
    values: dict[str, Any] = {
        "db": str(db),
        "api_port": 0,
        "sha256d_port": 0,
        "scrypt_port": 0,
        "faucet": True,
        "start_difficulty": TINY,
        "min_difficulty": TINY,
        "log_format": "json",
        "log_level": "warning",
    }
    values.update(overrides)
    return NodeConfig(**values)


@asynccontextmanager
async def serving(
    config: NodeConfig, clock: Clock | None = None, **options: Any
) -> AsyncIterator[Node]:
    """``run_node`` (with ``options``) until the block ends, then its graceful stop (and wait
    for it)."""
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            node: Node = await nursery.start(partial(run_node, config, clock=clock, **options))
        try:
            yield node
        finally:
            node.stop(reason="test over")


class Api:
    """Signed JSON-RPC calls to a node, signed at the time a test chooses."""

    def __init__(self, node: Node, http: httpx.AsyncClient, creds: Bootstrap) -> None:
        self.url = f"http://127.0.0.1:{node.api_port}/rpc"
        self.http = http
        self.creds = creds
        self.nonces = iter(range(1, 1_000))

    async def call(self, method: str, params: Any = None, *, signed_at: int | None = None) -> Any:
        body = rpc_body(method, params)
        headers = {}
        if signed_at is not None:
            headers = signed_headers(
                self.creds, body, now_ms=signed_at, nonce=f"n{next(self.nonces)}"
            )
        with trio.fail_after(10):
            response = await self.http.post(self.url, content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


ORDER = {"algorithm": "sha256d", "type": "standard", "price": "1", "limit": "0", "amount": "0.1"}


async def test_one_clock_drives_the_engine_the_bridges_stratum_and_the_api(
    tmp_path: Path,
) -> None:
    clock = ManualClock(T0)
    async with serving(settings(tmp_path / "m.db"), clock) as node:
        core = node.core
        assert core.engine.clock is clock
        creds = await core.create_account("buyer")
        async with httpx.AsyncClient() as http:
            api = Api(node, http, creds)
            # The API: server.time and the objects it creates.
            assert (await api.call("server.time"))["result"] == {
                "time_ms": T0,
                "market_time_ms": T0,
            }
            clock.advance(5_000)
            await api.call("account.deposit", {"amount": "1"}, signed_at=clock.wall_ms())
            order = (await api.call("order.create", ORDER, signed_at=clock.wall_ms()))["result"]
            assert order["created_ms"] == T0 + 5_000
        # The bridge: the job a miner gets is stamped by the same clock (ntime in seconds).
        clock.advance(60_000)
        stream = await trio.open_tcp_stream("127.0.0.1", node.stratum_ports[Algorithm.SHA256D])
        async with stream:
            miner = RawMiner(stream, timeout=10)
            await miner.login("seller.rig")
            assert int(miner.latest.params[7], 16) == (T0 + 65_000) // 1000
            # The Stratum server: the share's time, journaled by the engine.
            clock.advance(2_000)
            assert await miner.submit("seller.rig") is True
        shares = [
            event
            async for entry in core.journal.replay()
            if entry.component == "market"
            and isinstance(event := Market.decode_event(entry.body), ShareRecorded)
        ]
        assert [s.time_ms for s in shares] == [T0 + 67_000]
        clock.advance(1_000)
    # The engine: the time of the snapshot the node took as it stopped.
    stored = await Journal(tmp_path / "m.db").latest_snapshot()
    assert stored is not None
    assert stored.time_ms == T0 + 68_000


async def test_signing_reads_wall_time_and_the_market_reads_market_time(tmp_path: Path) -> None:
    clock = MarketAhead(T0)
    async with serving(settings(tmp_path / "m.db"), clock) as node:
        creds = await node.core.create_account("buyer")
        async with httpx.AsyncClient() as http:
            api = Api(node, http, creds)
            # Clients sync their signing clock to server.time: that is wall time.
            assert (await api.call("server.time"))["result"] == {
                "time_ms": T0,
                "market_time_ms": T0 + DAY_MS,
            }
            assert (await api.call("account.deposit", {"amount": "1"}, signed_at=T0))["result"]
            early = await api.call("account.balance", signed_at=T0 + DAY_MS)
            assert early["error"]["code"] == 4008  # signed with market time: refused
            assert early["error"]["data"]["server_time_ms"] == T0
            order = (await api.call("order.create", ORDER, signed_at=T0))["result"]
            assert order["created_ms"] == T0 + DAY_MS  # the market's objects: market time
            keys = (await api.call("apikey.list", signed_at=T0))["result"]["keys"]
            assert [k["last_used_ms"] for k in keys] == [T0 + DAY_MS]


async def test_storage_owns_every_db_file(tmp_path: Path) -> None:
    db = tmp_path / "new" / "m.db"  # the folder too is made on first start
    storage = Storage(db)
    config = settings(db)
    async with serving(config) as node:
        assert node.core.storage.path == db
        assert storage.lock_path == tmp_path / "new" / "m.db.lock"
        assert storage.lock_path.read_text() == str(os.getpid())
        assert storage.key_path == tmp_path / "new" / "m.db.key"
        assert stat.S_IMODE(storage.key_path.stat().st_mode) == 0o600
        with sqlite3.connect(db) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"events", "snapshots", "meta", "operator_inbox"} <= tables
        await only_the_node_writes(node, "bob")
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT command, result FROM operator_inbox").fetchall()
        assert [json.loads(command)["name"] for command, _ in rows] == ["bob"]
        assert "secret" not in rows[0][1]
    names = {path.name for path in db.parent.iterdir()}
    assert {"m.db", "m.db.lock", "m.db.key"} <= names
    assert all(name.startswith("m.db") for name in names), names
    # No node now: an operator command opens the database itself (its own trio run: a thread).
    assert await trio.to_thread.run_sync(run_offline, config, _accounts) == ["bob"]
    carol = await trio.to_thread.run_sync(account_create, config, "carol")
    assert carol["account_id"] == "carol"
    assert await trio.to_thread.run_sync(run_offline, config, _accounts) == ["bob", "carol"]


async def only_the_node_writes(node: Node, account: str) -> None:
    """The node holds the database's lock: no second node, no offline command on it; an
    operator command goes through the node's inbox instead (in a thread: it blocks) and
    opens ``account`` with a key whose secret the node derives too."""
    config = node.config
    with pytest.raises(NodeBusy):
        await run_node(config)
    with pytest.raises(NodeBusy):
        await trio.to_thread.run_sync(run_offline, config, _accounts)
    made = await trio.to_thread.run_sync(account_create, config, account)
    assert node.core.keyring.secret_of(made["key_id"], 1) == made["secret"]


async def _accounts(core: Core) -> list[str]:
    await trio.lowlevel.checkpoint()
    return sorted(a for a in ("bob", "carol", "dave") if core.market.has_account(a))


async def test_stop_shuts_down_in_order_and_a_restart_replays_nothing(tmp_path: Path) -> None:
    config = settings(tmp_path / "m.db")
    with capture_logs() as logs:
        async with serving(config) as node:
            await node.core.create_account("buyer")
            port = node.stratum_ports[Algorithm.SHA256D]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            miner = RawMiner(stream, timeout=10)
            await miner.login("seller.rig")
            assert await miner.submit("seller.rig") is True
        with pytest.raises(EOFError):  # the server closed the connection
            await miner.pump()
        await stream.aclose()
    names = [e["event"] for e in logs]
    closed = [i for i, e in enumerate(logs) if e["event"] == "conn.closed"]
    assert [logs[i]["reason"] for i in closed] == ["shutdown"]  # the server closed it
    stopping = names.index("node.stopping")
    shutting_down = [i for i, name in enumerate(names) if name == "stratum.shutting_down"]
    stopped = [i for i, name in enumerate(names) if name == "stratum.stopped"]
    assert len(shutting_down) == len(stopped) == 2  # both servers ran their own shutdown
    (told,) = [i for i in shutting_down if logs[i]["connections"] == 1]  # sha256d's
    assert stopping < min(shutting_down)
    assert told < closed[0] < max(stopped)
    assert max(stopped) < names.index("engine.snapshot") < names.index("journal.closed")
    assert names[-1] == "node.stopped"
    # The shutdown snapshot holds every event: the next start replays nothing.
    journal = Journal(config.db)
    stored = await journal.latest_snapshot()
    assert stored is not None
    assert [entry async for entry in journal.replay(after=stored.seq)] == []
    assert stored.seq > 0
    assert await trio.to_thread.run_sync(run_offline, config, _replayed) == 0


async def _replayed(core: Core) -> int:
    await trio.lowlevel.checkpoint()
    return core.replayed
