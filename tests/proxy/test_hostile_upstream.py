"""A hostile or broken buyer's pool (a scripted double speaking raw Stratum): an extranonce2 size
too small, a refused authorize, no job ever, garbage, a close in the middle of a session, a
refusal of every share, slow answers. Each time the order's ``pool`` says what happened in
words a buyer can act on, workers leave a dead pool within one rebalance and come back once it
is alive, money stays conserved, and the other order and its miner are not disturbed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
import trio

from marketplace.core.model import FEE_ACCOUNT, LedgerKind, OrderView
from tests.marketplace_io.miner import RawMiner
from tests.marketplace_io.node import PRICE, TINY, stratum_config

from .helpers import ProxyNode, add_order, add_pool, proxy_node, wait_until
from .scripted_pool import Script, ScriptedPool

#: Workers' start estimate is TINY * 2**32 / 0.01 s ~ 43 kH/s: one fills the pool order.
STRATUM = stratum_config(target_share_interval_s=0.01)
ONE_WORKER_HS = 10_000


@dataclass
class Scene:
    node: ProxyNode
    pool: ScriptedPool
    pool_order: str
    chain_order: str
    miners: dict[str, RawMiner]

    def view(self, order_id: str) -> OrderView:
        return self.node.order(order_id)

    def link(self) -> tuple[str, str | None]:
        pool = self.view(self.pool_order).pool
        assert pool is not None
        return pool.status, pool.last_error

    def serving(self, order_id: str) -> list[str]:
        fleet = self.node.core.fleet
        return sorted(k.worker for k, o in fleet.assignments().items() if o == order_id)

    async def on_pool(self, name: str) -> RawMiner:
        """``name``'s miner, once it works on the pool's layout (bounded)."""
        miner = self.miners[name]
        prefix = self.pool.live.extranonce1.hex()
        with trio.fail_after(10):
            while not miner.latest.extranonce1.startswith(prefix):
                await miner.pump()
        return miner

    async def all_submit(self) -> None:
        """Every miner's next share is accepted (whatever order it serves)."""
        for name, miner in self.miners.items():
            assert await miner.submit(f"seller.{name}") is True, name


@asynccontextmanager
async def scene(
    tmp_path: Path, nursery: trio.Nursery, script: Script, *, alive: bool = False
) -> AsyncIterator[Scene]:
    """Two orders (the pool's, better paid, wants one worker), two miners; ``alive``: the
    miners connect once the pool is up."""
    pool = ScriptedPool(script)
    await pool.start(nursery)
    async with proxy_node(tmp_path, stratum=STRATUM) as node:
        chain_order = await add_order(node, pool_id=None)
        pool_order = await add_order(
            node,
            pool_id=await add_pool(node, pool.port),
            price_msat=2 * PRICE,
            limit_hs=ONE_WORKER_HS,
        )
        if alive:
            await wait_until(lambda: node.upstreams.alive(pool_order))
        miners = {"a": await node.miner("seller.a"), "b": await node.miner("seller.b")}
        yield Scene(node, pool, pool_order, chain_order, miners)


async def comes_back(s: Scene) -> None:
    """The pool behaves again: alive after the backoff, one worker back, its shares go up."""
    s.pool.script = Script(difficulty=TINY)
    await wait_until(lambda: s.link()[0] == "alive", timeout=10)
    assert len(s.serving(s.pool_order)) == 1
    assert len(s.serving(s.chain_order)) == 1
    (back,) = s.serving(s.pool_order)
    await s.on_pool(back)
    before = s.pool.accepted
    await s.all_submit()
    await wait_until(lambda: s.pool.accepted == before + 1)


async def money_conserved(s: Scene) -> None:
    market, now = s.node.core.market, s.node.core.clock.now_ms()
    await s.node.core.engine.execute(lambda: market.settle(now_ms=now))
    s.node.check()


@pytest.mark.parametrize(
    ("script", "says"),
    [
        (Script(extranonce2_size=3), "extranonce2_size 3 is too small (min 4)"),
        (Script(authorize=False), "authorize refused: [24, 'Unauthorized worker']"),
        (Script(notify=False), "no notify within 1 s"),
        (Script(garbage=True), "the pool sent something that is not Stratum"),
    ],
)
async def test_a_pool_that_never_comes_up(
    tmp_path: Path, nursery: trio.Nursery, script: Script, says: str
) -> None:
    async with scene(tmp_path, nursery, script) as s:
        await wait_until(lambda: s.link()[0] == "dead")
        last_error = s.link()[1]
        assert last_error is not None
        assert says in last_error, last_error
        # Nobody works for it (it is charged nothing); both miners serve the other order.
        assert s.serving(s.pool_order) == []
        assert s.serving(s.chain_order) == ["a", "b"]
        await s.all_submit()
        assert s.view(s.pool_order).spent_msat == 0
        # It keeps trying (backoff) and says the same.
        connects = s.pool.connects
        await wait_until(lambda: s.pool.connects > connects)
        await comes_back(s)
        await money_conserved(s)


async def test_a_pool_that_closes_in_the_middle_of_a_session(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    script = Script(difficulty=TINY, close_after_submits=2)
    async with scene(tmp_path, nursery, script, alive=True) as s:
        (mover,) = s.serving(s.pool_order)
        (other,) = s.serving(s.chain_order)
        s.pool.script = Script(notify=False)  # while it is down, it does not come back
        miner = await s.on_pool(mover)
        for _ in range(2):
            assert await miner.submit(f"seller.{mover}") is True
        await wait_until(lambda: s.link()[0] == "dead")
        last_error = s.link()[1]
        assert last_error is not None
        assert "the pool closed the connection" in last_error or "no notify" in last_error
        # Within the rebalance that the loss made: the worker left the dead order.
        assert s.serving(s.pool_order) == []
        assert sorted(s.serving(s.chain_order)) == sorted([mover, other])
        with trio.fail_after(10):
            while miner.latest.extranonce1 != miner.latest.extranonce1[:8]:
                await miner.pump()  # back on its own layout, the chain order's job
        await s.all_submit()
        await comes_back(s)
        await money_conserved(s)


async def test_a_pool_that_rejects_every_share(tmp_path: Path, nursery: trio.Nursery) -> None:
    async with scene(tmp_path, nursery, Script(difficulty=TINY, reject_all=True), alive=True) as s:
        (mover,) = s.serving(s.pool_order)
        s.pool.script = Script(notify=False)  # once dropped, it stays down until we say
        miner = await s.on_pool(mover)
        for _ in range(20):
            assert await miner.submit(f"seller.{mover}") is True  # ours: accepted, paid
        await wait_until(lambda: s.link()[0] == "dead")
        last_error = s.link()[1]
        assert last_error is not None
        assert "the pool rejected 20 shares in a row" in last_error
        assert "[23, 'Low difficulty share']" in last_error
        assert s.serving(s.pool_order) == []
        pool = s.view(s.pool_order).pool
        assert pool is not None
        assert pool.rejected == {"[23, 'Low difficulty share']": 20}
        # At settlement the buyer gets back what it was charged for those 20 shares; the
        # seller keeps its earnings; the marketplace's fee account pays.
        await money_conserved(s)
        order = s.node.core.market.book.orders[s.pool_order]
        value = 20 * Fraction(2 * PRICE) * Fraction(TINY) * 2**32 / (10**6 * 86_400)
        assert order.refunded_msat == min(int(value), order.settled_msat) > 0
        market = s.node.core.market
        refunds = [e for e in market.ledger("buyer", limit=1000) if e.kind is LedgerKind.REFUND]
        assert sum(e.amount_msat for e in refunds) == order.refunded_msat
        paid = [
            e for e in market.ledger(FEE_ACCOUNT, limit=1000) if e.kind is LedgerKind.REFUND_PAID
        ]
        assert -sum(e.amount_msat for e in paid) == order.refunded_msat
        await comes_back(s)
        await money_conserved(s)


async def test_a_pool_that_answers_slowly(tmp_path: Path, nursery: trio.Nursery) -> None:
    async with scene(
        tmp_path, nursery, Script(difficulty=TINY, answer_delay_s=1.5), alive=True
    ) as s:
        (mover,) = s.serving(s.pool_order)
        miner = await s.on_pool(mover)
        for _ in range(3):
            started = trio.current_time()
            assert await miner.submit(f"seller.{mover}") is True
            # Forwarding never delays the miner's reply.
            assert trio.current_time() - started < 1.0
        await wait_until(lambda: s.pool.accepted == 3)
        pool = s.view(s.pool_order).pool
        assert pool is not None
        await wait_until(lambda: s.view(s.pool_order).pool.accepted == 3)  # type: ignore[union-attr]
        status, last_error = s.link()
        assert status == "alive"
        assert last_error is not None
        assert "the pool took 1.5 s to answer a share (slow)" in last_error
        assert s.serving(s.pool_order) == [mover]
        await s.all_submit()
        await money_conserved(s)
