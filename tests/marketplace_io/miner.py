"""A tiny Stratum miner for tests: raw JSON lines over a real socket, real share math.

It keeps every job it was notified with (and the difficulty in force when the job arrived, as
real miners do), brute-forces nonces with ``stratum.core.shares`` at the tiny difficulties the
tests configure, and submits. Every await on the server is bounded by ``timeout``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from stratum.core import shares
from stratum.core.shares import Algorithm


@dataclass
class Notified:
    """One ``mining.notify`` as received, with the difficulty and extranonce in force."""

    job_id: str
    params: list[Any]
    difficulty: float
    extranonce1: str = ""
    extranonce2_size: int = 4
    version_mask: int = 0

    @property
    def coinb1(self) -> str:
        return str(self.params[2])

    @property
    def clean_jobs(self) -> bool:
        return bool(self.params[8])


class StratumError(Exception):
    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.code = error[0] if isinstance(error, list) and error else None


@dataclass
class RawMiner:
    stream: trio.abc.Stream
    algorithm: Algorithm = Algorithm.SHA256D
    timeout: float = 10.0
    difficulty: float = 1.0
    extranonce1: str = ""
    extranonce2_size: int = 4
    jobs: dict[str, Notified] = field(default_factory=dict)
    notified: list[Notified] = field(default_factory=list)
    #: Other notifications as received (set_extranonce, set_version_mask, reconnect...).
    others: list[dict[str, Any]] = field(default_factory=list)
    version_mask: int = 0
    #: The hash (as compared with targets) of the share ``solve`` found last.
    last_hash: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _en2: itertools.count[int] = field(default_factory=itertools.count)
    _new_job: trio.Event = field(default_factory=trio.Event)

    async def _read_line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("server closed the connection")
            self._buffer += data
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        message: dict[str, Any] = msgspec.json.decode(bytes(line))
        return message

    def _handle_notification(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method == "mining.set_difficulty":
            self.difficulty = float(message["params"][0])
        elif method == "mining.notify":
            params = message["params"]
            notified = Notified(
                str(params[0]),
                list(params),
                self.difficulty,
                self.extranonce1,
                self.extranonce2_size,
                self.version_mask,
            )
            if notified.clean_jobs:
                self.jobs.clear()
            self.jobs[notified.job_id] = notified
            self.notified.append(notified)
            self._new_job.set()
            self._new_job = trio.Event()
        else:
            self.others.append(message)
            if method == "mining.set_extranonce":
                self.extranonce1 = str(message["params"][0])
                self.extranonce2_size = int(message["params"][1])
            elif method == "mining.set_version_mask":
                self.version_mask = int(message["params"][0], 16)

    async def call(self, method: str, params: list[Any]) -> Any:
        """Send a request and return its result; raise ``StratumError`` for an error reply."""
        request_id = next(self._ids)
        line = msgspec.json.encode({"id": request_id, "method": method, "params": params})
        with trio.fail_after(self.timeout):
            await self.stream.send_all(line + b"\n")
            while True:
                message = await self._read_line()
                if message.get("method") is not None:
                    self._handle_notification(message)
                    continue
                if message.get("id") == request_id:
                    if message.get("error") is not None:
                        raise StratumError(message["error"])
                    return message.get("result")

    async def pump(self, *, until_new_job: bool = True) -> Notified:
        """Read notifications until a new ``mining.notify`` arrives; return it."""
        count = len(self.notified)
        with trio.fail_after(self.timeout):
            while len(self.notified) == count:
                message = await self._read_line()
                if message.get("method") is not None:
                    self._handle_notification(message)
        return self.notified[-1]

    async def read_notifications_until(self, *methods: str) -> dict[str, Any]:
        """Read notifications (bounded) until one of ``methods`` arrives; return it."""
        with trio.fail_after(self.timeout):
            while True:
                message = await self._read_line()
                if message.get("method") is not None:
                    self._handle_notification(message)
                    if message["method"] in methods:
                        return message

    async def login(self, username: str, password: str = "x") -> None:
        """subscribe + authorize; afterwards at least one job is known."""
        result = await self.call("mining.subscribe", ["test-miner/1.0"])
        self.extranonce1 = result[1]
        self.extranonce2_size = int(result[2])
        assert await self.call("mining.authorize", [username, password]) is True
        if not self.notified:
            await self.pump()

    @property
    def latest(self) -> Notified:
        return self.notified[-1]

    def solve(
        self,
        job: Notified,
        *,
        max_tries: int = 2_000_000,
        valid: bool = True,
        version_bits: int | None = None,
    ) -> tuple[str, str, str]:
        """Find (extranonce2, ntime, nonce) meeting the job's difficulty (brute force), with
        the extranonce the job came with and ``version_bits`` rolled in if given; with
        ``valid=False``, one that misses it (a low-difficulty share)."""
        _, prevhash, coinb1, coinb2, branch, version, nbits, ntime, _ = job.params
        target = shares.target_for(self.algorithm, job.difficulty)
        extranonce1 = job.extranonce1 or self.extranonce1
        extranonce2 = next(self._en2).to_bytes(job.extranonce2_size, "big")
        coinbase = shares.build_coinbase(
            bytes.fromhex(coinb1),
            bytes.fromhex(extranonce1),
            extranonce2,
            bytes.fromhex(coinb2),
        )
        merkle = shares.merkle_root(coinbase, [bytes.fromhex(b) for b in branch])
        if version_bits is not None:
            rolled = shares.rolled_version(int(version, 16), version_bits, job.version_mask)
            version = f"{rolled:08x}"
        prefix = shares.header_prefix(
            version=bytes.fromhex(version),
            prevhash=bytes.fromhex(prevhash),
            merkle=merkle,
            ntime=bytes.fromhex(ntime),
            nbits=bytes.fromhex(nbits),
        )
        for nonce in range(max_tries):
            nonce_bytes = nonce.to_bytes(4, "big")
            header = prefix + nonce_bytes[::-1]
            value = shares.hash_to_int(shares.pow_hash(self.algorithm, header))
            if (value <= target) is valid:
                self.last_hash = value
                return extranonce2.hex(), ntime, nonce_bytes.hex()
        raise AssertionError(f"no share found in {max_tries} tries at {job.difficulty}")

    async def submit(
        self, username: str, job: Notified | None = None, *, version_bits: int | None = None
    ) -> Any:
        """Solve ``job`` (default: the latest) and submit it; return the result."""
        job = job or self.latest
        extranonce2, ntime, nonce = self.solve(job, version_bits=version_bits)
        params = [username, job.job_id, extranonce2, ntime, nonce]
        if version_bits is not None:
            params.append(f"{version_bits:08x}")
        return await self.call("mining.submit", params)
