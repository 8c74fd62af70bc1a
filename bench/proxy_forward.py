"""Benchmark: shares per second through the proxy to a local pool, and the latency forwarding
adds from our accept to the pool's answer.

A standalone pool (``python -m stratum serve``, its own process, with a stats file) is the
buyer's pool; a node runs in this process (the assembly's ``run_node``) with one buyer, the
pool saved and one order mining for it; a load generator in another process (this script with
``--drive``) opens ``--connections`` miner connections to the node (each asks for
``mining.extranonce.subscribe``, so it moves onto the pool's layout with
``mining.set_extranonce``) and keeps ``--window`` submits in flight on each. Difficulties are
so easy that every hash is a share, for us and for the pool, so every share is checked,
journaled, charged, forwarded, checked again by the pool and its answer journaled.

Printed: the miners' accepted shares/s and reply latency (p50/p99: forwarding must never delay
it), the shares forwarded and answered per second, the latency from our accept to the pool's
answer (p50/p99, and the share within 1 s: proxy.md), the pool's own accepted count beside the
order's ``pool.accepted``, and the environment. Run:

    .venv/bin/python bench/proxy_forward.py [--connections 50] [--window 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from _stratum_server import environment, start_server
from stratum_shares import NOTIFY, Conn, flush, open_miner, receive_lines, steady_state

from marketplace.assembly import Node, run_node
from marketplace.config import NodeConfig
from marketplace.core.model import OrderType
from stratum.core.shares import Algorithm
from stratum.logconfig import configure_logging

EASY = "1e-12"

EXTRANONCE = b'{"id":null,"method":"mining.set_extranonce"'


def percentile(values: list[float], fraction: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else float("nan")


# ------------------------------------------------------------------ the load generator


def drive(port: int, connections: int, window: int, warmup: float, seconds: float) -> None:
    """Miner connections submitting to the node; prints one JSON line of results."""
    selector = selectors.DefaultSelector()
    conns: list[Conn] = []
    sizes: dict[int, int] = {}
    for i in range(connections):
        conns.append(open_miner(selector, port, f"seller.w{i}", extranonce_subscribe=True))
    # Ready once each is on the pool's layout (set_extranonce) with a job after it.
    ready: set[int] = set()
    deadline = time.monotonic() + 60
    while len(ready) < len(conns):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ready)} connections got the pool's layout")
        for key, _ in selector.select(timeout=1):
            conn = key.data
            for line in receive_lines(conn):
                if line.startswith(EXTRANONCE):
                    sizes[id(conn)] = int(json.loads(line)["params"][1])
                elif line.startswith(NOTIFY) and id(conn) in sizes:
                    params = json.loads(line)["params"]
                    conn.job, conn.ntime = params[0], params[7]
                    ready.add(id(conn))
    template = b'{"id":4,"method":"mining.submit","params":["%s","%s","%s","%s","%08x"]}\n'

    def submit(conn: Conn, now: float) -> None:
        conn.nonce += 1
        extranonce2 = b"00" * sizes[id(conn)]
        conn.out += template % (
            conn.user.encode(),
            conn.job.encode(),
            extranonce2,
            conn.ntime.encode(),
            conn.nonce,
        )
        conn.sent.append(now)

    now = time.perf_counter()
    for conn in conns:
        for _ in range(window):
            submit(conn, now)
        flush(conn)
    measure_from = time.perf_counter() + warmup
    print(json.dumps({"measuring_in": warmup}), flush=True)
    accepted, rejected, latencies = steady_state(
        selector, submit, measure_from=measure_from, end=measure_from + seconds
    )
    for conn in conns:
        conn.sock.close()
    print(
        json.dumps(
            {
                "accepted": accepted,
                "rejected": rejected,
                "p50_ms": percentile(latencies, 0.5) * 1000,
                "p99_ms": percentile(latencies, 0.99) * 1000,
            }
        ),
        flush=True,
    )


# ------------------------------------------------------------------ the node


async def bench(args: argparse.Namespace, tmp: Path) -> None:
    stats_file = tmp / "pool.json"
    pool_proc, pool_port = start_server(
        [
            *("--start-difficulty", EASY, "--min-difficulty", EASY, "--max-difficulty", EASY),
            *("--no-vardiff", "--job-interval", "100", "--block-interval", "100000"),
            *("--stats-interval", "1", "--stats-file", str(stats_file)),
        ]
    )
    config = NodeConfig(
        db=str(tmp / "node.db"),
        api_port=0,
        sha256d_port=0,
        scrypt_port=0,
        faucet=True,
        start_difficulty=float(EASY),
        min_difficulty=float(EASY),
        max_difficulty=float(EASY),
        job_interval=100.0,
        block_interval=100_000.0,
        synchronous=args.synchronous,
        log_format="json",
        log_level="warning",
    )
    try:
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(run_node, config)
            order_id = await setup(node, pool_port)
            upstreams = node.upstreams
            assert upstreams is not None
            with trio.fail_after(30):
                while not upstreams.alive(order_id):
                    await trio.sleep(0.05)
            upstreams.forwarding.keep_latencies = True
            port = node.stratum_ports[Algorithm.SHA256D]
            command = [sys.executable, __file__, "--drive", str(port)]
            command += ["--connections", str(args.connections), "--window", str(args.window)]
            command += ["--warmup", str(args.warmup), "--seconds", str(args.seconds)]
            driver = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
            assert driver.stdout is not None
            lines = LineReader(driver.stdout)
            json.loads(await lines.next())  # measuring starts after the warm-up
            await trio.sleep(args.warmup)
            upstreams.forwarding.latencies.clear()
            started = trio.current_time()
            miners = json.loads(await lines.next())
            window = trio.current_time() - started
            latencies = list(upstreams.forwarding.latencies)
            await driver.wait()
            await trio.sleep(2)  # the last answers, and the pool's stats file
            order = node.core.views.get_order(account="buyer", order_id=order_id)
            pool_accepted = node.core.market.book.orders[order_id].pool_accepted
            node.stop(reason="bench over")
        pool = json.loads(stats_file.read_text())
    finally:
        pool_proc.terminate()
        pool_proc.wait(10)
    forwarded = len(latencies)
    print(
        f"connections={args.connections} window={args.window} seconds={args.seconds}"
        f" synchronous={args.synchronous}"
    )
    print(
        f"miners: accepted shares/s {miners['accepted'] / args.seconds:,.0f}"
        f" (rejected {miners['rejected']}); reply latency p50={miners['p50_ms']:.2f} ms"
        f" p99={miners['p99_ms']:.2f} ms"
    )
    print(f"forwarded and answered by the pool: {forwarded / window:,.0f} shares/s")
    within = sum(1 for t in latencies if t <= 1.0) / forwarded if forwarded else float("nan")
    print(
        f"accept -> pool answer: p50={percentile(latencies, 0.5) * 1000:.2f} ms"
        f" p99={percentile(latencies, 0.99) * 1000:.2f} ms;"
        f" within 1 s: {within:.1%}"
    )
    print(
        f"pool's own accepted count {pool['accepted']} (rejected {pool['rejected']});"
        f" order {order.id} pool.accepted {pool_accepted}"
    )
    print(environment())


async def setup(node: Node, pool_port: int) -> str:
    core, upstreams = node.core, node.upstreams
    assert upstreams is not None
    made = await core.create_account("buyer")

    def command() -> str:
        now = core.clock.now_ms()
        core.market.deposit(account=made.account_id, amount_msat=10**11, now_ms=now)
        pool = core.pools.create_pool(
            account=made.account_id,
            name="bench pool",
            algorithm=Algorithm.SHA256D,
            host="127.0.0.1",
            port=pool_port,
            username="buyer.bench",
            password="x",
            allow=upstreams.allow,
            now_ms=now,
        )
        return core.market.create_order(
            account=made.account_id,
            algorithm=Algorithm.SHA256D,
            type=OrderType.STANDARD,
            price_msat=10**6,
            limit_hs=0,
            amount_msat=10**10,
            duration_s=None,
            now_ms=now,
            fleet=core.fleet,
            pool_id=pool.id,
        )

    return await core.engine.execute(command)


class LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some(65536)
            if not data:
                raise SystemExit("the load generator ended early")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--window", type=int, default=4, help="submits in flight per connection")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--drive", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive is not None:
        drive(args.drive, args.connections, args.window, args.warmup, args.seconds)
        return
    configure_logging("json", level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp:
        trio.run(bench, args, Path(tmp))


if __name__ == "__main__":
    main()
