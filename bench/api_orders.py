"""Benchmark: signed ``order.create`` + ``order.get`` calls per second through the buyer API.

A real node (``marketplace.assembly.run_node``: hypercorn + the API app + Engine + SQLite
journal, the rest of the node idle) runs in a child process; this process is one client
(``marketplace.client.MarketClient``, one keep-alive HTTP connection, every call signed) that
alternates ``order.create`` and ``order.get`` sequentially. Printed:
calls/s overall, and p50/p99 latency of each method, plus the environment. The rate limit is
raised for the run (the default 20/s would be the figure otherwise). Run:

    .venv/bin/python bench/api_orders.py [--pairs 500] [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def serve(workdir: Path, synchronous: str) -> None:
    """The child: a node built by the assembly (faucet on), one account, the API on a free port."""
    import trio

    from marketplace.api.app import ApiSettings
    from marketplace.assembly import Node, run_node
    from marketplace.config import NodeConfig
    from stratum.logconfig import configure_logging

    configure_logging("json", level="warning")
    config = NodeConfig(
        db=str(workdir / "bench.db"),
        api_port=0,
        sha256d_port=0,
        scrypt_port=0,
        faucet=True,
        synchronous=synchronous,
    )
    # The one thing a node has no flag for: the rate limit, raised for the run.
    api = ApiSettings(rate_per_s=1_000_000, burst=1_000_000)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(partial(run_node, config, api=api))
            boot = await node.core.create_account("bench")
            ready = workdir / "ready.json"
            tmp = workdir / "ready.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"port": node.api_port, **boot._asdict()}, fh)
            tmp.rename(ready)

    trio.run(main)


def client(workdir: Path, pairs: int) -> dict[str, float]:
    from marketplace.client import Credentials, MarketClient

    ready = workdir / "ready.json"
    deadline = time.monotonic() + 30
    while not ready.exists():
        if time.monotonic() > deadline:
            raise SystemExit("server did not start within 30 s")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    creds = Credentials(info["account_id"], info["key_id"], info["secret"])
    create_s: list[float] = []
    get_s: list[float] = []
    with MarketClient(f"http://127.0.0.1:{info['port']}", credentials=creds) as api:
        api.deposit("1000")
        for _ in range(20):  # warm-up
            api.get_order(
                api.create_order(
                    algorithm="sha256d", type="standard", price="0.002", limit="1", amount="0.001"
                ).id
            )
        started = time.perf_counter()
        for _ in range(pairs):
            t0 = time.perf_counter()
            order = api.create_order(
                algorithm="sha256d", type="standard", price="0.002", limit="1", amount="0.001"
            )
            t1 = time.perf_counter()
            api.get_order(order.id)
            t2 = time.perf_counter()
            create_s.append(t1 - t0)
            get_s.append(t2 - t1)
        elapsed = time.perf_counter() - started
    create_s.sort()
    get_s.sort()
    return {
        "calls_per_s": 2 * pairs / elapsed,
        "create_p50_ms": 1000 * percentile(create_s, 0.5),
        "create_p99_ms": 1000 * percentile(create_s, 0.99),
        "get_p50_ms": 1000 * percentile(get_s, 0.5),
        "get_p99_ms": 1000 * percentile(get_s, 0.99),
        "mean_pair_ms": 1000
        * statistics.fmean(a + b for a, b in zip(create_s, get_s, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=500, help="create+get pairs (default 500)")
    parser.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL"))
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve), args.synchronous)
        return
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, "--synchronous", args.synchronous],
            cwd=ROOT,
        )
        try:
            figures = client(Path(tmp), args.pairs)
        finally:
            child.terminate()
            child.wait(timeout=10)
    print("api_orders: signed order.create + order.get, one client process, one connection")
    print(f"  calls/s          {figures['calls_per_s']:.0f}")
    for name, key in (("order.create", "create"), ("order.get", "get")):
        p50, p99 = figures[f"{key}_p50_ms"], figures[f"{key}_p99_ms"]
        print(f"  {name:<16} p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    print(f"  pairs            {args.pairs}  (journal synchronous={args.synchronous})")
    print(f"  python           {platform.python_version()} ({platform.python_implementation()})")
    print(f"  platform         {platform.platform()}")
    print(f"  cpus             {os.cpu_count()}")
    print(f"  command          {' '.join([sys.executable, *sys.argv])}")


if __name__ == "__main__":
    main()
