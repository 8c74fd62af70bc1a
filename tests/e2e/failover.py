"""A failover under load, for the test (``test_failover.py``) and the benchmark
(``bench/failover.py``): an active market and a standby on one PostgreSQL database, loopback
miners and an API client on the same ports, the active market killed with SIGKILL.

``run_failover`` starts ``hashmarket serve`` on the database (fixed free ports, a new master
key file), creates a buyer (through the active market's inbox), starts ``hashmarket serve
--standby`` with the same flags, places an order, and puts on load: ``miners`` connections that
each submit shares under a fresh worker name (authorized just before, so a journaled
``ShareRecorded.worker`` names one submission) and an API client making deposits, each with its
own request id and retried with that id until answered (so each is applied once). After
``before`` acknowledged shares it kills the active market; miners and the client reconnect to
the same ports until the standby answers; after ``after`` more acknowledged shares (every miner
must have some) the load stops. It measures the time from SIGKILL to the standby's ports being
bound and to its first acknowledged share, then kills the standby too and reads the database:
``Failover`` holds what the miners and the client saw and what the journal holds.

With ``gateways`` the miners mine through that many ``hashmarket gateway`` processes sharing
one Stratum port (``--reuse-port``), linked to the markets' gateway port (the same on both):
the miners keep their connections across the failover (each gateway re-links to the standby
and re-sends what it had no answer for), and every acknowledgement after the kill counts as the
standby's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from marketplace.client import TRANSPORT_ERROR, ApiError, AsyncMarketClient, Credentials
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind
from tests.marketplace_io.killcheck import AFTER, journal_shares, share_after_restart
from tests.marketplace_io.miner import RawMiner, StratumError
from tests.pg import free_port

from .test_disk_full import PRICE, ROOT, SERVE

DEPOSIT = "0.001"
GATEWAY_SECRET = "failover-test-secret"
#: How long a miner or the client keeps trying to reach a market that is gone.
RECONNECT_S = 30.0


@dataclass
class Failover:
    """What one failover showed (times from the SIGKILL, in seconds)."""

    serving_after_s: float = 0.0
    first_ack_after_s: float = 0.0
    acked: set[str] = field(default_factory=set)
    submitted: set[str] = field(default_factory=set)
    #: Acknowledged shares per miner from the standby (on connections made after the kill).
    acked_after_kill: dict[str, int] = field(default_factory=dict)
    deposits_acked: set[str] = field(default_factory=set)
    deposits_sent: set[str] = field(default_factory=set)
    #: From the journal after both markets are gone.
    journaled: list[str] = field(default_factory=list)
    deposits_journaled: int = 0
    #: The market as the journal holds it (replayed, settled once more).
    market: Market | None = None
    killed_at: float | None = None
    crashes: list[str] = field(default_factory=list)
    #: Connections each miner made (1 each: nobody had to reconnect).
    connects: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> set[str]:
        """Acknowledged shares the journal does not hold."""
        return self.acked - set(self.journaled)

    @property
    def doubled(self) -> int:
        """Shares the journal holds more than once."""
        return len(self.journaled) - len(set(self.journaled))


class Markets:
    """The two ``hashmarket serve`` processes of one database, on the same ports."""

    def __init__(self, url: str, tmp: Path, *, gateways: int = 0) -> None:
        self.url = url
        self.tmp = tmp
        self.key_file = tmp / "market.key"
        self.api_port, self.sha_port, self.scrypt_port = free_port(), free_port(), free_port()
        self.procs: list[trio.Process] = []
        self.gateways = gateways
        self.gateway_port = free_port()
        #: Where miners connect: the gateways' shared port, else the markets' own.
        self.miner_port = free_port() if gateways else self.sha_port
        self._gateway_scrypt_port = free_port()
        self.gateway_procs: list[trio.Process] = []

    def flags(self) -> list[str]:
        """``serve``'s flags for this database, its key and the fixed ports (the disk-full
        test's settings otherwise: tiny sha256d difficulty, quick settlement)."""
        return [
            *SERVE,
            *("--db", self.url, "--master-key-file", str(self.key_file)),
            *("--api-port", str(self.api_port), "--sha256d-port", str(self.sha_port)),
            *("--scrypt-port", str(self.scrypt_port)),
            *(
                ("--gateway-port", str(self.gateway_port), "--gateway-secret", GATEWAY_SECRET)
                if self.gateways
                else ()
            ),
        ]

    async def start_gateways(self) -> None:
        """Start the gateways on the miners' port; return once each listens."""
        for k in range(self.gateways):
            log = self.tmp / f"gateway{k}.log"
            proc = await trio.lowlevel.open_process(
                [
                    *(sys.executable, "-m", "marketplace", "gateway"),
                    *("--market", f"127.0.0.1:{self.gateway_port}", "--id", f"gw{k}"),
                    *("--sha256d-port", str(self.miner_port)),
                    *("--scrypt-port", str(self._gateway_scrypt_port)),
                    *("--reuse-port", "--gateway-secret", GATEWAY_SECRET),
                    *("--log-format", "json"),
                ],
                cwd=ROOT,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
            )
            self.gateway_procs.append(proc)
            with trio.fail_after(30):
                while '"gateway.listening"' not in log.read_text():
                    assert proc.returncode is None, log.read_text()[-3000:]
                    await trio.sleep(0.02)

    async def start(self, tag: str, *, standby: bool = False) -> trio.Process:
        """Start a market; return once it serves (or, a standby, once it follows)."""
        ports = self.tmp / f"{tag}.ports.json"
        log = self.tmp / f"{tag}.log"
        extra = ["--ports-file", str(ports), *(["--standby"] if standby else [])]
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "marketplace", "serve", *self.flags(), *extra],
            cwd=ROOT,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        with trio.fail_after(30):
            while not (standby and "standby.following" in log.read_text()) and not ports.exists():
                assert proc.returncode is None, log.read_text()[-3000:]
                await trio.sleep(0.02)
        return proc

    def serving(self, tag: str) -> bool:
        return (self.tmp / f"{tag}.ports.json").exists()

    def account_create(self, name: str) -> Credentials:
        store = ["--db", self.url, "--master-key-file", str(self.key_file)]
        done = subprocess.run(
            [sys.executable, "-m", "marketplace", "account", "create", name, *store],
            capture_output=True,
            timeout=60,
            check=True,
            cwd=ROOT,
        )
        made = json.loads(done.stdout)
        return Credentials(made["account_id"], made["key_id"], made["secret"])

    async def kill_all(self) -> None:
        for proc in [*self.procs, *self.gateway_procs]:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            with trio.fail_after(10):
                await proc.wait()


async def mine(
    port: int, prefix: str, seen: Failover, done: trio.Event, *, any_after_kill: bool = False
) -> None:
    """One miner on ``port``: shares under fresh worker names until ``done``; reconnects (to
    the same port) whenever what it is connected to goes away after ``seen.killed_at`` (before
    that it is a crash). An answer counts in ``acked_after_kill`` if it came on a connection
    made after the kill, or (``any_after_kill``) to a share submitted after the kill."""
    serial = 0
    while not done.is_set():
        try:
            stream = await _connect(port)
        except OSError as exc:
            seen.crashes.append(f"{prefix}: no market came back: {exc!r}")
            return
        # Acks on a connection made after the kill are the standby's (one made before may
        # still carry the dying market's last answers); through gateways, the answer to a
        # share submitted after the kill is.
        on_standby = seen.killed_at is not None
        seen.connects[prefix] = seen.connects.get(prefix, 0) + 1
        try:
            miner = RawMiner(stream, timeout=10)
            await miner.login(f"seller.{prefix}")
            while not done.is_set():
                serial += 1
                name = f"{prefix}s{serial}"
                assert await miner.call("mining.authorize", [f"seller.{name}", "x"]) is True
                seen.submitted.add(name)
                after_kill = on_standby or (any_after_kill and seen.killed_at is not None)
                try:
                    accepted = await miner.submit(f"seller.{name}")
                except StratumError:
                    continue  # a stale job after a move: a reject, journaled as one
                assert accepted is True, accepted
                seen.acked.add(name)
                if after_kill and seen.killed_at is not None:
                    if not seen.acked_after_kill:
                        seen.first_ack_after_s = time.monotonic() - seen.killed_at
                    seen.acked_after_kill[prefix] = seen.acked_after_kill.get(prefix, 0) + 1
        except (EOFError, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            if seen.killed_at is None:
                seen.crashes.append(f"{prefix}: lost the market before the kill")
                return
        finally:
            await stream.aclose()


async def _connect(port: int) -> trio.SocketStream:
    """A connection to ``port``, tried every 20 ms for ``RECONNECT_S``."""
    with trio.move_on_after(RECONNECT_S):
        while True:
            try:
                return await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.02)
    raise OSError(f"nothing answered on port {port} for {RECONNECT_S} s")


async def deposit(markets: Markets, buyer: Credentials, seen: Failover, done: trio.Event) -> None:
    """Deposits, each with its own request id, each retried with that id until answered."""
    url = f"http://127.0.0.1:{markets.api_port}"
    async with AsyncMarketClient(url, credentials=buyer, timeout_s=5) as client:
        for n in range(100_000):
            if done.is_set():
                return
            request_id = f"deposit-{n}"
            seen.deposits_sent.add(request_id)
            with trio.fail_after(RECONNECT_S):
                while True:
                    try:
                        await client.deposit(DEPOSIT, request_id=request_id)
                    except ApiError as error:
                        if error.code != TRANSPORT_ERROR:  # the market gone: try it again
                            raise
                        await trio.sleep(0.02)
                        continue
                    seen.deposits_acked.add(request_id)
                    break
            await trio.sleep(0.05)


async def run_failover(
    url: str,
    tmp: Path,
    *,
    miners: int = 4,
    before: int = 40,
    after: int = 40,
    gateways: int = 0,
) -> Failover:
    """One failover under load on the empty PostgreSQL database ``url`` (see the module
    doc), the miners through ``gateways`` gateways if not 0."""
    markets = Markets(url, tmp, gateways=gateways)
    seen = Failover()
    try:
        await markets.start("active")
        buyer = await trio.to_thread.run_sync(markets.account_create, "buyer")
        await markets.start("standby", standby=True)
        await markets.start_gateways()
        api = f"http://127.0.0.1:{markets.api_port}"
        async with AsyncMarketClient(api, credentials=buyer) as client:
            await client.deposit("1")
            await client.create_order(
                algorithm="sha256d", type="standard", limit="0", amount="0.5", price=PRICE
            )
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            for k in range(miners):
                nursery.start_soon(
                    partial(
                        mine, markets.miner_port, f"m{k}", seen, done, any_after_kill=bool(gateways)
                    )
                )
            nursery.start_soon(deposit, markets, buyer, seen, done)
            with trio.fail_after(60):
                while len(seen.acked) < before:
                    await trio.sleep(0.02)
            # A standby opens no port while the active market lives.
            assert not markets.serving("standby"), "the standby bound its ports too early"
            active = markets.procs[0]
            active.send_signal(signal.SIGKILL)
            seen.killed_at = time.monotonic()
            with trio.fail_after(30):
                await active.wait()
                while not markets.serving("standby"):
                    await trio.sleep(0.005)
            seen.serving_after_s = time.monotonic() - seen.killed_at
            with trio.fail_after(60):
                while sum(seen.acked_after_kill.values()) < after or len(
                    seen.acked_after_kill
                ) < min(miners, after):
                    await trio.sleep(0.02)
            done.set()
        await share_after_restart(markets.sha_port)
    finally:
        await markets.kill_all()
    shares, market = await journal_shares(url)
    seen.journaled = [s.worker for s in shares if s.accepted and s.worker != AFTER]
    seen.deposits_journaled = _deposits(market) - 1  # less the first, before the load
    seen.market = market
    return seen


def _deposits(market: Market) -> int:
    entries = market.ledger("buyer", limit=1_000_000)
    return sum(1 for entry in entries if entry.kind is LedgerKind.DEPOSIT)
