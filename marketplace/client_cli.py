"""The API client commands of ``hashmarket`` (``market``, ``account``, ``order``, ``key``).

Each leaf command is a small function ``(client, args) -> result`` run by one handler that
builds a ``MarketClient`` from flags or the environment (``HASHMARKET_URL``,
``HASHMARKET_ACCOUNT``, ``HASHMARKET_KEY_ID``, ``HASHMARKET_SECRET``), prints the result as a
readable table (or JSON with ``--json``) and returns the exit status: 0 on success, 1 on a
refused call (the API's code and message on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from marketplace.client import DEFAULT_URL, ApiError, Credentials, MarketClient

Action = Callable[[MarketClient, argparse.Namespace], Any]
if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    SubParsers = argparse._SubParsersAction

_ALGORITHMS = ("sha256d", "scrypt")
_INVALID_PARAMS = -32602  # JSON-RPC's code, as the API answers a bad parameter


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (flags win over the environment)")
    group.add_argument("--url", default=None, help=f"API URL (HASHMARKET_URL; {DEFAULT_URL})")
    group.add_argument("--account", default=None, help="account id (HASHMARKET_ACCOUNT)")
    group.add_argument("--key-id", default=None, help="API key id (HASHMARKET_KEY_ID)")
    group.add_argument("--secret", default=None, help="API key secret (HASHMARKET_SECRET)")
    group.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return common


def _leaf(
    sub: SubParsers, name: str, action: Action, help_text: str, common: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, parents=[common])
    parser.set_defaults(handler=run_client_command, action=action)
    return parser


def add_client_commands(
    sub: SubParsers,
    *,
    operator_commands: Mapping[str, Callable[[SubParsers], None]] | None = None,
) -> None:
    """Add ``market``, ``account``, ``order`` and ``key`` to a sub-parser set. Each leaf sets
    ``handler=run_client_command``. ``operator_commands[group](group_subparsers)`` may add
    more leaves to a group (the lead adds ``account create``)."""
    common = _common()
    extra = operator_commands or {}

    market = sub.add_parser("market", help="market information (public)")
    market_sub = market.add_subparsers(dest="market_command", required=True, metavar="COMMAND")
    info = _leaf(
        market_sub, "info", _market_info, "markets: units, ports, minimums, quotes", common
    )
    info.add_argument("--algorithm", choices=_ALGORITHMS, default=None, help="default: every one")
    for name, action, text in (
        ("orderbook", lambda c, a: c.orderbook(a.algorithm), "active orders, best first"),
        ("stats", lambda c, a: c.market_stats(a.algorithm), "workers, speed, rejects"),
    ):
        leaf = _leaf(market_sub, name, action, text, common)
        leaf.add_argument("--algorithm", choices=_ALGORITHMS, default="sha256d")

    account = sub.add_parser("account", help="balances, ledger, faucet, withdrawals")
    account_sub = account.add_subparsers(dest="account_command", required=True, metavar="COMMAND")
    _leaf(account_sub, "balance", lambda c, a: c.balance(), "available and escrowed", common)
    ledger = _leaf(
        account_sub,
        "ledger",
        lambda c, a: c.ledger(limit=a.limit, before=a.before),
        "ledger entries, newest first",
        common,
    )
    ledger.add_argument("--limit", type=int, default=50)
    ledger.add_argument("--before", type=int, default=None, help="entries with ids below this")
    deposit = _leaf(
        account_sub, "deposit", lambda c, a: c.deposit(a.amount), "faucet (if enabled)", common
    )
    deposit.add_argument("amount", help="BTC, e.g. 0.01")
    withdraw = _leaf(
        account_sub,
        "withdraw",
        lambda c, a: c.withdraw(a.amount, a.address),
        "record a withdrawal",
        common,
    )
    withdraw.add_argument("amount", help="BTC")
    withdraw.add_argument("address")
    _leaf(account_sub, "workers", lambda c, a: c.workers(), "your workers as a seller", common)
    if "account" in extra:
        extra["account"](account_sub)

    order = sub.add_parser("order", help="place and manage orders")
    order_sub = order.add_subparsers(dest="order_command", required=True, metavar="COMMAND")
    create = _leaf(order_sub, "create", _order_create, "place an order", common)
    create.add_argument("--algorithm", choices=_ALGORITHMS, required=True)
    create.add_argument("--type", choices=("standard", "fixed"), required=True)
    create.add_argument("--price", default=None, help="BTC per unit/s per day")
    create.add_argument("--limit", required=True, help="speed in the market's unit; 0 = none")
    create.add_argument("--amount", required=True, help="budget in BTC")
    create.add_argument("--duration", type=int, default=None, help="seconds")
    # Lists print as the API answers them ({"orders": [...]}), like every other command.
    listing = _leaf(
        order_sub, "list", lambda c, a: {"orders": c.list_orders(a.status)}, "your orders", common
    )
    listing.add_argument("--status", choices=("active", "completed", "cancelled", "expired"))
    for name, action, text in (
        ("get", lambda c, a: c.get_order(a.id), "one order"),
        ("cancel", lambda c, a: c.cancel_order(a.id), "cancel, releasing the budget"),
        ("stats", lambda c, a: c.order_stats(a.id), "per-minute history"),
    ):
        _leaf(order_sub, name, action, text, common).add_argument("id")
    for name, action, value, text in (
        ("set-price", lambda c, a: c.set_price(a.id, a.value), "price", "change the price"),
        ("set-limit", lambda c, a: c.set_limit(a.id, a.value), "limit", "change the limit"),
        ("refill", lambda c, a: c.refill(a.id, a.value), "amount", "add budget (BTC)"),
    ):
        leaf = _leaf(order_sub, name, action, text, common)
        leaf.add_argument("id")
        leaf.add_argument("value", metavar=value.upper())

    key = sub.add_parser("key", help="API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True, metavar="COMMAND")
    key_create = _leaf(key_sub, "create", _key_create, "new key (secret shown once)", common)
    key_create.add_argument("--label", default="cli")
    key_create.add_argument("--scopes", default="read,trade", help="comma-separated")
    key_create.add_argument("--expires-in", type=int, default=None, help="seconds")
    _leaf(key_sub, "list", lambda c, a: {"keys": c.list_keys()}, "active keys (no secrets)", common)
    _leaf(key_sub, "revoke", lambda c, a: c.revoke_key(a.id), "end a key now", common).add_argument(
        "id"
    )
    rotate = _leaf(
        key_sub,
        "rotate",
        lambda c, a: c.rotate_key(a.id, grace_s=a.grace),
        "successor key; the old one expires after the grace",
        common,
    )
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=int, default=3600, help="seconds (default 3600)")
    for group, name in ((market_sub, "market"), (order_sub, "order"), (key_sub, "key")):
        if name in extra:
            extra[name](group)


def _order_create(client: MarketClient, args: argparse.Namespace) -> Any:
    return client.create_order(
        algorithm=args.algorithm,
        type=args.type,
        price=args.price,
        limit=args.limit,
        amount=args.amount,
        duration_s=args.duration,
    )


def _key_create(client: MarketClient, args: argparse.Namespace) -> Any:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    return client.create_key(args.label, scopes, expires_in_s=args.expires_in)


def _credentials(args: argparse.Namespace, env: Mapping[str, str]) -> Credentials | None:
    account = args.account or env.get("HASHMARKET_ACCOUNT")
    key_id = args.key_id or env.get("HASHMARKET_KEY_ID")
    secret = args.secret or env.get("HASHMARKET_SECRET")
    if account and key_id and secret:
        return Credentials(account, key_id, secret)
    return None


def _market_info(client: MarketClient, args: argparse.Namespace) -> Any:
    info = client.market_info()
    if args.algorithm is None:
        return info
    return msgspec.structs.replace(
        info, markets=[m for m in info.markets if m.algorithm == args.algorithm]
    )


def run_client_command(args: argparse.Namespace) -> int:
    """Run the leaf command in ``args.action``; print its result; return the exit status.
    Never raises for an API refusal (exit 1) or bad input (exit 2)."""
    env = os.environ
    url = args.url or env.get("HASHMARKET_URL") or DEFAULT_URL
    try:
        with MarketClient(url, credentials=_credentials(args, env)) as client:
            result = args.action(client, args)
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
