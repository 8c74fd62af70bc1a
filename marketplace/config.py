"""The node's settings: one frozen object, from flags, a TOML file and the environment.

Precedence, highest first: command-line flags, the TOML file (``--config``), environment
variables (``HASHMARKET_<NAME>``, e.g. ``HASHMARKET_API_PORT=9000``), built-in defaults. Every
setting has the same name in all three places (dashes in flags, underscores elsewhere), so
``--api-port``, ``api_port = 9000`` and ``HASHMARKET_API_PORT`` are one setting.

Share difficulties are per algorithm (``--sha256d-start-difficulty``, ``--scrypt-max-difficulty``
...). The names without an algorithm (``--start-difficulty``...) set both algorithms at once, as
if both per-algorithm names had been given in the same place: a per-algorithm name given in the
same place wins over it, and either is overridden by a higher place (a flag over the file).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from marketplace.core.pool_hosts import DEFAULT_POOL_ALLOW, AllowList
from stratum.config import DEFAULT_DIFFICULTY
from stratum.core.shares import Algorithm

ENV_PREFIX = "HASHMARKET_"


class NodeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything ``hashmarket serve`` can be told. Defaults work out of the box."""

    host: str = "127.0.0.1"
    api_port: int = 8645
    sha256d_port: int = 3333
    scrypt_port: int = 3334
    #: A SQLite file, or a PostgreSQL database as ``postgresql://user@host/dbname``.
    db: str = "./hashmarket.db"
    #: Where the master key is read when ``HASHMARKET_MASTER_KEY`` is not set (default: the
    #: file ``<db>.key`` beside a SQLite database; a PostgreSQL one needs this or the variable).
    master_key_file: str | None = None
    #: Follow the journal and take over (serve) once the active market's lock is free.
    standby: bool = False
    faucet: bool = False
    #: The operator methods (``admin.*``), market time and faults of control.md.
    control: bool = False
    #: NiceHash's REST API v2 on the API port beside ``/rpc`` (nicehash-rest.md).
    nicehash_api: bool = True
    ports_file: str | None = None
    #: Both algorithms at once (``None``: each algorithm's own setting or default).
    start_difficulty: float | None = None
    min_difficulty: float | None = None
    max_difficulty: float | None = None
    sha256d_start_difficulty: float | None = None
    sha256d_min_difficulty: float | None = None
    sha256d_max_difficulty: float | None = None
    scrypt_start_difficulty: float | None = None
    scrypt_min_difficulty: float | None = None
    scrypt_max_difficulty: float | None = None
    target_share_interval: float = 10.0
    job_interval: float = 30.0
    block_interval: float = 600.0
    rebalance_interval: float = 5.0
    settle_interval: float = 10.0
    history_interval: float = 10.0
    auth_window: float = 60.0
    price_down_interval: float = 600.0
    #: Seconds a new withdrawal address waits before withdrawals may use it (market time).
    address_lock: float = 86_400.0
    synchronous: str = "FULL"
    log_format: str = "auto"
    log_level: str = "info"
    #: Where buyers' pools may be: host names, addresses, CIDRs (proxy.md; default loopback).
    pool_allow: tuple[str, ...] = DEFAULT_POOL_ALLOW


_BOUNDS = (
    ("start", "start difficulty"),
    ("min", "vardiff lower bound"),
    ("max", "vardiff upper bound"),
)

#: Settings that can be given on the command line of ``serve`` (name, type, help).
_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("host", str, "address every listener binds (default 127.0.0.1)"),
    ("api_port", int, "JSON-RPC over HTTP port (default 8645; 0 = any free port)"),
    ("sha256d_port", int, "Stratum port of the sha256d market (default 3333; 0 = any)"),
    ("scrypt_port", int, "Stratum port of the scrypt market (default 3334; 0 = any)"),
    (
        "db",
        str,
        "SQLite file (created on first start, reused after) or postgresql://user@host/dbname"
        " (default ./hashmarket.db)",
    ),
    (
        "master_key_file",
        str,
        "master key file when HASHMARKET_MASTER_KEY is unset (default <db>.key beside a SQLite"
        " file; a PostgreSQL --db needs one of the two)",
    ),
    ("ports_file", str, "write the bound ports as JSON here once every listener is up"),
    ("start_difficulty", float, "Stratum start difficulty of both algorithms"),
    ("min_difficulty", float, "vardiff lower bound of both algorithms"),
    ("max_difficulty", float, "vardiff upper bound of both algorithms"),
    *(
        (
            f"{algorithm.value}_{bound}_difficulty",
            float,
            f"{algorithm.value} {what} (default {getattr(DEFAULT_DIFFICULTY[algorithm], bound):g})",
        )
        for algorithm in Algorithm
        for bound, what in _BOUNDS
    ),
    ("target_share_interval", float, "seconds between shares vardiff aims for (default 10)"),
    ("job_interval", float, "seconds between new jobs (default 30)"),
    ("block_interval", float, "seconds between emulated blocks (default 600)"),
    ("rebalance_interval", float, "seconds between periodic rebalances (default 5)"),
    ("settle_interval", float, "seconds between settlements (default 10)"),
    (
        "history_interval",
        float,
        "seconds between samples of workers and prices for market.history (default 10; 0 = off)",
    ),
    ("auth_window", float, "seconds of clock skew a signed request may have (default 60)"),
    ("price_down_interval", float, "seconds between two price decreases (default 600)"),
    (
        "address_lock",
        float,
        "seconds before a new withdrawal address can be used, in market time (default 86400)",
    ),
    (
        "synchronous",
        str,
        "commit durability: FULL (default) or NORMAL (SQLite synchronous, PostgreSQL"
        " synchronous_commit off)",
    ),
    ("log_format", str, "console, json or auto (console on a terminal; default)"),
    ("log_level", str, "debug, info, warning, error (default info)"),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every setting as a flag (default None, so unset flags do not override the file)."""
    parser.add_argument("--config", metavar="FILE", help="TOML file with the same settings")
    parser.add_argument(
        "--faucet",
        action="store_const",
        const=True,
        default=None,
        help="allow account.deposit (emulated money)",
    )
    parser.add_argument(
        "--control",
        action="store_const",
        const=True,
        default=None,
        help="operator methods (admin.*): market time, workers, rules, faults (for tests)",
    )
    parser.add_argument(
        "--nicehash-api",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve NiceHash's REST API v2 (/api/v2/..., /main/api/v2/...) beside /rpc "
        "(default on)",
    )
    parser.add_argument(
        "--standby",
        action="store_const",
        const=True,
        default=None,
        help="follow the database's journal, open no port, and serve once the active market"
        " is gone (its lock free)",
    )
    for name, kind, text in _FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=text)
    parser.add_argument(
        "--pool-allow",
        action="append",
        default=None,
        metavar="HOST|ADDRESS|CIDR",
        help="a host buyers' pools may be on; repeatable (default: "
        f"{' '.join(DEFAULT_POOL_ALLOW)})",
    )


#: The settings that set one bound for both algorithms, and the per-algorithm names they stand for.
_BOTH_ALGORITHMS: dict[str, tuple[str, ...]] = {
    f"{bound}_difficulty": tuple(f"{a.value}_{bound}_difficulty" for a in Algorithm)
    for bound, _ in _BOUNDS
}


def _per_algorithm(layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` (one place: env, file or flags) with each both-algorithms setting also given
    under the per-algorithm names the layer does not set itself."""
    out = dict(layer)
    for both, names in _BOTH_ALGORITHMS.items():
        if layer.get(both) is not None:
            for name in names:
                if layer.get(name) is None:
                    out[name] = layer[both]
    return out


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = {f.name: f.type for f in msgspec.structs.fields(NodeConfig)}
    out: dict[str, Any] = {}
    for name in fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None:
            out[name] = raw
    if "pool_allow" in out:  # a list in one variable: comma-separated
        out["pool_allow"] = [e.strip() for e in out["pool_allow"].split(",") if e.strip()]
    return out


def load_config(
    args: argparse.Namespace | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Merge defaults < environment < TOML file < flags into one ``NodeConfig``.

    Raises ``ValueError`` with a readable message for an unknown setting or a wrong type.
    """
    merged: dict[str, Any] = {}
    merged.update(_per_algorithm(_from_env(os.environ if environ is None else environ)))
    config_file = getattr(args, "config", None) if args is not None else None
    if config_file:
        with Path(config_file).open("rb") as fh:
            table = tomllib.load(fh)
        merged.update(_per_algorithm({key.replace("-", "_"): v for key, v in table.items()}))
    if args is not None:
        flags = {}
        for name in [
            *(f[0] for f in _FLAGS),
            "faucet",
            "control",
            "standby",
            "pool_allow",
            "nicehash_api",
        ]:
            value = getattr(args, name, None)
            if value is not None:
                flags[name] = value
        merged.update(_per_algorithm(flags))
    try:
        # strict=False lets environment strings ("9000", "true") become ints and bools.
        config = msgspec.convert(merged, NodeConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad setting: {exc}") from exc
    AllowList(config.pool_allow)  # ValueError naming a bad entry
    return config
