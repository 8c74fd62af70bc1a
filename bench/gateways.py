"""Benchmark: a whole node's share path against its number of Stratum gateways.

For each ``--gateways`` count (default ``0,1,2``: Stratum in the market process, then one and
two ``serve --gateways N`` children sharing the port) it starts ``hashmarket serve`` on a new
database with one buyer's standard order that takes every worker (``stratum_shares.py``'s
``node`` target: every share checked, charged, journaled ``synchronous=FULL`` before its
``true``), drives it with ``--connections`` raw miners (the same driver), and for each
``--windows`` entry (default ``1,4``: strict request/reply, then four submits in flight per
connection) prints accepted shares/s, submit-to-reply p50/p99 (through a gateway that is the
durable ack: gateway, link, market, journal, link, gateway), the CPU time per 1,000 accepted
shares of all the node's processes together (market + gateways: the figure that hardly depends
on how busy the machine is) and of the market alone, and the market process's share of a
core. On a machine with few cores this process's client competes with the node for them:
compare the CPU per 1,000 shares, and read shares/s against the core count printed last. Run:

    .venv/bin/python bench/gateways.py [--gateways 0,1,2] [--windows 1,4]
        [--connections 1000] [--seconds 10] [--warmup 2] [--synchronous FULL|NORMAL]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

from _stratum_server import environment
from stratum_shares import Driver, NodeTarget, Result


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def run(gateways: int, args: argparse.Namespace) -> list[Result]:
    """Every window's result on a node with ``gateways`` gateways."""
    with tempfile.TemporaryDirectory(prefix="gateways-bench-") as tmp:
        node = NodeTarget(
            Path(tmp), None, synchronous=args.synchronous, extra=["--gateways", str(gateways)]
        )
        if len(node.pids) != gateways + 1:
            raise SystemExit(f"expected {gateways} gateway processes, got {node.pids[1:]}")
        driver: Driver | None = None
        try:
            driver = Driver(pids=node.pids, port=node.port, connections=args.connections)
            node.check(driver)
            results = [
                driver.saturate(window=window, warmup=args.warmup, seconds=args.seconds)
                for window in args.windows
            ]
            print(f"gateways={gateways}: {node.spent()}")
            return results
        finally:
            if driver is not None:
                driver.close()
            node.close()
            node.proc.terminate()
            node.proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=_counts, default=[0, 1, 2], help="default 0,1,2")
    parser.add_argument("--windows", type=_counts, default=[1, 4], help="default 1,4")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    table = [(count, result) for count in args.gateways for result in run(count, args)]
    print(
        f"connections={args.connections} seconds={args.seconds} (after {args.warmup} s"
        f" warm-up), journal synchronous={args.synchronous}"
    )
    print(
        f"{'gateways':>8} {'mode':<24} {'accepted/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'CPU ms/1000':>11} {'market ms/1000':>14} {'market CPU':>10} {'all CPU':>8}"
    )
    for count, r in table:
        market = r.cpu_by_process[0] if r.cpu_by_process else r.cpu_s
        print(
            f"{count:>8} {r.mode:<24} {r.rate:>10,.0f} {r.percentile(0.5):>8.2f}"
            f" {r.percentile(0.99):>8.2f} {r.cpu_ms_per_1000:>11.1f}"
            f" {market * 1e6 / max(r.accepted, 1):>14.1f} {market / r.seconds:>10.0%}"
            f" {r.cpu_s / r.seconds:>8.0%}" + (f"  (rejected {r.rejected})" if r.rejected else "")
        )
    print(environment())


if __name__ == "__main__":
    main()
