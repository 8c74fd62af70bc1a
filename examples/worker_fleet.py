"""Run a fleet of K CPU workers against a market's Stratum port, then print their summary.

The workers mine for the seller account given by ``--user ACCOUNT.WORKER`` (default:
``$HASHMARKET_ACCOUNT.rig``; a seller account is created by the market at the first share it
pays). The Stratum URL comes from ``--url`` or, without it, from ``market.info`` at
``HASHMARKET_URL``::

    export HASHMARKET_URL=http://127.0.0.1:8645
    python examples/worker_fleet.py --fleet 3 --duration 60 --user seller.rig
    python examples/worker_fleet.py --url stratum+tcp://127.0.0.1:3333 --fleet 2 --duration 30

It uses ``workers.miner.Miner`` in-process (the same engine as ``python -m workers --fleet K``);
Ctrl-C stops it early and still prints the summary.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import trio
from _common import api_url

from marketplace.client import ApiError, AsyncMarketClient
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from workers.cli import parse_stratum_url
from workers.miner import Miner, MinerConfig, MinerSummary


async def stratum_address(algorithm: Algorithm) -> tuple[str, int]:
    """The market's Stratum host and port for ``algorithm``, from ``market.info``."""
    async with AsyncMarketClient(api_url()) as client:
        info = await client.market_info()
    for market in info.markets:
        if market.algorithm == algorithm and market.stratum_port:
            return market.stratum_host, market.stratum_port
    raise SystemExit(f"the market at {api_url()} has no Stratum port for {algorithm.value}")


def print_summary(summary: MinerSummary) -> None:
    print(
        f"fleet of {len(summary.workers)}: uptime {summary.uptime_s:.1f}s,"
        f" {summary.hashes} hashes ({summary.hashrate:.0f} H/s), {summary.processes} processes"
    )
    for worker in summary.workers:
        rejected = sum(worker.rejected.values())
        print(
            f"  {worker.username:24} accepted {worker.accepted:5} rejected {rejected:3}"
            f" difficulty {worker.difficulty} order {worker.order or '-'}"
        )
    print(f"accepted shares: {summary.accepted}")
    print(f"rejected shares: {sum(summary.rejected.values())}", flush=True)


async def run(args: argparse.Namespace) -> int:
    algorithm = Algorithm(args.algorithm)
    if args.url:
        host, port = parse_stratum_url(args.url)
    else:
        try:
            host, port = await stratum_address(algorithm)
        except ApiError as error:
            print(f"error: {error.code} {error.message}", file=sys.stderr)
            return 1
    user = args.user or f"{os.environ.get('HASHMARKET_ACCOUNT', 'seller')}.rig"
    config = MinerConfig(
        host=host,
        port=port,
        user=user,
        algorithm=algorithm,
        processes=args.processes,
        fleet=args.fleet,
        duration=args.duration,
    )
    print(
        f"starting {args.fleet} workers as {user} on stratum+tcp://{host}:{port}"
        f" for {args.duration or 'ever'} s",
        flush=True,
    )
    miner = Miner(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    miner.stop()  # the run ends cleanly and still returns its summary

            nursery.start_soon(stop_on_signal)
            summary = await miner.run()
            nursery.cancel_scope.cancel()
    print_summary(summary)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="stratum+tcp://HOST:PORT (default: ask API)")
    parser.add_argument("--user", default=None, help="ACCOUNT.WORKER the shares are paid to")
    parser.add_argument("--algorithm", default="sha256d", help="sha256d (default) or scrypt")
    parser.add_argument("--fleet", type=int, default=3, help="number of workers K")
    parser.add_argument("--processes", type=int, default=1, help="hashing processes")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to mine")
    parser.add_argument("--log-level", default="warning", help="worker log level")
    args = parser.parse_args()
    configure_logging("console", level=args.log_level)
    return trio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
