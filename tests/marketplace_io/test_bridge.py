"""The bridge over real loopback TCP: the real Stratum server, real share math, a real journal."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import trio

from marketplace.bridge import IDLE_TAG, estimate_hs, order_of
from marketplace.core.events import ShareRecorded
from marketplace.core.invariants import check_invariants
from marketplace.core.market import Market
from marketplace.core.model import OrderType
from marketplace.scheduler import SchedulerConfig
from stratum.core.shares import HASHES_PER_DIFF1, Algorithm

from .miner import Notified, RawMiner, StratumError
from .node import PRICE, SHA, TINY, Node, open_node, seed_buyer, stratum_config

TIMEOUT = 10


def tag_of(job: Notified) -> str:
    """The order tag a job's coinbase carries (``/hashmarket/<tag>/``)."""
    text = bytes.fromhex(job.coinb1).decode("latin-1")
    start = text.index("/hashmarket/") + len("/hashmarket/")
    return text[start : text.index("/", start)]


def share_value(price_msat: int, difficulty: float) -> Fraction:
    return Fraction(difficulty) * price_msat * HASHES_PER_DIFF1[SHA] / (10**6 * 86_400)


async def connect(node: Node, username: str) -> RawMiner:
    stream = await trio.open_tcp_stream("127.0.0.1", node.port)
    miner = RawMiner(stream, timeout=TIMEOUT)
    await miner.login(username)
    return miner


async def journaled_shares(node: Node) -> list[ShareRecorded]:
    events = [Market.decode_event(e.body) async for e in node.core.journal.replay()]
    return [e for e in events if isinstance(e, ShareRecorded)]


def test_estimate_and_order_of() -> None:
    assert estimate_hs(1.0, 10.0) == HASHES_PER_DIFF1[SHA] // 10
    assert estimate_hs(1.0, 10.0, Algorithm.SCRYPT) == 2**16 // 10
    assert estimate_hs(1e-12, 10.0) == 1
    assert order_of("o-000001") == "o-000001"
    assert order_of(IDLE_TAG) is None
    assert order_of("") is None
    with pytest.raises(ValueError, match="positive"):
        estimate_hs(1.0, 0)


async def test_worker_mines_its_order_and_is_moved_by_a_higher_bid(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_node(tmp_path / "j.db") as node:
            first = await seed_buyer(node)
            miner = await connect(node, "seller.rig1")
            job = miner.latest
            assert tag_of(job) == first
            assert job.clean_jobs
            assert job.difficulty == TINY
            # Accepted shares are durable when the reply arrives and charge the order.
            for _ in range(3):
                assert await miner.submit("seller.rig1") is True
            view = node.core.views.get_order(account="buyer", order_id=first)
            assert view.spent_msat == int(3 * share_value(PRICE, TINY))
            assert view.spent_msat > 0
            recorded = await journaled_shares(node)
            assert [(s.order_id, s.accepted, s.worker) for s in recorded] == [
                (first, True, "rig1")
            ] * 3
            assert node.core.market.has_account("seller")
            old_job = miner.latest

            # A higher bid arrives: the worker moves at once, with clean_jobs.
            def outbid() -> str:
                return node.core.market.create_order(
                    account="buyer",
                    algorithm=SHA,
                    type=OrderType.STANDARD,
                    price_msat=2 * PRICE,
                    limit_hs=0,
                    amount_msat=10**9,
                    duration_s=None,
                    now_ms=node.core.engine.now_ms(),
                    fleet=node.core.fleet,
                )

            second = await node.core.engine.execute(outbid)
            moved = await miner.pump()
            assert tag_of(moved) == second
            assert moved.clean_jobs
            assert await miner.submit("seller.rig1") is True
            view2 = node.core.views.get_order(account="buyer", order_id=second)
            assert view2.spent_msat == int(share_value(2 * PRICE, TINY))
            # The old order's job was made stale by the clean notify.
            with pytest.raises(StratumError) as stale:
                await miner.submit("seller.rig1", old_job)
            assert stale.value.code == 21
            assert node.core.views.get_order(account="buyer", order_id=first).spent_msat == (
                view.spent_msat
            )
            check_invariants(node.core.market, node.core.fleet)
            await miner.stream.aclose()


async def test_idle_workers_mine_the_idle_stream_and_fill_freed_slots(tmp_path: Path) -> None:
    # Estimates (difficulty * 2**32 / interval) above the market's minimum limit, so an order
    # limited to the minimum wants exactly one worker.
    config = stratum_config(target_share_interval_s=0.01)
    with trio.fail_after(30):
        async with open_node(tmp_path / "j.db", config=config) as node:
            # No order yet: the worker is idle, its shares count but charge nothing.
            first = await connect(node, "seller.a")
            assert tag_of(first.latest) == IDLE_TAG
            assert await first.submit("seller.a") is True
            assert [s.order_id for s in await journaled_shares(node)] == [None]
            # An order limited to about one worker's estimate takes exactly one of two.
            one = estimate_hs(TINY, node.bridge.config.target_share_interval_s)
            minimum = node.core.market.rules(SHA).min_limit_hs
            assert one > minimum
            order = await seed_buyer(node, limit_hs=minimum)
            moved = await first.pump()
            assert tag_of(moved) == order
            assert moved.clean_jobs
            second = await connect(node, "seller.b")
            assert tag_of(second.latest) == IDLE_TAG
            assert len(node.bridge.members(order)) == 1
            assert len(node.bridge.members(None)) == 1
            # The served worker leaves: the idle one takes its place at once.
            await first.stream.aclose()
            taken = await second.pump()
            assert tag_of(taken) == order
            assert taken.clean_jobs
            assert await second.submit("seller.b") is True
            check_invariants(node.core.market, node.core.fleet)
            await second.stream.aclose()


async def test_jobs_are_refreshed_and_blocks_send_clean_jobs(tmp_path: Path) -> None:
    config = stratum_config(job_interval_s=0.2, block_interval_s=0.7)
    with trio.fail_after(30):
        async with open_node(tmp_path / "j.db", config=config) as node:
            order = await seed_buyer(node)
            miner = await connect(node, "seller.rig")
            start_height = int(node.bridge.chain.tip.height)
            seen: list[Notified] = []
            for _ in range(30):  # bounded: stop at the first block
                job = await miner.pump()
                seen.append(job)
                if job.clean_jobs:
                    break
            assert all(tag_of(j) == order for j in seen)
            assert not seen[0].clean_jobs  # a plain refresh came first
            assert seen[-1].clean_jobs
            assert node.bridge.chain.tip.height > start_height
            # New work on the new block is valid.
            assert await miner.submit("seller.rig") is True
            await miner.stream.aclose()


async def test_an_order_that_runs_out_moves_its_worker_before_the_tick(tmp_path: Path) -> None:
    # The periodic rebalance is an hour away: only the completion itself can move the worker.
    with trio.fail_after(30):
        async with open_node(
            tmp_path / "j.db", scheduler_config=SchedulerConfig(rebalance_interval_s=3600.0)
        ) as node:
            fallback = await seed_buyer(node)

            def rich_bid() -> str:
                # One share at TINY is worth far more than the minimum budget.
                return node.core.market.create_order(
                    account="buyer",
                    algorithm=SHA,
                    type=OrderType.STANDARD,
                    price_msat=10**17,
                    limit_hs=0,
                    amount_msat=node.core.market.rules(SHA).min_amount_msat,
                    duration_s=None,
                    now_ms=node.core.engine.now_ms(),
                    fleet=node.core.fleet,
                )

            rich = await node.core.engine.execute(rich_bid)
            miner = await connect(node, "seller.rig1")
            assert tag_of(miner.latest) == rich
            assert await miner.submit("seller.rig1") is True
            view = node.core.views.get_order(account="buyer", order_id=rich)
            assert view.status.value == "completed"
            assert view.spent_msat == view.amount_msat
            moved = await miner.pump()
            assert tag_of(moved) == fallback
            assert moved.clean_jobs
            check_invariants(node.core.market, node.core.fleet)
            await miner.stream.aclose()
