"""``hashmarket``: the one console script (also ``python -m marketplace``).

Sub-commands (see ``../shared/spec/cli.md``): ``serve``, ``account create``, ``account key``
(a recovery key, security.md), ``migrate`` (a SQLite market into PostgreSQL), ``demo``,
``worker`` (the CPU miner, same as ``python -m workers``), ``pool-server`` (a standalone pool,
same as ``python -m stratum serve``: the buyer's own pool for trying proxy mode),
``operator-key create|revoke`` (control.md), and the API client commands (``market``,
``account balance|ledger|deposit|withdraw``, ``order``, ``pool``, ``key``, and the operator's
``admin``). Heavy modules are imported only by the sub-command that needs them, so
``hashmarket --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    import marketplace.client_cli as client_cli
    from marketplace.config import add_serve_arguments
    from stratum import __main__ as stratum_main
    from workers import cli as worker_cli

    parser = argparse.ArgumentParser(
        prog="hashmarket",
        description="An emulated hash-power marketplace: Stratum server, order book, buyer API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a market: Stratum listeners, order book, API")
    add_serve_arguments(serve)
    serve.set_defaults(handler=_serve)

    demo = sub.add_parser("demo", help="a live local market with a buyer, two orders, workers")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    demo.add_argument("--workers", type=int, default=3, help="local workers (default 3)")
    demo.add_argument("--processes", type=int, default=None, help="hashing processes")
    demo.add_argument(
        "--cancel-after", type=float, default=40.0, help="cancel the better order after S s"
    )
    demo.add_argument("--interval", type=float, default=4.0, help="seconds between updates")
    demo.set_defaults(handler=_demo)

    worker = sub.add_parser("worker", help="CPU miner (same as python -m workers)")
    worker_cli.add_arguments(worker)
    worker.set_defaults(handler=_worker)

    operator_key = sub.add_parser(
        "operator-key", help="operator: keys for the admin.* methods of serve --control"
    )
    keys = operator_key.add_subparsers(dest="operator_key_command", required=True)
    create = keys.add_parser("create", help="issue an operator key and print it (JSON)")
    revoke = keys.add_parser("revoke", help="end an operator key now")
    revoke.add_argument("key_id", metavar="ID", help="the operator key's id")
    for leaf in (create, revoke):
        _add_db_arguments(leaf)
        leaf.set_defaults(handler=_operator_key)

    migrate = sub.add_parser(
        "migrate", help="copy a market nobody serves from a SQLite file into empty PostgreSQL"
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="FILE.db")
    migrate.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
    migrate.set_defaults(handler=_migrate)

    pool_server = sub.add_parser(
        "pool-server",
        help="a standalone Stratum pool, e.g. your own for proxy mode (python -m stratum serve)",
    )
    stratum_main.add_serve_arguments(pool_server)
    pool_server.set_defaults(handler=_pool_server)

    # `account` holds both the operator's `create` and the API client's commands.
    client_cli.add_client_commands(sub, operator_commands={"account": _add_account_operator})
    return parser


def _add_account_operator(account_sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    commands = (
        (
            "create",
            "operator: create an account and print its first API key (JSON)",
            _account_create,
        ),
        (
            "key",
            "operator: mint a recovery key (every scope) for an existing account (JSON)",
            _account_key,
        ),
    )
    for name, help_text, handler in commands:
        command = account_sub.add_parser(name, help=help_text)
        command.add_argument("name", help="account name: 1-64 of A-Z a-z 0-9 _ -")
        _add_db_arguments(command)
        command.set_defaults(handler=handler)


def _add_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=None,
        help="SQLite file or postgresql://user@host/dbname (default ./hashmarket.db)",
    )
    parser.add_argument(
        "--master-key-file",
        default=None,
        help="master key file when HASHMARKET_MASTER_KEY is unset (default <db>.key)",
    )
    parser.add_argument("--config", default=None, help="TOML settings file")


def _serve(args: argparse.Namespace) -> int:
    from marketplace.node import main_serve

    return main_serve(args)


def _demo(args: argparse.Namespace) -> int:
    from marketplace.demo import main_demo

    status: int = main_demo(args)
    return status


def _worker(args: argparse.Namespace) -> int:
    from workers import cli as worker_cli

    return worker_cli.main_from_args(args)


def _migrate(args: argparse.Namespace) -> int:
    from marketplace.migrate import main_migrate

    return main_migrate(args)


def _pool_server(args: argparse.Namespace) -> int:
    from stratum import __main__ as stratum_main

    return stratum_main.run_serve(args)


def _account_create(args: argparse.Namespace) -> int:
    from marketplace.operator import main_account_create

    return main_account_create(args)


def _account_key(args: argparse.Namespace) -> int:
    from marketplace.operator import main_account_key

    return main_account_key(args)


def _operator_key(args: argparse.Namespace) -> int:
    from marketplace.operator import main_operator_key

    return main_operator_key(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hashmarket`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
