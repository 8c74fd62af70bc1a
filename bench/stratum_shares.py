"""Benchmark: accepted shares per second through one Stratum server process, and latency.

Starts ``python -m stratum serve`` in its own process with a difficulty so easy that every
hash is a valid share (the server still does the full check: job, ntime, duplicate, merkle
root, header hash, target), then drives it from this process with raw non-blocking sockets:
``--connections`` miners (default 1000) each keep ``--window`` submits in flight. Prints
accepted shares/s over ``--seconds`` after a warm-up, p50/p99 submit-to-reply latency, the
server's CPU use, and the environment. Run:

    .venv/bin/python bench/stratum_shares.py [--connections 1000] [--window 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path

from _stratum_server import environment, start_server

ROOT = Path(__file__).resolve().parent.parent
NOTIFY = b'{"id":null,"method":"mining.notify"'


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Conn:
    __slots__ = ("buf", "en1", "job", "nonce", "ntime", "out", "sent", "sock", "user")

    def __init__(self, sock: socket.socket, user: str) -> None:
        self.sock = sock
        self.user = user
        self.buf = b""
        self.out = b""
        self.job = ""
        self.ntime = ""
        self.nonce = 0
        self.sent: collections.deque[float] = collections.deque()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4, help="submits in flight per connection")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    proc, port = start_server(
        [
            "--start-difficulty",
            "1e-12",
            "--min-difficulty",
            "1e-12",
            "--max-difficulty",
            "1e-12",
            "--no-vardiff",
            "--job-interval",
            "100",
            "--block-interval",
            "100000",
        ]
    )
    selector = selectors.DefaultSelector()
    conns: list[Conn] = []
    try:
        for i in range(args.connections):
            conns.append(open_miner(selector, port, f"bench.w{i}"))
        # Wait for every connection's first job.
        ready = 0
        deadline = time.monotonic() + 60
        while ready < len(conns):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {ready} connections got a job")
            for key, _ in selector.select(timeout=1):
                conn = key.data
                for line in receive_lines(conn):
                    if line.startswith(NOTIFY):
                        params = json.loads(line)["params"]
                        if not conn.job:
                            ready += 1
                        conn.job, conn.ntime = params[0], params[7]
        # Steady state: keep `window` submits in flight on every connection.
        template = (
            b'{"id":4,"method":"mining.submit","params":["%s","%s","00000000","%s","%08x"]}\n'
        )

        def submit(conn: Conn, now: float) -> None:
            conn.nonce += 1
            conn.out += template % (
                conn.user.encode(),
                conn.job.encode(),
                conn.ntime.encode(),
                conn.nonce,
            )
            conn.sent.append(now)

        now = time.perf_counter()
        for conn in conns:
            for _ in range(args.window):
                submit(conn, now)
            flush(conn)
        start = time.perf_counter()
        measure_from = start + args.warmup
        cpu_start: list[float] = []
        accepted, rejected, latencies = steady_state(
            selector,
            submit,
            measure_from=measure_from,
            end=measure_from + args.seconds,
            on_start=lambda: cpu_start.append(cpu_seconds(proc.pid)),
        )
        cpu_used = cpu_seconds(proc.pid) - (cpu_start[0] if cpu_start else 0.0)
    finally:
        for conn in conns:
            conn.sock.close()
        proc.terminate()
        proc.wait(10)

    latencies.sort()
    rate = accepted / args.seconds
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    print(f"connections={args.connections} window={args.window} seconds={args.seconds}")
    print(f"accepted shares/s: {rate:,.0f}  (rejected: {rejected})")
    print(f"submit-to-reply latency: p50={p50:.2f} ms  p99={p99:.2f} ms")
    print(f"server CPU: {cpu_used / args.seconds:.0%} of one core")
    verdict = "met" if rate >= 10_000 else "NOT met"
    if args.connections < 1000:
        verdict += f" (but this run had {args.connections} connections, the floor asks 1,000)"
    print(f"floor 10,000 shares/s with 1,000 connections: {verdict}")
    print(environment())


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
    their submit-to-reply latencies. New jobs are taken as they come."""
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
                if line.startswith(b'{"id":4'):
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
    if conn.out:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
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


if __name__ == "__main__":
    main()
