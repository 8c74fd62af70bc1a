"""Running an example script against a market of the ``hashmarket`` fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(script: str, args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``examples/<script>`` to completion; its stdout (fails on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={**env, "PYTHONUNBUFFERED": "1"},
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_pytest(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest run in ``directory`` the way a user's project runs it: the installed package (its
    plugin from the entry point), none of this project's pytest settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PYTHONPATH"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
