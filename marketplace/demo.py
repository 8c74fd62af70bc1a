"""``hashmarket demo``: a live local market a newcomer can watch.

What happens, on loopback only, with a throw-away database:

1. a node starts (faucet on, difficulties sized so CPU workers find a share every few seconds);
2. the operator creates a buyer account; the buyer, through the signed JSON-RPC API like any
   script would, takes emulated money from the faucet and places two standard orders: a high bid
   with a small limit and a lower, unlimited bid;
3. a fleet of three workers (``python -m workers --fleet 3``) connects as the seller ``seller``;
4. every few seconds the order book, the spend and the seller's earnings are printed: the better
   bid gets one worker (its limit), the other two serve the lower bid;
5. after ``--cancel-after`` seconds the buyer cancels the better order: its unspent budget is
   released and its worker moves to the remaining order at the next rebalance.

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
from pathlib import Path

import structlog
import trio

from marketplace.assembly import Node, run_node
from marketplace.client import AsyncMarketClient, Credentials
from marketplace.config import NodeConfig
from marketplace.core.money import format_btc
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging

log = structlog.get_logger("marketplace.demo")

HIGH_PRICE = "1.00000000"  # BTC per MH/s per day
LOW_PRICE = "0.50000000"


def _print(text: str = "") -> None:
    print(text, flush=True)


async def _show(node: Node, client: AsyncMarketClient, *, started: float) -> None:
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
        f" {'SPENT':>11} {'REMAINING':>11}"
    )
    for order in orders:
        _print(
            f"{order.id:10} {order.status:9} {order.price:>11} {order.limit:>9}"
            f" {order.accepted_speed:>9} {order.workers:>7} {order.spent:>11} {order.remaining:>11}"
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
            )
            _print(
                f"buyer placed {high.id} at {HIGH_PRICE} (limit 0.01 MH/s) and {low.id} at "
                f"{LOW_PRICE} (no limit), BTC per MH/s per day"
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
                    await _show(node, client, started=started)
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
