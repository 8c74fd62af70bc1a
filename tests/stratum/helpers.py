"""Shared helpers for the Stratum server tests: a raw-socket miner, nonce search, server set-up."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
import trio.testing

from stratum.config import StratumConfig
from stratum.core import shares
from stratum.core.jobs import Share
from stratum.core.shares import Algorithm
from stratum.pool import PoolWorkSource
from stratum.server import StratumServer, trio_wall_clock

#: Difficulties small enough that a Python brute force finds a share in a few ms.
TEST_CONFIG = StratumConfig(
    host="127.0.0.1",
    port=0,
    start_difficulty=1e-6,
    min_difficulty=1e-9,
    max_difficulty=1e-4,
    vardiff=False,
)


def header_hash(
    *,
    algorithm: Algorithm,
    notify: list[Any],
    extranonce1: bytes,
    extranonce2: bytes,
    ntime: str,
    nonce: str,
    version: int | None = None,
) -> int:
    """The proof-of-work hash (as the compared integer) of a share built like cpuminer does."""
    coinbase = shares.build_coinbase(
        bytes.fromhex(notify[2]), extranonce1, extranonce2, bytes.fromhex(notify[3])
    )
    root = shares.merkle_root(coinbase, [bytes.fromhex(b) for b in notify[4]])
    version_hex = notify[5] if version is None else f"{version:08x}"
    header = shares.build_header(
        version=bytes.fromhex(version_hex),
        prevhash=bytes.fromhex(notify[1]),
        merkle=root,
        ntime=bytes.fromhex(ntime),
        nbits=bytes.fromhex(notify[6]),
        nonce=bytes.fromhex(nonce),
    )
    return shares.hash_to_int(shares.pow_hash(algorithm, header))


def find_nonce(
    *,
    algorithm: Algorithm,
    notify: list[Any],
    extranonce1: bytes,
    extranonce2: bytes,
    difficulty: float,
    ntime: str | None = None,
    version: int | None = None,
    valid: bool = True,
    start: int = 0,
    limit: int = 2_000_000,
) -> str:
    """A nonce (hex) whose share is valid (or, with ``valid=False``, too weak) at ``difficulty``.

    Bounded: raises ``AssertionError`` after ``limit`` tries.
    """
    target = shares.target_for(algorithm, difficulty)
    ntime = ntime or notify[7]
    coinbase = shares.build_coinbase(
        bytes.fromhex(notify[2]), extranonce1, extranonce2, bytes.fromhex(notify[3])
    )
    root = shares.merkle_root(coinbase, [bytes.fromhex(b) for b in notify[4]])
    prefix = shares.header_prefix(
        version=bytes.fromhex(notify[5] if version is None else f"{version:08x}"),
        prevhash=bytes.fromhex(notify[1]),
        merkle=root,
        ntime=bytes.fromhex(ntime),
        nbits=bytes.fromhex(notify[6]),
    )
    for n in range(start, start + limit):
        # The header stores the nonce bytes reversed: the wire nonce n is little-endian n.
        value = shares.hash_to_int(shares.pow_hash(algorithm, prefix + n.to_bytes(4, "little")))
        if (value <= target) == valid:
            nonce = f"{n:08x}"
            assert (
                header_hash(
                    algorithm=algorithm,
                    notify=notify,
                    extranonce1=extranonce1,
                    extranonce2=extranonce2,
                    ntime=ntime,
                    nonce=nonce,
                    version=version,
                )
                == value
            )
            return nonce
    raise AssertionError("no nonce found within the limit")


@dataclass
class Job:
    params: list[Any]
    difficulty: float
    extranonce1: bytes


@dataclass
class Miner:
    """A miner speaking raw JSON lines over a real socket; every read bounded by ``timeout``."""

    stream: trio.abc.Stream
    algorithm: Algorithm = Algorithm.SHA256D
    timeout: float = 5.0
    difficulty: float = 1.0
    extranonce1: bytes = b""
    extranonce2_size: int = 4
    received: list[dict[str, Any]] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    last_job: str | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _en2: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def send_raw(self, data: bytes) -> None:
        with trio.fail_after(self.timeout):
            await self.stream.send_all(data)

    async def send(self, method: str, params: list[Any], request_id: Any = None) -> Any:
        if request_id is None:
            request_id = next(self._ids)
        line = msgspec.json.encode({"id": request_id, "method": method, "params": params})
        await self.send_raw(line + b"\n")
        return request_id

    async def read_message(self) -> dict[str, Any]:
        """The next line from the server, decoded; notifications update the miner's state."""
        with trio.fail_after(self.timeout):
            while (end := self._buffer.find(b"\n")) < 0:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self._buffer += data
        line = self._buffer[:end]
        del self._buffer[: end + 1]  # amortised O(1) at the front of a bytearray
        message: dict[str, Any] = msgspec.json.decode(bytes(line))
        self.received.append(message)
        method = message.get("method")
        if method == "mining.set_difficulty":
            self.difficulty = float(message["params"][0])
        elif method == "mining.notify":
            params = message["params"]
            if params[8]:
                self.jobs.clear()
            self.jobs[params[0]] = Job(list(params), self.difficulty, self.extranonce1)
            self.last_job = params[0]
        elif method == "mining.set_extranonce":
            self.extranonce1 = bytes.fromhex(message["params"][0])
            self.extranonce2_size = int(message["params"][1])
        return message

    async def response(self, request_id: Any) -> dict[str, Any]:
        """Read until the response to ``request_id`` (notifications on the way are kept)."""
        for _ in range(10_000):
            message = await self.read_message()
            if "method" not in message:
                assert message["id"] == request_id, message
                return message
        raise AssertionError("no response")

    async def call(self, method: str, params: list[Any], request_id: Any = None) -> dict[str, Any]:
        return await self.response(await self.send(method, params, request_id))

    async def read_until(self, method: str) -> dict[str, Any]:
        for _ in range(10_000):
            message = await self.read_message()
            if message.get("method") == method:
                return message
        raise AssertionError(f"no {method}")

    async def expect_eof(self) -> None:
        """Read (and keep) lines until the server closes the connection."""
        with trio.fail_after(self.timeout):
            for _ in range(100_000):
                try:
                    await self.read_message()
                except EOFError:
                    return
                except (trio.BrokenResourceError, ConnectionResetError):
                    return
        raise AssertionError("server did not close")

    async def subscribe(self) -> dict[str, Any]:
        reply = await self.call("mining.subscribe", ["test-miner/1.0"])
        self.extranonce1 = bytes.fromhex(reply["result"][1])
        self.extranonce2_size = reply["result"][2]
        return reply

    async def authorize(self, username: str = "acct.rig1", password: str = "x") -> dict[str, Any]:
        reply = await self.call("mining.authorize", [username, password])
        return reply

    async def login(self, username: str = "acct.rig1", password: str = "x") -> None:
        """Subscribe, authorize and wait for the first job."""
        await self.subscribe()
        reply = await self.authorize(username, password)
        assert reply["result"] is True, reply
        if not self.jobs:
            await self.read_until("mining.notify")

    def share(
        self,
        *,
        username: str = "acct.rig1",
        job_id: str | None = None,
        valid: bool = True,
        extranonce2: bytes | None = None,
        version_bits: int | None = None,
    ) -> list[Any]:
        """Submit params for a fresh share of ``job_id`` (default: the latest job)."""
        job_id = job_id or self.last_job
        assert job_id is not None
        job = self.jobs[job_id]
        if extranonce2 is None:
            extranonce2 = next(self._en2).to_bytes(self.extranonce2_size, "big")
        version = None
        if version_bits is not None:
            version = shares.rolled_version(int(job.params[5], 16), version_bits, 0x1FFFE000)
        nonce = find_nonce(
            algorithm=self.algorithm,
            notify=job.params,
            extranonce1=job.extranonce1,
            extranonce2=extranonce2,
            difficulty=job.difficulty,
            version=version,
            valid=valid,
        )
        params = [username, job_id, extranonce2.hex(), job.params[7], nonce]
        if version_bits is not None:
            params.append(f"{version_bits:08x}")
        return params

    async def submit(self, params: list[Any]) -> dict[str, Any]:
        return await self.call("mining.submit", params)


async def start_pool(
    nursery: trio.Nursery, config: StratumConfig = TEST_CONFIG
) -> tuple[StratumServer, PoolWorkSource, list[trio.SocketListener]]:
    """A pool work source and a server on a free loopback port, both running in ``nursery``."""
    clock = trio_wall_clock()
    pool = PoolWorkSource(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    await nursery.start(pool.run)
    listeners = await nursery.start(server.run)
    return server, pool, listeners


async def connect(
    listeners: list[trio.SocketListener], algorithm: Algorithm = Algorithm.SHA256D
) -> Miner:
    stream = await trio.testing.open_stream_to_socket_listener(listeners[0])
    return Miner(stream, algorithm=algorithm)


class RecordingPool(PoolWorkSource):
    """The built-in pool that also keeps every share the server recorded, in order."""

    def __init__(self, *, config: StratumConfig, clock: Callable[[], int]) -> None:
        super().__init__(config=config, clock=clock)
        self.shares: list[Share] = []
        self._changed = trio.Event()

    async def record_shares(self, shares: Sequence[Share]) -> None:
        await super().record_shares(shares)
        self.shares.extend(shares)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 10) -> None:
        """Wait, at most ``seconds``, until ``predicate()`` holds after some recorded share."""
        with trio.fail_after(seconds):
            while not predicate():
                await self._changed.wait()
