"""``python -m stratum serve``: a standalone Stratum pool (built-in job stream, shares counted).

Handy for benchmarks, for pointing a real miner at it, and as the buyer's own pool when trying
proxy mode locally (``hashmarket pool-server`` runs the same)::

    python -m stratum serve --port 3333 --algorithm sha256d --stats-file pool.json
    minerd -a sha256d -o stratum+tcp://127.0.0.1:3333 -u acct.rig1 -p x

Its share accounting is readable while it runs: a ``pool.stats`` line every
``--stats-interval`` seconds, and with ``--stats-file FILE`` the same as JSON, rewritten
atomically each time and once more at shutdown (``{"accepted", "rejected": {reason: n},
"work": {"account.worker": hashes}, "connections", "jobs", "blocks", "time_ms"}``).

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
    add_serve_arguments(commands.add_parser("serve", help="run a standalone Stratum pool"))
    return parser


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The options of ``serve`` (also ``hashmarket pool-server``'s)."""
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
    serve.add_argument(
        "--stats-file", default=None, help="also write the share counts here as JSON"
    )
    serve.add_argument("--log-format", choices=["auto", "console", "json"], default="auto")
    serve.add_argument("--log-level", default="info")


_NOT_CONFIG = {
    "command",
    "config",
    "stats_interval",
    "stats_file",
    "log_format",
    "log_level",
    "handler",
}


async def serve(
    config: StratumConfig, *, stats_interval: float, stats_file: str | None = None
) -> None:
    """Run the pool until SIGINT/SIGTERM, then shut down gracefully."""
    clock = trio_wall_clock()
    pool = PoolWorkSource(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        if stats_interval > 0:
            nursery.start_soon(_report, server, pool, stats_interval, stats_file)
        async with trio.open_nursery() as server_nursery:
            await server_nursery.start(server.run)
            print(f"listening {config.host}:{server.port} {config.algorithm.value}", flush=True)
            server_nursery.start_soon(_shutdown_on_signal, server)
        # server.run returned: every connection is closed.
        nursery.cancel_scope.cancel()
    if stats_file:
        write_stats(stats_file, server, pool)


async def _shutdown_on_signal(server: StratumServer) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("signal", signum=int(signum))
            break
    server.shutdown()


class StatsFile(msgspec.Struct, frozen=True, kw_only=True):
    """What ``--stats-file`` holds: the pool's share accounting since it started."""

    accepted: int
    rejected: dict[str, int]
    work: dict[str, int]
    connections: int
    jobs: int
    blocks: int
    time_ms: int


def write_stats(path: str, server: StratumServer, pool: PoolWorkSource) -> None:
    """Write the pool's counts to ``path`` as JSON, atomically (a reader never sees half)."""
    stats = pool.stats
    body = StatsFile(
        accepted=stats.accepted,
        rejected=dict(stats.rejected),
        work=dict(stats.work),
        connections=server.live_connections,
        jobs=stats.jobs,
        blocks=stats.blocks,
        time_ms=server.clock(),
    )
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(msgspec.json.encode(body))
    os.replace(tmp, path)


async def _report(
    server: StratumServer, pool: PoolWorkSource, interval: float, stats_file: str | None
) -> None:
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
        if stats_file:
            write_stats(stats_file, server, pool)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    return run_serve(build_parser().parse_args(argv))


def run_serve(args: argparse.Namespace) -> int:
    """``serve`` with parsed ``args`` (``add_serve_arguments``); the exit status."""
    configure_logging(args.log_format, level=args.log_level)
    cli: dict[str, Any] = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    try:
        config = load_config(cli=cli, toml_path=args.config, environ=os.environ)
    except (ValueError, OSError, msgspec.ValidationError) as exc:
        print(f"bad configuration: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    trio.run(
        functools.partial(
            serve, config, stats_interval=args.stats_interval, stats_file=args.stats_file
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
