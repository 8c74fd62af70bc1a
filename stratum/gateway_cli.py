"""``hashmarket gateway``: a Stratum gateway process linked to a market (``stratum.gateway``).

Its own flags say where it listens and which market it links to; every Stratum setting comes
from the market. The secret comes from ``--gateway-secret`` or ``HASHMARKET_GATEWAY_SECRET``
(the environment keeps it off the process list). SIGINT/SIGTERM stop it gracefully (listeners
closed, miners told within the grace period, the shares handed over answered); a second signal
stops it at once. Exit 1 when the market refuses it (a wrong secret) or a port cannot be bound.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from functools import partial

import structlog
import trio

from stratum.core.shares import Algorithm
from stratum.gateway import GatewayOptions, GatewayRefused, LinkSettings, run_gateway
from stratum.groups import leaves
from stratum.logconfig import configure_logging

SECRET_ENV = "HASHMARKET_GATEWAY_SECRET"
PARENT_POLL_S = 0.5

log = structlog.get_logger("stratum.gateway")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The gateway's flags."""
    parser.add_argument(
        "--market",
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="the market's gateway port; repeatable (tried in turn: a standby's address)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--sha256d-port", type=int, default=3333, help="sha256d Stratum port")
    parser.add_argument("--scrypt-port", type=int, default=3334, help="scrypt Stratum port")
    parser.add_argument(
        "--id", dest="gateway_id", default=None, help="this gateway's name (default host-pid)"
    )
    parser.add_argument(
        "--gateway-secret",
        default=None,
        help=f"the market's gateway secret (default: ${SECRET_ENV})",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the Stratum ports with other gateways on this machine (SO_REUSEPORT)",
    )
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log-format", default="auto", choices=["auto", "console", "json"])
    parser.add_argument("--log-level", default="info")


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"--market wants HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def options_from_args(args: argparse.Namespace) -> GatewayOptions:
    """The gateway's options from its flags. Raises ``ValueError`` for a bad address or no
    secret."""
    secret = args.gateway_secret or os.environ.get(SECRET_ENV)
    if not secret:
        raise ValueError(f"a gateway needs --gateway-secret or {SECRET_ENV}")
    gateway_id = args.gateway_id or f"{socket.gethostname()}-{os.getpid()}"
    return GatewayOptions(
        link=LinkSettings(
            markets=tuple(_address(m) for m in args.market),
            gateway_id=gateway_id[:64],
            secret=secret.encode(),
        ),
        host=args.host,
        ports={Algorithm.SHA256D: args.sha256d_port, Algorithm.SCRYPT: args.scrypt_port},
        reuse_port=args.reuse_port,
    )


async def serve_gateway(options: GatewayOptions, *, exit_with_parent: bool = False) -> None:
    """Run a gateway until SIGINT/SIGTERM (or its parent's end, with ``exit_with_parent``),
    then stop it gracefully; a second signal stops it at once. Raises as ``run_gateway``."""
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def gateway() -> None:
                await run_gateway(options, stop=stop)
                nursery.cancel_scope.cancel()

            async def watch_signals() -> None:
                async for signum in signals:
                    if stop.is_set():
                        nursery.cancel_scope.cancel()
                        return
                    log.info("gateway.stopping", signal=signal.Signals(signum).name)
                    stop.set()

            async def watch_parent() -> None:
                parent = os.getppid()
                while os.getppid() == parent:  # noqa: ASYNC110 (no event tells of a parent's end)
                    await trio.sleep(PARENT_POLL_S)
                log.warning("gateway.parent_gone")
                stop.set()

            nursery.start_soon(gateway)
            nursery.start_soon(watch_signals)
            if exit_with_parent:
                nursery.start_soon(watch_parent)


def main(args: argparse.Namespace) -> int:
    """``hashmarket gateway``: 0 after a signal, 1 on a bad flag, a refusal or a port in use."""
    try:
        options = options_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    configure_logging(args.log_format, level=args.log_level)
    refused: list[BaseException] = []
    try:
        trio.run(partial(serve_gateway, options, exit_with_parent=args.exit_with_parent))
    except* (GatewayRefused, OSError) as group:
        refused.extend(leaves(group))
    for problem in refused:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if refused else 0
