"""Benchmark: server memory per idle subscribed connection.

Starts ``python -m stratum serve`` in its own process, opens ``--connections`` (default 10,000)
loopback connections from this process, subscribes each, and prints the server's resident
memory (VmRSS) before and after, per connection. Raises RLIMIT_NOFILE to the hard limit for
both processes. Run:

    .venv/bin/python bench/stratum_connections.py [--connections 10000] [--authorize]
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import time
from pathlib import Path

from _stratum_server import environment, start_server

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--authorize", action="store_true", help="also authorize (jobs flow)")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the server
    if hard < args.connections + 100:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low")

    proc, port = start_server([])
    time.sleep(0.5)  # let the interpreter settle before the baseline (not a sync point)
    before = rss_bytes(proc.pid)

    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    pending: dict[socket.socket, bytes] = {}
    started = time.perf_counter()
    try:
        for i in range(args.connections):
            sock = socket.create_connection(("127.0.0.1", port))
            request = b'{"id":1,"method":"mining.subscribe","params":["bench/1"]}\n'
            if args.authorize:
                request += b'{"id":2,"method":"mining.authorize","params":["idle.w%d","x"]}\n' % i
            sock.sendall(request)
            sock.setblocking(False)
            socks.append(sock)
            pending[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
            # Drain replies as we go so the accept backlog never overflows.
            drain(selector, pending, timeout=0)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            drain(selector, pending, timeout=1)
        if pending:
            raise SystemExit(f"{len(pending)} connections got no subscribe reply")
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # let the server finish its bookkeeping before measuring
        after = rss_bytes(proc.pid)
    finally:
        for sock in socks:
            sock.close()
        proc.terminate()
        proc.wait(30)

    per_conn = (after - before) / args.connections
    print(f"connections={args.connections} authorized={args.authorize}")
    print(f"server RSS: before={before / 2**20:.1f} MiB after={after / 2**20:.1f} MiB")
    print(f"server RSS per connection: {per_conn / 1024:.1f} KiB")
    print(f"connected and subscribed in {elapsed:.1f} s")
    print(environment())


def drain(
    selector: selectors.BaseSelector, pending: dict[socket.socket, bytes], timeout: float
) -> None:
    for key, _ in selector.select(timeout=timeout):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            continue
        if not data:
            raise SystemExit("server closed a connection")
        if sock in pending:
            buf = pending[sock] + data
            if b"\n" in buf:  # the subscribe reply is the first line
                del pending[sock]
            else:
                pending[sock] = buf


if __name__ == "__main__":
    main()
