"""Shared by the Stratum benchmarks: the environment line and the server processes they measure.

``start_server`` runs the built-in pool (``python -m stratum serve``); ``start_node`` runs a
whole node (``hashmarket serve``, i.e. ``python -m marketplace serve``) on a fresh database.
With ``BENCH_PROFILE=FILE`` in the environment either runs under cProfile (``_profiled.py``:
the main thread's CPU time between SIGUSR1 and SIGUSR2, see ``profile_window``) and writes the
profile to FILE when it exits (the figures are then of course worse).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def environment() -> str:
    """Python, platform, cores and the command line, as every figure is printed with."""
    return (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}, cpus={os.cpu_count()}\ncommand: {' '.join(sys.argv)}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, every thread of it included (the
    kernel sums a process's threads in ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _python(profile: str | None, module: str) -> list[str]:
    output = profile if profile is not None else os.environ.get("BENCH_PROFILE")
    if not output:
        return [sys.executable, "-m", module]
    return [sys.executable, str(ROOT / "bench" / "_profiled.py"), output, module]


def profile_window(pid: int, *, on: bool) -> None:
    """Start (``on``) or stop the profiler of a server started with ``BENCH_PROFILE``; the
    benchmarks call it around their measured windows (a no-op without ``BENCH_PROFILE``)."""
    if os.environ.get("BENCH_PROFILE"):
        os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)


def start_server(
    extra: list[str], *, profile: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    """``python -m stratum serve --port 0``; returns the process and its port.

    ``profile`` (default: ``BENCH_PROFILE``) names the cProfile output file, if any.
    """
    command = [
        *_python(profile, "stratum"),
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


def start_node(
    extra: list[str], *, directory: Path, profile: str | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    """``hashmarket serve`` on a new database in ``directory`` (faucet on, every port free);
    returns the process and the ports it wrote (``{"api": N, "stratum": {...}}``).

    The node logs (warnings and up, JSON) to ``directory/node.log``. ``profile`` (default:
    ``BENCH_PROFILE``) names the cProfile output file, if any.
    """
    ports_file = directory / "ports.json"
    command = [
        *_python(profile, "marketplace"),
        "serve",
        "--db",
        str(directory / "bench.db"),
        "--ports-file",
        str(ports_file),
        "--api-port",
        "0",
        "--sha256d-port",
        "0",
        "--scrypt-port",
        "0",
        "--faucet",
        "--log-level",
        "warning",
        "--log-format",
        "json",
        *extra,
    ]
    with (directory / "node.log").open("ab") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not ports_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            tail = (directory / "node.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"node did not start:\n{tail}")
        time.sleep(0.05)
    ports: dict[str, object] = json.loads(ports_file.read_text())
    return proc, ports
