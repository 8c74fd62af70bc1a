"""Benchmark: failover to a standby on PostgreSQL, and what it loses (it must lose nothing).

Each round runs ``tests/e2e/failover.py``'s ``run_failover`` on a new, empty database: an active
``hashmarket serve`` and a ``serve --standby`` on it, loopback miners submitting shares and an
API client making deposits on the same ports, then SIGKILL of the active market mid-load.
Printed per round: the time from the SIGKILL to the standby serving (its ports file written,
so every listener bound: the Stratum port is bound first, so a share may be acknowledged a
little before), and to its first acknowledged share (on a connection made after the kill); the
acknowledged shares the journal lacks (lost, must be 0) or holds twice; the deposits
acknowledged and journaled. With ``--gateways N`` the miners mine through N gateways, which
keep their connections and re-link to the standby (the first acknowledged share is then any
after the kill). Without ``--server`` the benchmark starts its
own PostgreSQL server in a temporary folder (as the tests do). Run:

    .venv/bin/python bench/failover.py [--rounds 3] [--miners 4] [--gateways 0]
        [--server postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

import psycopg
import trio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stratum.logconfig import configure_logging  # noqa: E402
from tests.e2e.failover import Failover, run_failover  # noqa: E402
from tests.pg import PostgresServer, find_bindir, why_not_available  # noqa: E402


def new_database(server: str, n: int) -> str:
    """A new empty database ``failover_<pid>_<n>`` on the server at ``server``; its URL."""
    name = f"failover_{os.getpid()}_{n}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


def report(n: int, seen: Failover) -> None:
    print(
        f"round {n}: serving after {seen.serving_after_s * 1000:.0f} ms,"
        f" first acknowledged share after {seen.first_ack_after_s * 1000:.0f} ms;"
        f" shares acknowledged {len(seen.acked)}, lost {len(seen.lost)},"
        f" doubled {seen.doubled}; deposits acknowledged {len(seen.deposits_acked)},"
        f" journaled {seen.deposits_journaled}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--miners", type=int, default=4)
    parser.add_argument(
        "--gateways",
        type=int,
        default=0,
        help="miners through N hashmarket gateway processes (they keep their connections)",
    )
    parser.add_argument(
        "--server", help="postgresql://user@host/postgres to make databases on (default: own)"
    )
    args = parser.parse_args()
    configure_logging("json", level="warning")
    own: PostgresServer | None = None
    server = args.server
    if server is None:
        reason = why_not_available()
        if reason is not None:
            sys.exit(f"cannot start PostgreSQL: {reason}")
        bindir = find_bindir()
        assert bindir is not None
        own = PostgresServer(bindir)
        own.init()
        own.start()
        server = own.url()
    rounds: list[Failover] = []
    try:
        for n in range(1, args.rounds + 1):
            url = new_database(server, n)
            with tempfile.TemporaryDirectory() as tmp:
                seen = trio.run(
                    partial(
                        run_failover, url, Path(tmp), miners=args.miners, gateways=args.gateways
                    )
                )
            report(n, seen)
            rounds.append(seen)
    finally:
        if own is not None:
            own.close()
    serving = [r.serving_after_s * 1000 for r in rounds]
    first = [r.first_ack_after_s * 1000 for r in rounds]
    print(
        f"SIGKILL to serving: median {statistics.median(serving):.0f} ms, max {max(serving):.0f}"
        f" ms; to the first acknowledged share: median {statistics.median(first):.0f} ms,"
        f" max {max(first):.0f} ms; shares lost in all: {sum(len(r.lost) for r in rounds)}"
    )
    print(f"python {platform.python_version()} on {platform.platform()}, cpus={os.cpu_count()}")
    print("command:", " ".join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    main()
