"""``python -m stratum serve``: a standalone Stratum pool (built-in job stream, shares counted).

Handy for benchmarks and for pointing a real miner at it::

    python -m stratum serve --port 3333 --algorithm sha256d
    minerd -a sha256d -o stratum+tcp://127.0.0.1:3333 -u acct.rig1 -p x

Flags override a ``--config`` TOML file, which overrides ``HASHMARKET_STRATUM_*`` variables.
SIGINT/SIGTERM shut down gracefully.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from typing import Any

import msgspec
import structlog
import trio

from stratum.config import StratumConfig, load_config
from stratum.core.shares import Algorithm
from stratum.gctuning import tune_gc
from stratum.logconfig import configure_logging
from stratum.pool import PoolWorkSource
from stratum.server import StratumServer, trio_wall_clock

log = structlog.get_logger("stratum.main")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m stratum")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a standalone Stratum pool")
    serve.add_argument("--config", help="TOML file with StratumConfig fields")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int, help="0 picks a free port (logged)")
    serve.add_argument("--algorithm", choices=[a.value for a in Algorithm])
    for name in ("start", "min", "max"):
        serve.add_argument(f"--{name}-difficulty", type=float)
    serve.add_argument("--no-vardiff", dest="vardiff", action="store_const", const=False)
    serve.add_argument("--target-share-interval", dest="target_share_interval_s", type=float)
    serve.add_argument("--job-interval", dest="job_interval_s", type=float)
    serve.add_argument("--block-interval", dest="block_interval_s", type=float)
    serve.add_argument("--idle-timeout", dest="idle_timeout_s", type=float)
    serve.add_argument("--stale-grace", dest="stale_grace_s", type=float)
    serve.add_argument("--max-consecutive-rejects", type=int)
    serve.add_argument("--stats-interval", type=float, default=10.0, help="seconds; 0 = off")
    serve.add_argument("--log-format", choices=["auto", "console", "json"], default="auto")
    serve.add_argument("--log-level", default="info")
    return parser


_NOT_CONFIG = {"command", "config", "stats_interval", "log_format", "log_level"}


async def serve(config: StratumConfig, *, stats_interval: float) -> None:
    """Run the pool until SIGINT/SIGTERM, then shut down gracefully."""
    clock = trio_wall_clock()
    pool = PoolWorkSource(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        if stats_interval > 0:
            nursery.start_soon(_report, server, pool, stats_interval)
        async with trio.open_nursery() as server_nursery:
            await server_nursery.start(server.run)
            print(f"listening {config.host}:{server.port} {config.algorithm.value}", flush=True)
            server_nursery.start_soon(_shutdown_on_signal, server)
        # server.run returned: every connection is closed.
        nursery.cancel_scope.cancel()


async def _shutdown_on_signal(server: StratumServer) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("signal", signum=int(signum))
            break
    server.shutdown()


async def _report(server: StratumServer, pool: PoolWorkSource, interval: float) -> None:
    while True:
        await trio.sleep(interval)
        log.info(
            "pool.stats",
            connections=server.live_connections,
            accepted=pool.stats.accepted,
            rejected=dict(pool.stats.rejected),
            jobs=pool.stats.jobs,
            blocks=pool.stats.blocks,
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, level=args.log_level)
    cli: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    try:
        config = load_config(cli=cli, toml_path=args.config, environ=os.environ)
    except (ValueError, OSError, msgspec.ValidationError) as exc:
        print(f"bad configuration: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    trio.run(functools.partial(serve, config, stats_interval=args.stats_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
