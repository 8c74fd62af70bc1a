"""The Stratum server's configuration: one frozen object with every knob and the spec's defaults.

Precedence (STYLE.md): command-line flags over a TOML file over the environment
(``HASHMARKET_STRATUM_<FIELD>``) over the defaults below, which work out of the box.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from stratum.core.messages import MAX_LINE_BYTES
from stratum.core.session_types import SessionConfig
from stratum.core.shares import Algorithm
from stratum.core.vardiff import VardiffConfig

ENV_PREFIX: Final = "HASHMARKET_STRATUM_"


class DifficultyBounds(msgspec.Struct, frozen=True, kw_only=True):
    """Start, minimum and maximum share difficulty of one algorithm."""

    start: float
    min: float
    max: float


#: Sized for CPU workers: ~1 MH/s sha256d (0.001 is one share per ~4 s), ~10 kH/s scrypt
#: (scrypt difficulty d is d * 65536 hashes per share).
DEFAULT_DIFFICULTY: Final = {
    Algorithm.SHA256D: DifficultyBounds(start=0.001, min=1e-6, max=1e9),
    Algorithm.SCRYPT: DifficultyBounds(start=0.05, min=1e-5, max=1e9),
}


class StratumConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every knob of one Stratum listener. Times are seconds (floats), sizes bytes."""

    algorithm: Algorithm = Algorithm.SHA256D
    host: str = "127.0.0.1"
    port: int = 3333
    #: Close a connection that sends nothing useful for this long (spec: 10 min)...
    idle_timeout_s: float = 600.0
    #: ...or this long before it has subscribed (spec: 30 s).
    subscribe_timeout_s: float = 30.0
    job_interval_s: float = 30.0
    block_interval_s: float = 600.0
    #: ``None`` picks the algorithm's default from ``DEFAULT_DIFFICULTY``.
    start_difficulty: float | None = None
    min_difficulty: float | None = None
    max_difficulty: float | None = None
    vardiff: bool = True
    target_share_interval_s: float = 10.0
    vardiff_retarget_s: float = 30.0
    vardiff_window_s: float = 300.0
    stale_grace_s: float = 0.0
    ntime_future_s: float = 7200.0
    max_consecutive_rejects: int = 50
    max_jobs_per_connection: int = 16
    extranonce1_size: int = 4
    extranonce2_size: int = 4
    version_rolling_mask: int = 0x1FFFE000
    max_line_bytes: int = MAX_LINE_BYTES
    receive_size: int = 65536
    #: A writer blocked this long in ``send_all`` means a peer that does not read: closed.
    send_timeout_s: float = 10.0
    #: Bytes queued for a connection beyond this mean a peer that does not read: closed.
    send_queue_bytes: int = 1024 * 1024
    send_queue_items: int = 4096
    #: On shutdown, connections get this long to flush before they are cancelled.
    shutdown_grace_s: float = 5.0

    def __post_init__(self) -> None:
        bounds = self.difficulty_bounds()
        for name, value in (("start", bounds.start), ("min", bounds.min), ("max", bounds.max)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} difficulty must be a positive finite number")
        if not bounds.min <= bounds.start <= bounds.max:
            raise ValueError("need min_difficulty <= start_difficulty <= max_difficulty")
        if not 0 < self.job_interval_s < 120:
            raise ValueError("job_interval_s must be in (0, 120): miners give up after 120 s")
        if self.extranonce1_size not in range(1, 9) or self.extranonce2_size not in range(1, 9):
            raise ValueError("extranonce sizes must be 1..8 bytes")
        if not 0 <= self.version_rolling_mask <= 0xFFFFFFFF:
            raise ValueError("version_rolling_mask must fit 32 bits")
        for name in ("idle_timeout_s", "subscribe_timeout_s", "block_interval_s", "send_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")

    def difficulty_bounds(self) -> DifficultyBounds:
        """Start/min/max difficulty with the algorithm's defaults filled in."""
        default = DEFAULT_DIFFICULTY[self.algorithm]
        return DifficultyBounds(
            start=default.start if self.start_difficulty is None else self.start_difficulty,
            min=default.min if self.min_difficulty is None else self.min_difficulty,
            max=default.max if self.max_difficulty is None else self.max_difficulty,
        )

    def vardiff_config(self) -> VardiffConfig:
        """The retarget rule's knobs, in milliseconds."""
        bounds = self.difficulty_bounds()
        return VardiffConfig(
            target_share_interval_ms=_ms(self.target_share_interval_s),
            retarget_period_ms=_ms(self.vardiff_retarget_s),
            window_ms=_ms(self.vardiff_window_s),
            min_difficulty=bounds.min,
            max_difficulty=bounds.max,
        )

    def session_config(self) -> SessionConfig:
        """What each connection's sans-I/O session needs."""
        bounds = self.difficulty_bounds()
        return SessionConfig(
            algorithm=self.algorithm,
            start_difficulty=bounds.start,
            vardiff=self.vardiff_config() if self.vardiff else None,
            min_difficulty=bounds.min,
            max_difficulty=bounds.max,
            extranonce2_size=self.extranonce2_size,
            version_rolling_mask=self.version_rolling_mask,
            idle_timeout_ms=_ms(self.idle_timeout_s),
            subscribe_timeout_ms=_ms(self.subscribe_timeout_s),
            stale_grace_ms=_ms(self.stale_grace_s),
            ntime_future_s=int(self.ntime_future_s),
            max_consecutive_rejects=self.max_consecutive_rejects,
            max_jobs=self.max_jobs_per_connection,
            max_line_bytes=self.max_line_bytes,
        )


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def load_config(
    *,
    cli: Mapping[str, Any] | None = None,
    toml_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> StratumConfig:
    """Merge flags (``None`` values ignored) over a TOML file over the environment.

    The TOML file may hold the fields at top level or under a ``[stratum]`` table.
    Raises ``ValueError`` (including ``msgspec.ValidationError``) for a bad value or field.
    """
    fields = set(StratumConfig.__struct_fields__)
    merged: dict[str, Any] = {}
    for key, value in (environ or {}).items():
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in fields:
            merged[key[len(ENV_PREFIX) :].lower()] = value
    if toml_path is not None:
        with open(toml_path, "rb") as f:
            data = tomllib.load(f)
        table = data.get("stratum", data)
        if not isinstance(table, dict):
            raise ValueError("[stratum] must be a table")
        merged.update(table)
    merged.update({k: v for k, v in (cli or {}).items() if v is not None})
    return msgspec.convert(merged, StratumConfig, strict=False)
