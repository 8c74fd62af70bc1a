"""A real node in-process for the example scripts, and a way to run a script against it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from marketplace.assembly import Node, run_node
from marketplace.config import NodeConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@asynccontextmanager
async def running_node(tmp_path: Path, **settings: Any) -> AsyncIterator[Node]:
    config = NodeConfig(
        db=str(tmp_path / "m.db"),
        api_port=0,
        sha256d_port=0,
        scrypt_port=0,
        faucet=True,
        log_format="json",
        log_level="warning",
        **settings,
    )
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(run_node, config)
        try:
            yield node
        finally:
            node.stop(reason="test over")


async def account_env(node: Node, account: str) -> dict[str, str]:
    """Create ``account`` with a key; the environment a script needs to act as it."""
    made = await node.core.create_account(account)
    return {
        **os.environ,
        "HASHMARKET_URL": f"http://127.0.0.1:{node.api_port}",
        "HASHMARKET_ACCOUNT": made.account_id,
        "HASHMARKET_KEY_ID": made.key_id,
        "HASHMARKET_SECRET": made.secret,
        "PYTHONUNBUFFERED": "1",
    }


async def run_example(script: str, args: Sequence[str], env: dict[str, str]) -> str:
    """Run ``examples/<script>`` to completion; its stdout (fails on a non-zero exit)."""
    done = await trio.run_process(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        cwd=str(ROOT),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{out}\n{done.stderr.decode()}"
    return out
