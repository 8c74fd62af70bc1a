"""Shared by the Stratum benchmarks: the environment line and the standalone server process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment() -> str:
    """Python, platform, cores and the command line, as every figure is printed with."""
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}, cpus={os.cpu_count()}\ncommand: {' '.join(sys.argv)}"
    )


def start_server(extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    """``python -m stratum serve --port 0``; returns the process and its port.

    With ``BENCH_PROFILE=FILE`` in the environment the server runs under cProfile and writes its
    profile to FILE when it exits (the figures are then of course lower).
    """
    output = os.environ.get("BENCH_PROFILE")
    profile = ["-m", "cProfile", "-o", output] if output else []
    command = [
        sys.executable,
        *profile,
        "-m",
        "stratum",
        "serve",
        "--port",
        "0",
        "--log-level",
        "warning",
        "--log-format",
        "json",
        "--stats-interval",
        "0",
        *extra,
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening HOST:PORT ALGORITHM"
    if not line.startswith("listening"):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line.split()[1].rsplit(":", 1)[1])
