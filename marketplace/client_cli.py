"""The API client commands of ``hashmarket`` (``market``, ``account``, ``order``, ``pool``,
``key``, and the operator's ``admin``; ``account 2fa ...``, ``account address ...`` and ``admin
fault ...`` one level deeper).

Each leaf command is a row of a call table (``marketplace.client_calls.ApiCalls``,
``marketplace.admin_calls.AdminCalls``, where its name, help and arguments are declared), run
by one handler that builds a ``MarketClient`` from flags or the environment
(``HASHMARKET_URL``, ``HASHMARKET_ACCOUNT``, ``HASHMARKET_KEY_ID``, ``HASHMARKET_SECRET``; for
``admin``, the account ``operator`` and ``HASHMARKET_OPERATOR_KEY_ID``,
``HASHMARKET_OPERATOR_SECRET``), prints the result as a readable table (or JSON with
``--json``) and returns the exit status: 0 on success, 1 on a refused call (the API's code and
message on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from marketplace.admin_calls import admin_rows
from marketplace.client import DEFAULT_URL, ApiError, Credentials, MarketClient
from marketplace.client_calls import ApiCall, rows
from marketplace.core.key_events import OPERATOR_ACCOUNT

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    SubParsers = argparse._SubParsersAction

_INVALID_PARAMS = -32602  # JSON-RPC's code, as the API answers a bad parameter
#: The command groups, in the order ``--help`` lists them; their leaves are the table's rows.
_GROUPS: Final = (
    ("market", "market information (public)"),
    ("account", "balances, ledger, faucet, withdrawals"),
    ("order", "place and manage orders"),
    ("pool", "your pools: orders that mine for them (proxy mode)"),
    ("key", "API keys"),
    ("admin", "operator (serve --control): market time, blocks, workers, rules, faults"),
)
#: Sub-groups (``GROUP SUB NAME``), in the same way.
_SUBGROUPS: Final = (
    ("account 2fa", "two-factor authentication (TOTP)"),
    ("account address", "withdrawal addresses"),
    ("admin fault", "injected faults: set, clear, list"),
)


def _common(*, operator: bool = False) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (flags win over the environment)")
    group.add_argument("--url", default=None, help=f"API URL (HASHMARKET_URL; {DEFAULT_URL})")
    env = "HASHMARKET_OPERATOR_" if operator else "HASHMARKET_"
    if not operator:
        group.add_argument("--account", default=None, help="account id (HASHMARKET_ACCOUNT)")
    group.add_argument("--key-id", default=None, help=f"API key id ({env}KEY_ID)")
    group.add_argument("--secret", default=None, help=f"API key secret ({env}SECRET)")
    group.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.set_defaults(operator=operator)
    return common


def add_client_commands(
    sub: SubParsers,
    *,
    operator_commands: Mapping[str, Callable[[SubParsers], None]] | None = None,
) -> None:
    """Add ``market``, ``account``, ``order`` and ``key`` to a sub-parser set: one leaf per
    row of the call table (``ApiCalls``) that has a command. Each leaf sets
    ``handler=run_client_command`` and ``row`` (the table's row).
    ``operator_commands[group](group_subparsers)`` may add more leaves to a group (the lead
    adds ``account create``)."""
    commons = {False: _common(), True: _common(operator=True)}
    extra = operator_commands or {}
    groups = {}
    for group, help_text in _GROUPS:
        parser = sub.add_parser(group, help=help_text)
        groups[group] = parser.add_subparsers(
            dest=f"{group}_command", required=True, metavar="COMMAND"
        )
    for path, help_text in _SUBGROUPS:
        parent, name = path.split()
        parser = groups[parent].add_parser(name, help=help_text)
        groups[path] = parser.add_subparsers(
            dest=f"{parent}_{name}_command", required=True, metavar="COMMAND"
        )
    for row in [*rows(), *admin_rows()]:
        if row.cli is None:
            continue
        common = commons[row.cli.group.split()[0] == "admin"]
        leaf = groups[row.cli.group].add_parser(row.cli.name, help=row.cli.help, parents=[common])
        leaf.set_defaults(handler=run_client_command, row=row)
        for cli_arg in row.cli.args:
            leaf.add_argument(*cli_arg.flags, **cli_arg.options)
    for group, add in extra.items():
        add(groups[group])


def _credentials(args: argparse.Namespace, env: Mapping[str, str]) -> Credentials | None:
    if args.operator:
        key_id = args.key_id or env.get("HASHMARKET_OPERATOR_KEY_ID")
        secret = args.secret or env.get("HASHMARKET_OPERATOR_SECRET")
        return Credentials(OPERATOR_ACCOUNT, key_id, secret) if key_id and secret else None
    account = args.account or env.get("HASHMARKET_ACCOUNT")
    key_id = args.key_id or env.get("HASHMARKET_KEY_ID")
    secret = args.secret or env.get("HASHMARKET_SECRET")
    if account and key_id and secret:
        return Credentials(account, key_id, secret)
    return None


def _run_row(client: MarketClient, row: ApiCall[..., Any], args: argparse.Namespace) -> Any:
    """The row's call with the command's arguments; the API's whole result, shaped."""
    cli = row.cli
    assert cli is not None
    params = {a.param: getattr(args, a.dest) for a in cli.args if a.param is not None}
    # Print what the API answers (lists inside their object), not what the method picks.
    result = client.call(row.request(**params).whole())
    return result if cli.shape is None else cli.shape(result, args)


def run_client_command(args: argparse.Namespace) -> int:
    """Run the leaf command of ``args.row``; print its result; return the exit status.
    Never raises for an API refusal (exit 1) or bad input (exit 2)."""
    env = os.environ
    url = args.url or env.get("HASHMARKET_URL") or DEFAULT_URL
    try:
        with MarketClient(url, credentials=_credentials(args, env)) as client:
            result = _run_row(client, args.row, args)
    except ApiError as error:
        print(f"error {error.code}: {error.message}", file=sys.stderr)
        if error.data:
            print(msgspec.json.encode(error.data).decode(), file=sys.stderr)
        return 1
    except ValueError as error:  # a choice the client validates (scope name, ...): refused
        print(f"error {_INVALID_PARAMS}: {error}", file=sys.stderr)  # as the API would
        return 1
    plain = msgspec.to_builtins(result)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(plain), indent=2).decode())
    else:
        print(render(plain))
    return 0


# ---------------------------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "-"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of one shape as aligned columns under an upper-case header."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def render(value: Any) -> str:
    """A result (as builtins) for a terminal: key/value lines, lists of objects as tables."""
    if isinstance(value, list):
        if all(isinstance(v, dict) for v in value):
            return table(value)
        return "\n".join(_cell(v) for v in value)
    if not isinstance(value, dict):
        return _cell(value)
    if len(value) == 1 and isinstance(rows := next(iter(value.values())), list):
        return render(rows) if rows else "(none)"  # a listing: {"orders": [...]} is its table
    scalars = {k: v for k, v in value.items() if not _is_rows(v) and not _is_object(v)}
    parts = []
    if scalars:
        width = max(len(k) for k in scalars)
        parts.append("\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in scalars.items()))
    for k, v in value.items():
        if _is_rows(v):
            parts.append(f"{k}:\n{table(v)}")
        elif _is_object(v):
            parts.append(f"{k}:\n{render(v)}")
    return "\n\n".join(parts)


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value) and bool(value)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and bool(value)


def main(argv: Sequence[str] | None = None) -> int:
    """The client commands alone (``python -m marketplace.client_cli ...``)."""
    parser = argparse.ArgumentParser(prog="hashmarket", description="hashmarket API client")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_client_commands(sub)
    args = parser.parse_args(argv)
    status: int = args.handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
