"""Benchmark: what one accepted share costs the server (CPU per 1,000), throughput, latency.

Two targets, each in its own process, with a difficulty so easy that every hash is a valid
share (the server still does the whole check: job, ntime, duplicate, merkle root, header hash,
target):

- ``pool``: the built-in pool alone (``python -m stratum serve``): the Stratum checks, shares
  only counted in memory;
- ``node``: a whole node (``hashmarket serve``, journal ``synchronous=FULL``) with one buyer's
  standard order that takes every worker, so every share is checked, charged to the order and
  journaled before its ``true`` goes out (the bench checks that every connection mines for
  the order, and prints what the order spent); ``--synchronous NORMAL`` runs its journal
  without an fsync per commit (a ``true`` then survives a crash of the process, not of the
  machine).

This process drives the server with raw non-blocking sockets: ``--connections`` miners
(default 1000). For each ``--windows`` entry (default ``1,4``: strict request/reply, then four
submits in flight per connection) it saturates the server for ``--seconds`` after a warm-up
and prints accepted shares/s, the server's CPU time per 1,000 accepted shares (user + system
of the whole server process, its threads included: the figure to optimise against, as it
hardly depends on how busy the machine is), p50/p99 submit-to-reply latency and the server's
CPU use. Then, unless ``--no-half-load``, it offers about half the saturation rate (open loop:
submits at fixed times, one at a time per connection, whatever the replies do; so half the
strict mode's rate, the same pattern, or of the highest if strict was not run) and prints the
p99 submit-to-reply latency there (the floor asks 20 ms or less). Run:

    .venv/bin/python bench/stratum_shares.py [--target pool|node|both] [--windows 1,4]
        [--connections 1000] [--seconds 10] [--warmup 2] [--no-half-load]
        [--synchronous FULL|NORMAL]

With ``BENCH_PROFILE=FILE`` the server runs under cProfile (FILE, or FILE.pool and FILE.node
for ``--target both``), which records the main thread (wall time) during the measured windows
only (``_profiled.py``); the CPU figures are then of course higher.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from _stratum_server import (
    ROOT,
    cpu_seconds,
    environment,
    profile_window,
    start_node,
    start_server,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOTIFY = b'{"id":null,"method":"mining.notify"'
SUBMIT_ID = b'{"id":4,'
#: Every hash meets this difficulty's target (T1 / 1e-12 is above 2**256).
EASY = "1e-12"
#: The buyer's order: a price that makes a share worth a few msat at ``EASY`` (so the charge
#: moves whole msat, as with real difficulties) and a budget no run can spend.
ORDER_PRICE = "1000000"
ORDER_AMOUNT = "1000"


class Conn:
    __slots__ = ("buf", "job", "nonce", "ntime", "out", "prefix", "sent", "sock", "user")

    def __init__(self, sock: socket.socket, user: str) -> None:
        self.sock = sock
        self.user = user
        self.buf = b""
        self.out = b""
        self.prefix = b""
        #: The current job's id and ntime, for drivers that build their own submits.
        self.job = ""
        self.ntime = ""
        self.nonce = 0
        self.sent: collections.deque[float] = collections.deque()

    def set_job(self, line: bytes) -> str:
        """Take a notify's job; return its coinb1 (the order it mines for is tagged in it)."""
        params = json.loads(line)["params"]
        self.prefix = b'{"id":4,"method":"mining.submit","params":["%s","%s","00000000","%s","' % (
            self.user.encode(),
            params[0].encode(),
            params[7].encode(),
        )
        return str(params[2])

    def submit(self, now: float) -> None:
        self.nonce += 1
        self.out += self.prefix + b'%08x"]}\n' % (self.nonce & 0xFFFFFFFF)
        self.sent.append(now)


@dataclass
class Result:
    mode: str
    accepted: int
    rejected: int
    seconds: float
    cpu_s: float
    latencies: list[float]
    offered: float | None = None
    lag_ms: float = 0.0
    #: CPU seconds of each measured process (the first is the one the target is named by).
    cpu_by_process: tuple[float, ...] = ()

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_s * 1000 / max(self.accepted, 1) * 1000

    def percentile(self, fraction: float) -> float:
        values = self.latencies
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(len(values) * fraction))] * 1000


class Measured:
    """The measured part of a run, ``warmup`` seconds from now for ``seconds``: the CPU time
    of the server's processes (the first one's profile, ``BENCH_PROFILE``) over exactly
    that."""

    def __init__(self, pids: Sequence[int], *, warmup: float, seconds: float) -> None:
        self.pids = list(pids)
        self.opens = time.perf_counter() + warmup
        self.ends = self.opens + seconds
        self.open = False
        self._cpu_start: list[float] = []
        self.by_process: tuple[float, ...] = ()

    def running(self, now: float) -> bool:
        """Whether the run goes on at ``now`` (opening the measurement when it is due)."""
        if now >= self.ends:
            return False
        if not self.open and now >= self.opens:
            self.open = True
            profile_window(self.pids[0], on=True)
            self._cpu_start = [cpu_seconds(pid) for pid in self.pids]
        return True

    def close(self) -> float:
        """The server's CPU seconds over the measured part, all its processes
        (``by_process``: each one's)."""
        ends = [cpu_seconds(pid) for pid in self.pids]
        self.by_process = tuple(e - s for e, s in zip(ends, self._cpu_start, strict=True))
        profile_window(self.pids[0], on=False)
        return sum(self.by_process)


class Driver:
    """``connections`` miners on one server (``pids``: its processes, the main one first)."""

    def __init__(self, *, pids: Sequence[int], port: int, connections: int) -> None:
        self.pids = list(pids)
        self.selector = selectors.DefaultSelector()
        self.conns: list[Conn] = []
        self.coinb1: dict[Conn, str] = {}
        for i in range(connections):
            self.conns.append(open_miner(self.selector, port, f"bench.w{i}"))
        # Wait for every connection's first job.
        deadline = time.monotonic() + 120
        while len(self.coinb1) < len(self.conns):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(self.coinb1)} connections got a job")
            for key, _ in self.selector.select(timeout=1):
                conn = key.data
                for line in receive_lines(conn):
                    if line.startswith(NOTIFY):
                        self.coinb1[conn] = conn.set_job(line)

    def close(self) -> None:
        for conn in self.conns:
            conn.sock.close()

    def _on_lines(self, conn: Conn, now: float, counting: bool, tally: list[int]) -> int:
        """Handle what ``conn`` sent; count replies (accepted, rejected) into ``tally`` when
        ``counting``; return how many submit replies came."""
        replies = 0
        for line in receive_lines(conn):
            if line.startswith(SUBMIT_ID):
                sent = conn.sent.popleft()
                replies += 1
                if counting:
                    self.latencies.append(now - sent)
                    tally[0 if b'"result":true' in line else 1] += 1
            elif line.startswith(NOTIFY):
                self.coinb1[conn] = conn.set_job(line)
        return replies

    def saturate(self, *, window: int, warmup: float, seconds: float) -> Result:
        """Keep ``window`` submits in flight on every connection; measure after ``warmup``."""
        self.latencies: list[float] = []
        tally = [0, 0]
        now = time.perf_counter()
        for conn in self.conns:
            for _ in range(window):
                conn.submit(now)
            flush(conn)
        measured = Measured(self.pids, warmup=warmup, seconds=seconds)
        while measured.running(time.perf_counter()):
            for key, _ in self.selector.select(timeout=0.2):
                conn = key.data
                now = time.perf_counter()
                for _ in range(self._on_lines(conn, now, measured.open, tally)):
                    conn.submit(now)
                flush(conn)
        mode = "strict" if window == 1 else f"pipelined ({window} in flight)"
        return self._result(mode, tally, seconds, measured)

    def paced(self, *, rate: float, warmup: float, seconds: float) -> Result:
        """Offer ``rate`` submits/s in all, open loop: submit ``s`` goes out at ``s / rate``
        seconds, on connection ``s % connections``, whatever the replies do."""
        self.latencies = []
        tally = [0, 0]
        conns = self.conns
        count = len(conns)
        start = time.perf_counter()
        slot = 0
        lag = 0.0
        measured = Measured(self.pids, warmup=warmup, seconds=seconds)
        while measured.running(now := time.perf_counter()):
            while start + slot / rate <= now:
                conn = conns[slot % count]
                if measured.open:
                    lag = max(lag, now - (start + slot / rate))
                conn.submit(now)
                flush(conn)
                slot += 1
            timeout = max(0.0, start + slot / rate - time.perf_counter())
            for key, _ in self.selector.select(timeout=timeout):
                conn = key.data
                self._on_lines(conn, time.perf_counter(), measured.open, tally)
                flush(conn)
        result = self._result("half load", tally, seconds, measured)
        result.offered = rate
        result.lag_ms = lag * 1000
        return result

    def _result(self, mode: str, tally: list[int], seconds: float, measured: Measured) -> Result:
        """The run's result once it is over: the measurement closed, every reply in."""
        cpu = measured.close()
        self.drain()
        self.latencies.sort()
        return Result(
            mode,
            tally[0],
            tally[1],
            seconds,
            cpu,
            self.latencies,
            cpu_by_process=measured.by_process,
        )

    def drain(self) -> None:
        """Wait for the reply to every submit still in flight."""
        deadline = time.monotonic() + 60
        waiting = sum(len(c.sent) for c in self.conns)
        while waiting:
            if time.monotonic() > deadline:
                raise SystemExit(f"{waiting} submits unanswered after 60 s")
            for key, _ in self.selector.select(timeout=1):
                conn = key.data
                waiting -= self._on_lines(conn, 0.0, False, [0, 0])
                flush(conn)


def open_miner(
    selector: selectors.BaseSelector, port: int, user: str, *, extranonce_subscribe: bool = False
) -> Conn:
    """A non-blocking miner connection to 127.0.0.1:``port``, its subscribe (and
    ``mining.extranonce.subscribe``) and authorize sent, registered with ``selector``."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    conn = Conn(sock, user)
    conn.out = b'{"id":1,"method":"mining.subscribe","params":["bench/1"]}\n'
    if extranonce_subscribe:
        conn.out += b'{"id":2,"method":"mining.extranonce.subscribe","params":[]}\n'
    conn.out += b'{"id":3,"method":"mining.authorize","params":["%s","x"]}\n' % user.encode()
    selector.register(sock, selectors.EVENT_READ, conn)
    flush(conn)
    return conn


def steady_state(
    selector: selectors.BaseSelector,
    submit: Callable[[Conn, float], None],
    *,
    measure_from: float,
    end: float,
    on_start: Callable[[], None] | None = None,
) -> tuple[int, int, list[float]]:
    """Answer every reply with the next submit (``submit``) until ``end``; from
    ``measure_from`` on (``on_start`` called then), count accepted and rejected replies and
    their submit-to-reply latencies. New jobs are taken as they come (``Conn.job``, ``ntime``).
    (``bench/proxy_forward.py``'s loop, whose submits are its own.)"""
    accepted = rejected = 0
    latencies: list[float] = []
    started = False
    while (now := time.perf_counter()) < end:
        if not started and now >= measure_from:
            started = True
            if on_start is not None:
                on_start()
        for key, _ in selector.select(timeout=0.5):
            conn = key.data
            now = time.perf_counter()
            for line in receive_lines(conn):
                if line.startswith(SUBMIT_ID):
                    sent = conn.sent.popleft()
                    if now >= measure_from:
                        latencies.append(now - sent)
                        if b'"result":true' in line:
                            accepted += 1
                        else:
                            rejected += 1
                    submit(conn, now)
                elif line.startswith(NOTIFY):
                    params = json.loads(line)["params"]
                    conn.job, conn.ntime = params[0], params[7]
            flush(conn)
    return accepted, rejected, latencies


def flush(conn: Conn) -> None:
    while conn.out:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        conn.out = conn.out[sent:]


def receive_lines(conn: Conn) -> list[bytes]:
    try:
        data = conn.sock.recv(262144)
    except BlockingIOError:
        return []
    if not data:
        raise SystemExit("server closed a connection")
    conn.buf += data
    *lines, conn.buf = conn.buf.split(b"\n")
    return lines


# ----------------------------------------------------------------------------- targets


def pool_process(profile: str | None) -> tuple[subprocess.Popen[str], int]:
    difficulty = ["--start-difficulty", EASY, "--min-difficulty", EASY, "--max-difficulty", EASY]
    return start_server(
        [*difficulty, "--no-vardiff", "--job-interval", "100", "--block-interval", "100000"],
        profile=profile,
    )


class NodeTarget:
    """A node with a funded buyer whose one standard order takes every worker."""

    def __init__(
        self,
        directory: Path,
        profile: str | None,
        *,
        synchronous: str,
        extra: Sequence[str] = (),
    ) -> None:
        from marketplace.client import Credentials, MarketClient
        from marketplace.config import NodeConfig
        from marketplace.operator import account_create

        extra = [
            *("--sha256d-start-difficulty", EASY, "--sha256d-min-difficulty", EASY),
            *("--sha256d-max-difficulty", EASY, "--job-interval", "100"),
            *("--block-interval", "100000", "--synchronous", synchronous),
            *extra,
        ]
        self.proc, ports = start_node(extra, directory=directory, profile=profile)
        stratum = ports["stratum"]
        assert isinstance(stratum, dict)
        self.port = int(stratum["sha256d"])
        gateways = ports.get("gateway_pids", [])
        assert isinstance(gateways, list)
        #: The node's processes: the market, then its local gateways (``--gateways N``).
        self.pids = [self.proc.pid, *(int(pid) for pid in gateways)]
        made = account_create(NodeConfig(db=str(directory / "bench.db")), "buyer")
        self.client = MarketClient(
            f"http://127.0.0.1:{ports['api']}",
            credentials=Credentials("buyer", made["key_id"], made["secret"]),
        )
        self.client.deposit(ORDER_AMOUNT)
        self.order = self.client.create_order(
            algorithm="sha256d", type="standard", price=ORDER_PRICE, limit="0", amount=ORDER_AMOUNT
        )

    def check(self, driver: Driver) -> None:
        from stratum.core.templates import order_from_coinbase

        serving = sum(order_from_coinbase(c) == self.order.id for c in driver.coinb1.values())
        if serving != len(driver.conns):
            raise SystemExit(f"only {serving} of {len(driver.conns)} connections mine the order")

    def spent(self) -> str:
        order = self.client.get_order(self.order.id)
        return f"order {order.id} spent {order.spent} of {order.amount} BTC"

    def close(self) -> None:
        self.client.close()


def run_target(name: str, args: argparse.Namespace, profile: str | None) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="shares-bench-") as tmp:
        node: NodeTarget | None = None
        proc: subprocess.Popen[str] | subprocess.Popen[bytes]
        if name == "node":
            node = NodeTarget(Path(tmp), profile, synchronous=args.synchronous)
            proc, port = node.proc, node.port
        else:
            proc, port = pool_process(profile)
        driver: Driver | None = None
        results: list[Result] = []
        try:
            pids = node.pids if node is not None else [proc.pid]
            driver = Driver(pids=pids, port=port, connections=args.connections)
            if node is not None:
                node.check(driver)
            for window in args.windows:
                results.append(
                    driver.saturate(window=window, warmup=args.warmup, seconds=args.seconds)
                )
            if args.half_load:
                # Open-loop submits come one at a time per connection, as in strict mode:
                # that mode's maximum is the saturation of this pattern (else the highest).
                strict = [r.rate for r, w in zip(results, args.windows, strict=True) if w == 1]
                half = (strict[0] if strict else max(r.rate for r in results)) / 2
                results.append(driver.paced(rate=half, warmup=args.warmup, seconds=args.seconds))
            if node is not None:
                print(f"{name}: {node.spent()}")
        finally:
            if driver is not None:
                driver.close()
            if node is not None:
                node.close()
            proc.terminate()
            proc.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("pool", "node", "both"), default="both")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument(
        "--windows",
        type=lambda text: [int(w) for w in text.split(",")],
        default=[1, 4],
        help="submits in flight per connection, one run each (default 1,4)",
    )
    parser.add_argument("--window", type=int, help="one window only (as --windows N)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL"),
        default="FULL",
        help="the node's journal: FULL (default; a true survives power loss) or NORMAL",
    )
    parser.add_argument("--no-half-load", dest="half_load", action="store_false")
    args = parser.parse_args()
    if args.window is not None:
        args.windows = [args.window]
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    targets = ["pool", "node"] if args.target == "both" else [args.target]
    output = os.environ.get("BENCH_PROFILE")
    table: list[tuple[str, Result]] = []
    for name in targets:
        profile = None if not output else output if len(targets) == 1 else f"{output}.{name}"
        table += [(name, result) for result in run_target(name, args, profile)]

    print(
        f"connections={args.connections} seconds={args.seconds} (after {args.warmup} s warm-up)"
        + (f", node journal synchronous={args.synchronous}" if "node" in targets else "")
    )
    print(
        f"{'target':<6} {'mode':<30} {'accepted/s':>10} {'CPU ms/1000':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'server CPU':>10}"
    )
    for name, r in table:
        mode = r.mode if r.offered is None else f"half load ({r.offered:,.0f}/s offered)"
        print(
            f"{name:<6} {mode:<30} {r.rate:>10,.0f} {r.cpu_ms_per_1000:>11.1f} "
            f"{r.percentile(0.5):>8.2f} {r.percentile(0.99):>8.2f} "
            f"{r.cpu_s / r.seconds:>10.0%}" + (f"  (rejected {r.rejected})" if r.rejected else "")
        )
    for name, r in table:
        if r.offered is not None:
            verdict = "met" if r.percentile(0.99) <= 20 else "NOT met"
            late = f"; the client was up to {r.lag_ms:.1f} ms late" if r.lag_ms > 5 else ""
            print(f"{name}: p99 at half load <= 20 ms: {verdict}{late}")
        elif name == "node":
            verdict = "met" if r.cpu_ms_per_1000 <= 30 else "NOT met"
            print(f"node {r.mode}: <= 30 ms CPU per 1,000 shares: {verdict}")
    print(environment())


if __name__ == "__main__":
    main()
