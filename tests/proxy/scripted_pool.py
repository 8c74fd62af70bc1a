"""A buyer's pool for proxy tests, speaking raw Stratum lines, behaving as a ``Script`` says.

Well behaved it is a small, honest pool: it answers subscribe (its own extranonce1 and
extranonce2 size), configure (the version mask it grants), authorize, sends set_difficulty and
a job, and checks every submitted share with the project's share math against the job, its
extranonce1 and the difficulty the job was sent with (so a forwarded share is only accepted if
the proxy put the right job id, ``slot || extranonce2``, ntime, nonce and version bits in it).
Badly behaved it does what a hostile or broken pool does: an extranonce2 size too small, a
refused authorize, no job ever, garbage, a close in the middle, a refusal of every share, slow
answers. ``Script`` may change between connections (the pool "comes back"). Every wait on the
peer is bounded.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import trio

from stratum.core import shares
from stratum.core.shares import Algorithm


@dataclass(frozen=True)
class Script:
    """How the pool behaves on the next connections."""

    extranonce2_size: int = 4
    difficulty: float = 1e-7
    #: The version-rolling mask it grants (``None``: ``mining.configure`` is not supported).
    version_mask: int | None = 0x1FFFE000
    authorize: bool = True
    notify: bool = True
    garbage: bool = False
    close_after_submits: int | None = None
    reject_all: bool = False
    answer_delay_s: float = 0.0


@dataclass
class Job:
    job_id: str
    params: list[Any]
    difficulty: float
    extranonce1: bytes


@dataclass
class Submit:
    """One share the pool received, with its verdict."""

    username: str
    job_id: str
    extranonce2: str
    ntime: str
    nonce: str
    version_bits: str | None
    accepted: bool
    reason: str


@dataclass(eq=False)
class PoolConnection:
    pool: ScriptedPool
    stream: trio.SocketStream
    script: Script
    extranonce1: bytes
    difficulty: float = 1.0
    version_mask: int = 0
    jobs: dict[str, Job] = field(default_factory=dict)
    authorized: bool = False
    closed: bool = False
    _send_lock: trio.Lock = field(default_factory=trio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(msgspec.json.encode(message) + b"\n")

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            with trio.fail_after(5):
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.closed = True

    async def set_difficulty(self, difficulty: float) -> None:
        self.difficulty = difficulty
        await self.send({"id": None, "method": "mining.set_difficulty", "params": [difficulty]})

    async def notify(self, *, clean: bool = True) -> Job:
        number = next(self.pool.job_numbers)
        job_id = f"pj{number:04x}"
        params = [
            job_id,
            shares.sha256d(b"prev%d" % number).hex(),
            "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20",
            "ffffffff0100f2052a010000001976a914000000000000000000000000000000000000000088ac00000000",
            [shares.sha256d(b"tx%d" % number).hex()],
            "20000000",
            "1d00ffff",
            f"{int(trio.current_time()) + 1_700_000_000:08x}",
            clean,
        ]
        if clean:
            self.jobs.clear()
        job = Job(job_id, params, self.difficulty, self.extranonce1)
        self.jobs[job_id] = job
        await self.send({"id": None, "method": "mining.notify", "params": params})
        return job

    async def set_extranonce(self, extranonce1: bytes, extranonce2_size: int) -> None:
        self.extranonce1 = extranonce1
        self.script = replace(self.script, extranonce2_size=extranonce2_size)
        await self.send(
            {
                "id": None,
                "method": "mining.set_extranonce",
                "params": [extranonce1.hex(), extranonce2_size],
            }
        )

    async def set_version_mask(self, mask: int) -> None:
        self.version_mask = mask
        await self.send(
            {"id": None, "method": "mining.set_version_mask", "params": [f"{mask:08x}"]}
        )

    async def reconnect(self, host: str, port: int) -> None:
        await self.send({"id": None, "method": "client.reconnect", "params": [host, port, 0]})

    def check(self, params: list[Any]) -> tuple[bool, str]:
        """Our share math on a submitted share: (accepted, reason)."""
        job_id, extranonce2, ntime, nonce = params[1:5]
        job = self.jobs.get(job_id)
        if job is None:
            return False, "Job not found (stale)"
        if len(extranonce2) != 2 * self.script.extranonce2_size:
            return False, "Invalid extranonce2 size"
        version = int(job.params[5], 16)
        if len(params) > 5 and params[5] is not None:
            bits = int(params[5], 16)
            if bits & ~self.version_mask:
                return False, "Version bits outside the mask"
            version = shares.rolled_version(version, bits, self.version_mask)
        coinbase = shares.build_coinbase(
            bytes.fromhex(job.params[2]),
            job.extranonce1,
            bytes.fromhex(extranonce2),
            bytes.fromhex(job.params[3]),
        )
        root = shares.merkle_root(coinbase, [bytes.fromhex(b) for b in job.params[4]])
        header = shares.build_header(
            version=version.to_bytes(4, "big"),
            prevhash=bytes.fromhex(job.params[1]),
            merkle=root,
            ntime=bytes.fromhex(ntime),
            nbits=bytes.fromhex(job.params[6]),
            nonce=bytes.fromhex(nonce),
        )
        value = shares.hash_to_int(shares.pow_hash(self.pool.algorithm, header))
        if value > shares.target_for(self.pool.algorithm, job.difficulty):
            return False, "Low difficulty share"
        return True, ""


class ScriptedPool:
    """A raw-Stratum pool on 127.0.0.1 (see the module doc)."""

    def __init__(self, script: Script | None = None, *, algorithm: Algorithm = Algorithm.SHA256D):
        self.script = script or Script()
        self.algorithm = algorithm
        self.port = 0
        self.connects = 0
        self.connections: list[PoolConnection] = []
        self.submits: list[Submit] = []
        self.authorized_with: list[tuple[str, str]] = []
        self.job_numbers = itertools.count(1)
        self._extranonces = itertools.count(0xF0000001)
        self.connected = trio.Event()

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.submits if s.accepted)

    @property
    def live(self) -> PoolConnection:
        """The newest open connection."""
        open_ = [c for c in self.connections if not c.closed]
        assert open_, "no connection to the pool"
        return open_[-1]

    async def start(self, nursery: trio.Nursery) -> int:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self.port

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connects += 1
        extranonce1 = next(self._extranonces).to_bytes(4, "big")
        conn = PoolConnection(self, stream, self.script, extranonce1)
        self.connections.append(conn)
        self.connected.set()
        self.connected = trio.Event()
        buffer = b""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        break
                    buffer += data
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if await self._line(conn, msgspec.json.decode(line), nursery):
                            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, msgspec.DecodeError):
            pass
        finally:
            conn.closed = True
            await trio.aclose_forcefully(stream)

    async def _line(
        self, conn: PoolConnection, message: dict[str, Any], nursery: trio.Nursery
    ) -> bool:
        """Answer one request; True to close the connection."""
        script = conn.script
        method, request_id, params = message.get("method"), message.get("id"), message.get("params")
        if method == "mining.subscribe":
            result = [
                [["mining.set_difficulty", "s1"], ["mining.notify", "s1"]],
                conn.extranonce1.hex(),
                script.extranonce2_size,
            ]
            await conn.send({"id": request_id, "result": result, "error": None})
        elif method == "mining.configure":
            if script.version_mask is None:
                await conn.send(
                    {"id": request_id, "result": None, "error": [20, "Not supported.", None]}
                )
            else:
                conn.version_mask = script.version_mask
                mask = f"{script.version_mask:08x}"
                result = {"version-rolling": True, "version-rolling.mask": mask}
                await conn.send({"id": request_id, "result": result, "error": None})
        elif method == "mining.authorize":
            self.authorized_with.append((params[0], params[1]))
            if not script.authorize:
                await conn.send(
                    {"id": request_id, "result": None, "error": [24, "Unauthorized worker", None]}
                )
                return False
            conn.authorized = True
            await conn.send({"id": request_id, "result": True, "error": None})
            if script.garbage:
                await conn.send_raw(b"\x00\xffthis is not json\n")
                return False
            await conn.set_difficulty(script.difficulty)
            if script.notify:
                await conn.notify(clean=True)
        elif method == "mining.submit":
            accepted, reason = conn.check(params)
            if script.reject_all and accepted:
                accepted, reason = False, "Low difficulty share"
            submit = Submit(
                params[0],
                params[1],
                params[2],
                params[3],
                params[4],
                params[5] if len(params) > 5 else None,
                accepted,
                reason,
            )
            self.submits.append(submit)
            nursery.start_soon(self._answer, conn, request_id, submit)
            if (
                script.close_after_submits is not None
                and len(self.submits) >= script.close_after_submits
            ):
                return True
        elif request_id is not None:
            await conn.send(
                {"id": request_id, "result": None, "error": [20, "Not supported.", None]}
            )
        return False

    async def _answer(self, conn: PoolConnection, request_id: Any, submit: Submit) -> None:
        if conn.script.answer_delay_s:
            await trio.sleep(conn.script.answer_delay_s)
        if submit.accepted:
            await conn.send({"id": request_id, "result": True, "error": None})
        else:
            code = 21 if "stale" in submit.reason else 23 if "Low" in submit.reason else 20
            await conn.send(
                {"id": request_id, "result": None, "error": [code, submit.reason, None]}
            )
