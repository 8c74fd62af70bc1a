"""``hashmarket serve``: one node, run until a signal.

Theory of operation
-------------------
The node itself is put together, run and shut down by ``marketplace.assembly`` (storage, the
components, the engine and the services on one clock). This module is the program around it:
settings from flags, file and environment, logging, and the signals. The first SIGINT or
SIGTERM asks the node to stop in order (stop accepting, tell miners, let in-flight work
finish, snapshot, close the journal) and the process exits 0; a second one while that is under
way stops at once (still with the snapshot and the journal's last commit). A signal before the
node serves (a standby still following the active market, ``--standby``) stops it at once:
it holds nothing yet. Because every
acknowledged share and every answered command is journaled before its answer, a restart on the
same ``--db`` (even after kill -9, from the last periodic snapshot and the events after it)
carries on where the last run stopped.
"""

from __future__ import annotations

import argparse
import signal
import sys

import structlog
import trio

from marketplace.assembly import Node, run_node
from marketplace.clock import Clock
from marketplace.config import NodeConfig, load_config
from marketplace.storage import JournalError, NodeBusy
from stratum.gctuning import tune_gc
from stratum.groups import leaves
from stratum.logconfig import configure_logging

log = structlog.get_logger("marketplace.node")


async def serve_until_signalled(config: NodeConfig, *, clock: Clock | None = None) -> None:
    """Run a node until SIGINT or SIGTERM, then shut it down in order; a second signal stops
    it at once, and so does a signal before the node serves (a standby still following, a
    restore under way). Raises as ``run_node``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            serving: list[Node] = []

            async def start() -> None:
                node = await nursery.start(_run_then_leave, config, clock, nursery.cancel_scope)
                serving.append(node)

            nursery.start_soon(start)
            async for signum in signals:
                name = signal.Signals(signum).name
                if not serving or serving[0].stopping:
                    log.warning("node.stopping_now", signal=name, serving=bool(serving))
                    nursery.cancel_scope.cancel()
                    return
                serving[0].stop(reason=name)


async def _run_then_leave(
    config: NodeConfig,
    clock: Clock | None,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
) -> None:
    await run_node(config, clock=clock, task_status=task_status)
    scope.cancel()  # the node has stopped: stop listening for signals too


def main_serve(args: argparse.Namespace) -> int:
    """``hashmarket serve``: exit 0 after a signal, 1 on a bad setting, a busy database, one
    that cannot be opened (its disk full, its server unreachable...) or a lock another market
    took while this one's connection was down."""
    try:
        config = load_config(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log_format, level=config.log_level)  # type: ignore[arg-type]
    refused: list[BaseException] = []
    tune_gc()
    try:
        trio.run(serve_until_signalled, config)
    except* (NodeBusy, OSError, ValueError, JournalError) as group:
        refused.extend(leaves(group))
    for error in refused:
        print(f"error: {error}", file=sys.stderr)
    return 1 if refused else 0
