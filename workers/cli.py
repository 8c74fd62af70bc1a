"""``python -m workers`` / ``hashmarket worker``: the CPU miner's command line (see cli.md).

``hashmarket``'s dispatcher calls ``add_arguments(parser)`` to build its ``worker`` sub-command
and ``main_from_args(args)`` to run it; ``main(argv)`` is the standalone entry point. On exit
(``--duration`` over, SIGINT or SIGTERM) the summary is printed to stdout as one JSON object.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections.abc import Sequence

import msgspec
import structlog
import trio

from stratum.client import ClientConfig
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from workers.miner import Miner, MinerConfig
from workers.processes import default_processes

log = structlog.get_logger("workers.cli")

_URL = re.compile(
    r"^(?:(?:stratum\+tcp|tcp)://)?(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d{1,5})/?$"
)
_USER = re.compile(r"^[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,32})?$")


def parse_stratum_url(url: str) -> tuple[str, int]:
    """``stratum+tcp://HOST:PORT`` (also ``tcp://`` or bare ``HOST:PORT``) -> (host, port).

    Raises ``ValueError`` for anything else.
    """
    match = _URL.match(url.strip())
    if match is None:
        raise ValueError(f"not a stratum+tcp://HOST:PORT url: {url!r}")
    port = int(match["port"])
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {url!r}")
    return match["ip6"] or match["host"], port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options, on ``parser`` (its own or ``hashmarket worker``)."""
    parser.add_argument("--url", required=True, help="stratum+tcp://HOST:PORT")
    parser.add_argument("--user", required=True, help="ACCOUNT.WORKER (worker optional)")
    parser.add_argument("--password", default="x", help="free text; d=N suggests a difficulty")
    parser.add_argument(
        "--algorithm",
        choices=[a.value for a in Algorithm],
        default=Algorithm.SHA256D.value,
        help="sha256d (default) or scrypt",
    )
    parser.add_argument(
        "--processes", type=int, default=None, help="hashing processes (default: every core)"
    )
    parser.add_argument(
        "--fleet", type=int, default=1, help="run K workers named WORKER-1..K, one connection each"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument(
        "--status-interval", type=float, default=5.0, help="seconds between status lines"
    )
    parser.add_argument(
        "--backoff-max", type=float, default=60.0, help="longest reconnect delay, seconds"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "console", "json"], default="auto", help="log renderer"
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")


def build_parser() -> argparse.ArgumentParser:
    """The standalone ``python -m workers`` parser."""
    parser = argparse.ArgumentParser(
        prog="python -m workers", description="CPU miner for a Stratum v1 pool or market."
    )
    add_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> MinerConfig:
    """A ``MinerConfig`` from parsed options. Raises ``ValueError`` for invalid values."""
    host, port = parse_stratum_url(args.url)
    if not _USER.match(args.user):
        raise ValueError(f"--user must be ACCOUNT.WORKER of [A-Za-z0-9_-], got {args.user!r}")
    processes = args.processes if args.processes is not None else default_processes()
    if processes < 1:
        raise ValueError("--processes must be at least 1")
    if args.fleet < 1:
        raise ValueError("--fleet must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    if args.status_interval <= 0:
        raise ValueError("--status-interval must be positive")
    return MinerConfig(
        host=host,
        port=port,
        user=args.user,
        password=args.password,
        algorithm=Algorithm(args.algorithm),
        processes=processes,
        fleet=args.fleet,
        duration=args.duration,
        status_interval=args.status_interval,
        backoff_max=max(args.backoff_max, 1.0),
        client=ClientConfig(),
    )


async def run(args: argparse.Namespace) -> int:
    """Mine as ``args`` say until the duration ends or SIGINT/SIGTERM; print the summary.

    Returns the exit code (0 after a clean stop, 2 for invalid options).
    """
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    miner = Miner(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("worker.stopping", signal=signal.Signals(signum).name)
                    miner.stop()

            nursery.start_soon(stop_on_signal)
            summary = await miner.run()
            nursery.cancel_scope.cancel()
    sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    sys.stdout.flush()
    return 0


def main_from_args(args: argparse.Namespace) -> int:
    """Run with already parsed options (``hashmarket worker`` delegates here)."""
    configure_logging(args.log_format, level=args.log_level)
    return trio.run(run, args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m workers [options]``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return main_from_args(args)
