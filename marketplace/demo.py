"""``hashmarket demo``: a live local market a newcomer can watch.

What happens, on loopback only, with a throw-away database:

1. a node starts (faucet on, difficulties sized so CPU workers find a share every few seconds);
2. a standalone Stratum pool starts beside it: the buyer's own pool, for proxy mode;
3. the operator creates a buyer account; the buyer, through the signed JSON-RPC API like any
   script would, takes emulated money from the faucet, saves its pool (``pool.create``) and
   checks it (``pool.verify``), and places two standard orders: a high bid with a small limit
   on the emulated chain, and a lower, unlimited bid whose hash power goes to its own pool;
4. a fleet of three workers (``python -m workers --fleet 3``) connects as the seller ``seller``;
5. every few seconds the order book, the spend, the seller's earnings and the buyer's pool's
   own count of accepted shares beside the order's ``pool.accepted`` are printed: the better
   bid gets one worker (its limit), the other two mine for the buyer's pool through us;
6. after ``--cancel-after`` seconds the buyer cancels the better order: its unspent budget is
   released and its worker moves to the remaining order (and so to the pool) at the next
   rebalance.

The first line printed is the dashboard's URL (the node's API port): the page shows the same
market live, with charts, for as long as the demo runs. It runs until Ctrl-C (or
``--duration``), then stops the workers and the node cleanly.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from functools import partial
from pathlib import Path

import structlog
import trio

from marketplace.assembly import Node, run_node
from marketplace.client import AsyncMarketClient, Credentials
from marketplace.config import NodeConfig
from marketplace.core.money import format_btc
from stratum.config import StratumConfig
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging
from stratum.pool import PoolWorkSource
from stratum.server import StratumServer, trio_wall_clock

log = structlog.get_logger("marketplace.demo")

HIGH_PRICE = "1.00000000"  # BTC per MH/s per day
LOW_PRICE = "0.50000000"
#: The buyer's pool's share difficulty: under the node's, so every share we forward meets it.
POOL_DIFFICULTY = 0.00002


def _print(text: str = "") -> None:
    print(text, flush=True)


async def _show(
    node: Node, client: AsyncMarketClient, pool: PoolWorkSource, *, started: float
) -> None:
    book = await client.orderbook(Algorithm.SHA256D)
    orders = await client.list_orders()
    balance = await client.balance()
    core = node.core
    now_ms = core.clock.now_ms()
    seller = core.market.balance("seller") if core.market.has_account("seller") else None
    workers = core.views.workers_of("seller", now_ms=now_ms) if seller else []
    elapsed = trio.current_time() - started
    _print(f"--- t={elapsed:5.0f}s  market sha256d: {book.total_speed} MH/s in the book")
    _print(
        f"{'ORDER':10} {'STATUS':9} {'PRICE':>11} {'LIMIT':>9} {'SPEED':>9} {'WORKERS':>7}"
        f" {'SPENT':>11} {'REMAINING':>11}  MINES FOR"
    )
    for order in orders:
        where = "emulated chain"
        if order.pool is not None:
            where = f"pool {order.pool_id} ({order.pool.status})"
        _print(
            f"{order.id:10} {order.status:9} {order.price:>11} {order.limit:>9}"
            f" {order.accepted_speed:>9} {order.workers:>7} {order.spent:>11} {order.remaining:>11}"
            f"  {where}"
        )
    for order in orders:
        if order.pool is not None:
            _print(
                f"your pool counts {pool.stats.accepted} accepted shares;"
                f" order {order.id} pool.accepted {order.pool.accepted},"
                f" rejected {sum(order.pool.rejected.values())}"
            )
    _print(f"buyer  available {balance.available}  escrowed {balance.escrowed}")
    if seller is not None:
        _print(f"seller available {format_btc(seller.available_msat)}")
    for worker in sorted(workers, key=lambda w: w.name):
        if worker.connected:
            _print(
                f"  worker seller.{worker.name:8} -> {worker.order_id or 'idle':10}"
                f" accepted {worker.accepted:4}  earned {format_btc(worker.earned_msat)}"
            )
    _print()


async def _serve_pool(
    *,
    scope: trio.CancelScope,
    task_status: trio.TaskStatus[tuple[PoolWorkSource, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The buyer's own pool: a standalone Stratum pool on loopback (``hashmarket pool-server``
    in-process), easy enough that every share forwarded to it meets its target; it runs until
    ``scope`` is cancelled."""
    config = StratumConfig(
        algorithm=Algorithm.SHA256D,
        port=0,
        start_difficulty=POOL_DIFFICULTY,
        min_difficulty=POOL_DIFFICULTY,
        max_difficulty=POOL_DIFFICULTY,
        vardiff=False,
        job_interval_s=10.0,
    )
    clock = trio_wall_clock()
    pool = PoolWorkSource(config=config, clock=clock)
    server = StratumServer(config=config, work_source=pool, clock=clock)
    with scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            await nursery.start(server.run)
            assert server.port is not None
            task_status.started((pool, server.port))


async def run_demo(args: argparse.Namespace, db: Path) -> None:
    config = NodeConfig(
        db=str(db),
        api_port=0,
        sha256d_port=0,
        scrypt_port=0,
        faucet=True,
        start_difficulty=0.0002,
        min_difficulty=0.00002,
        target_share_interval=3.0,
        job_interval=10.0,
        rebalance_interval=1.0,
        settle_interval=2.0,
        log_format="json",
        log_level="warning",
    )
    pool_scope = trio.CancelScope()
    async with trio.open_nursery() as outer:
        pool, pool_port = await outer.start(partial(_serve_pool, scope=pool_scope))
        await _market(args, config, pool, pool_port)
        pool_scope.cancel()  # the node is down: its pool may go


async def _market(
    args: argparse.Namespace, config: NodeConfig, pool: PoolWorkSource, pool_port: int
) -> None:
    async with trio.open_nursery() as nursery:
        node: Node = await nursery.start(run_node, config)
        # First thing: where to watch it. The node serves the page until the demo ends.
        _print(f"dashboard: {node.dashboard_url}  (open it in a browser while the demo runs)")
        url = f"http://127.0.0.1:{node.api_port}"
        made = await node.core.create_account("buyer")
        _print(
            f"market up: API {url}, Stratum sha256d on port {node.stratum_ports[Algorithm.SHA256D]}"
        )
        async with AsyncMarketClient(
            url, credentials=Credentials(made.account_id, made.key_id, made.secret)
        ) as client:
            await client.sync_clock()
            await client.deposit("1.00000000")
            mine = await client.create_pool(
                name="my pool",
                algorithm="sha256d",
                host="127.0.0.1",
                port=pool_port,
                username="buyer.demo",
                password="x",
            )
            verified = await client.verify_pool(mine.id)
            _print(
                f"buyer saved its pool {mine.id} (127.0.0.1:{pool_port}); pool.verify:"
                f" ok={verified.ok} stage={verified.stage} extranonce1={verified.extranonce1}"
                f" extranonce2_size={verified.extranonce2_size}"
            )
            high = await client.create_order(
                algorithm="sha256d",
                type="standard",
                price=HIGH_PRICE,
                limit="0.01",
                amount="0.01000000",
            )
            low = await client.create_order(
                algorithm="sha256d",
                type="standard",
                price=LOW_PRICE,
                limit="0",
                amount="0.05000000",
                pool_id=mine.id,
            )
            _print(
                f"buyer placed {high.id} at {HIGH_PRICE} (limit 0.01 MH/s) and {low.id} at "
                f"{LOW_PRICE} (no limit, mining for its pool {mine.id}), BTC per MH/s per day"
            )
            port = node.stratum_ports[Algorithm.SHA256D]
            command = [
                sys.executable,
                "-m",
                "workers",
                "--url",
                f"stratum+tcp://127.0.0.1:{port}",
                "--user",
                "seller.rig",
                "--fleet",
                str(args.workers),
                "--log-format",
                "json",
                "--log-level",
                "warning",
            ]
            if args.processes:
                command += ["--processes", str(args.processes)]
            workers = await trio.lowlevel.open_process(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _print(f"started {args.workers} workers (seller.rig-1..{args.workers})\n")
            started = trio.current_time()
            cancelled = False
            try:
                while args.duration is None or trio.current_time() - started < args.duration:
                    await trio.sleep(args.interval)
                    if not cancelled and trio.current_time() - started >= args.cancel_after:
                        gone = await client.cancel_order(high.id)
                        cancelled = True
                        released = Decimal(gone.amount) - Decimal(gone.spent)
                        _print(
                            f">>> buyer cancelled {gone.id}: {released} BTC released;"
                            " its worker moves to the other order\n"
                        )
                    await _show(node, client, pool, started=started)
            finally:
                workers.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    await workers.wait()
                if workers.returncode is None:
                    workers.kill()
        node.stop(reason="demo over")  # the node shuts down in order; run_node then returns


def main_demo(args: argparse.Namespace) -> int:
    """``hashmarket demo``: exit 0 when stopped by Ctrl-C or after ``--duration``."""
    configure_logging("json", level="warning")
    with tempfile.TemporaryDirectory(prefix="hashmarket-demo-") as tmp:
        db = Path(tmp) / "demo.db"
        try:
            trio.run(run_demo, args, db)
        except KeyboardInterrupt:
            _print("\nstopped")
    return 0
