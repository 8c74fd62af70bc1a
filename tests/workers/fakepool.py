"""A small scripted Stratum server for tests of the client and the miner.

It checks shares with ``stratum.core.shares`` only (no worker code), so a share it accepts is
one any correct server accepts. Tests drive it: push jobs, change difficulty or extranonce,
ask for a reconnect, drop connections. The real server is used by the integration tests.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

import trio

from stratum.core.shares import (
    Algorithm,
    build_coinbase,
    build_header,
    hash_to_int,
    merkle_root,
    pow_hash,
    target_for,
)

PREVHASH = "abcdef01" * 5 + "00000000" * 3
COINB1 = "01000000010000000000000000000000ffffffff17"
COINB2 = "ffffffff0100f2052a0100000000000000"
BRANCH = ["d1" * 32]


@dataclass
class SubmitRecord:
    conn: int
    username: str
    job_id: str
    accepted: bool
    reason: str | None
    after_clean: bool = False


@dataclass
class FakeConn:
    conn_id: int
    stream: trio.SocketStream
    extranonce1: str
    difficulty: float
    algorithm: Algorithm
    jobs: dict[str, tuple[list[Any], float]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    seen: set[tuple[str, str, str, str]] = field(default_factory=set)
    users: set[str] = field(default_factory=set)
    job_counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    lock: trio.Lock = field(default_factory=trio.Lock)
    extranonce_subscribed: bool = False
    session_id: str = ""

    async def send(self, obj: Any) -> None:
        async with self.lock:
            await self.stream.send_all(json.dumps(obj).encode() + b"\n")

    async def set_difficulty(self, difficulty: float) -> None:
        self.difficulty = difficulty
        await self.send({"id": None, "method": "mining.set_difficulty", "params": [difficulty]})

    async def push_job(self, *, clean: bool = True, ntime: str = "6b0afc41") -> str:
        job_id = f"c{self.conn_id}j{next(self.job_counter)}"
        params = [job_id, PREVHASH, COINB1, COINB2, BRANCH, "20000000", "1d00ffff", ntime, clean]
        if clean:
            self.stale.update(self.jobs)
        self.jobs[job_id] = (params, self.difficulty)
        await self.send({"id": None, "method": "mining.notify", "params": params})
        return job_id

    async def set_extranonce(self, extranonce1: str) -> None:
        self.extranonce1 = extranonce1
        # Shares built on the old extranonce1 no longer verify: the jobs are stale for us.
        self.stale.update(self.jobs)
        await self.send({"id": None, "method": "mining.set_extranonce", "params": [extranonce1, 4]})

    def check(self, params: list[Any]) -> tuple[bool, int | None, str | None]:
        username, job_id, extranonce2, ntime, nonce = params[:5]
        if username not in self.users:
            return False, 24, "unauthorized"
        if job_id not in self.jobs or job_id in self.stale:
            return False, 21, "stale"
        key = (job_id, extranonce2, ntime, nonce)
        if key in self.seen:
            return False, 22, "duplicate"
        self.seen.add(key)
        notify, difficulty = self.jobs[job_id]
        coinbase = build_coinbase(
            bytes.fromhex(notify[2]),
            bytes.fromhex(self.extranonce1),
            bytes.fromhex(extranonce2),
            bytes.fromhex(notify[3]),
        )
        header = build_header(
            version=bytes.fromhex(notify[5]),
            prevhash=bytes.fromhex(notify[1]),
            merkle=merkle_root(coinbase, [bytes.fromhex(b) for b in notify[4]]),
            ntime=bytes.fromhex(ntime),
            nbits=bytes.fromhex(notify[6]),
            nonce=bytes.fromhex(nonce),
        )
        value = hash_to_int(pow_hash(self.algorithm, header))
        if value > target_for(self.algorithm, difficulty):
            return False, 23, "low_difficulty"
        return True, None, None


class FakePool:
    """Serve with ``await nursery.start(trio.serve_tcp, pool.handle, 0, host="127.0.0.1")``."""

    def __init__(
        self,
        *,
        difficulty: float = 1e-4,
        algorithm: Algorithm = Algorithm.SHA256D,
        extranonce_supported: bool = True,
        initial_job: bool = True,
        submit_reply_delay: float = 0.0,
    ) -> None:
        self.difficulty = difficulty
        self.submit_reply_delay = submit_reply_delay
        self.algorithm = algorithm
        self.extranonce_supported = extranonce_supported
        self.initial_job = initial_job
        self.conns: list[FakeConn] = []
        self.submits: list[SubmitRecord] = []
        self.subscribe_params: list[list[Any]] = []
        self.received: list[dict[str, Any]] = []
        self.authorized = trio.Event()
        self.changed = trio.Event()
        self._ids = itertools.count(1)

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Any) -> None:
        """Wait (the caller bounds it with fail_after) until predicate() is true."""
        while not predicate():
            await self.changed.wait()

    def accepted(self) -> int:
        return sum(1 for s in self.submits if s.accepted)

    async def handle(self, stream: trio.SocketStream) -> None:
        conn_id = next(self._ids)
        conn = FakeConn(
            conn_id=conn_id,
            stream=stream,
            extranonce1=f"{conn_id:08x}",
            difficulty=self.difficulty,
            algorithm=self.algorithm,
            session_id=f"5e55{conn_id:04x}",
        )
        self.conns.append(conn)
        buffer = b""
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    await self._request(conn, json.loads(raw))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self._poke()

    async def _request(self, conn: FakeConn, msg: dict[str, Any]) -> None:
        self.received.append(msg)
        method, params, request_id = msg["method"], msg["params"], msg["id"]
        if method == "mining.subscribe":
            self.subscribe_params.append(params)
            if len(params) > 1 and params[1]:
                conn.session_id = params[1]  # resume: same session id
            subs = [["mining.set_difficulty", "d1"], ["mining.notify", conn.session_id]]
            await conn.send(
                {"id": request_id, "result": [subs, conn.extranonce1, 4], "error": None}
            )
        elif method == "mining.extranonce.subscribe":
            if self.extranonce_supported:
                conn.extranonce_subscribed = True
                await conn.send({"id": request_id, "result": True, "error": None})
            else:
                error = [20, "Not supported.", None]
                await conn.send({"id": request_id, "result": None, "error": error})
        elif method == "mining.authorize":
            conn.users.add(params[0])
            await conn.send({"id": request_id, "result": True, "error": None})
            if len(conn.users) == 1:
                await conn.set_difficulty(conn.difficulty)
                if self.initial_job:
                    await conn.push_job(clean=True)
            self.authorized.set()
        elif method == "mining.submit":
            ok, code, reason = conn.check(params)
            self.submits.append(SubmitRecord(conn.conn_id, params[0], params[1], ok, reason))
            self._poke()
            await trio.sleep(self.submit_reply_delay)  # a slow pool: the answer comes later
            if ok:
                await conn.send({"id": request_id, "result": True, "error": None})
            else:
                await conn.send({"id": request_id, "result": None, "error": [code, reason, None]})
        else:
            await conn.send(
                {"id": request_id, "result": None, "error": [20, "Not supported.", None]}
            )
        self._poke()
