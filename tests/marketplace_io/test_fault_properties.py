"""The market model of ``marketplace_core/test_properties.py`` run through the engine, with the
store failing at random points: random groups of concurrent commands (sharing a batch, or
queued behind one), workers coming and going, snapshots, and the store broken (sometimes with
the failed write landing on disk all the same), snapshots refused and the store mended, all
drawn by hypothesis. After every step in which memory holds the journal's state: it equals a
replay of the journal, money is conserved, every acknowledged command is in the journal and
no refused one is (unless its write landed), and the fleet holds only orders the market has.
At the end a restart (snapshot + replay) gives the same state."""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.core.errors import MarketError
from marketplace.core.events import Deposited, Withdrawn
from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_invariants
from marketplace.core.market import Market
from marketplace.core.model import WorkerKey
from marketplace.durability import StorageState, StorageUnavailable
from marketplace.engine import Engine
from marketplace.scheduler import MarketScheduler
from tests.clocks import trio_clock

from ..marketplace_core.helpers import Core, standard
from ..marketplace_core.test_properties import CONFIG
from .fakes import MemoryJournal
from .helpers import MH, SHA, make_share

#: What a step may do: commands are the most common, then the fleet, time and the store.
ACTIONS = ["commands"] * 4 + ["break"] * 2 + ["join", "leave", "tick", "snapshot", "mend"]
ACTIONS += ["snapshots"]
BUYERS = ["b1", "b2"]
SELLERS = ["s1", "s2"]


class Model:
    """The engine, its market, fleet and scheduler over a journal that fails on cue."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.journal = MemoryJournal()
        self.market = Market(config=CONFIG)
        self.fleet = Fleet(config=CONFIG)
        self.engine = Engine(components=[self.market], journal=self.journal, clock=trio_clock())
        self.scheduler = MarketScheduler(engine=self.engine, market=self.market, fleet=self.fleet)
        self.core = Core(CONFIG, market=self.market, fleet=self.fleet)
        self.conns = itertools.count(1)
        self.amounts = itertools.count(1_000_001)  # every deposit and withdrawal its own amount
        self.workers: list[WorkerKey] = []
        self.acknowledged: set[int] = set()
        self.refused: set[int] = set()
        self.landing = False

    def now(self) -> int:
        return self.engine.now_ms()

    # ------------------------------------------------------------------ commands

    def command(self) -> tuple[Any, int | None]:
        """One random market command (and the amount that names it, for money moves)."""
        m, draw = self.market, self.data.draw
        kind = draw(
            st.sampled_from(["deposit", "withdraw", "order", "change", "share", "settle", "expire"])
        )
        buyer = draw(st.sampled_from(BUYERS))
        if kind == "deposit":
            amount = next(self.amounts)
            return lambda: m.deposit(account=buyer, amount_msat=amount, now_ms=self.now()), amount
        if kind == "withdraw":
            amount = next(self.amounts)
            account = draw(st.sampled_from([*SELLERS, buyer]))
            return (
                lambda: m.withdraw(
                    account=account, amount_msat=amount, address="addr", now_ms=self.now()
                ),
                amount,
            )
        if kind == "order":
            price = draw(st.integers(1_000_000, 400_000_000))
            limit = draw(st.sampled_from([0, MH // 2, MH]))
            amount = draw(st.integers(1_000_000, 50_000_000))
            duration = draw(st.sampled_from([None, 1, 60]))
            return (
                lambda: standard(
                    self.core,
                    buyer,
                    price_msat=price,
                    limit_hs=limit,
                    amount_msat=amount,
                    duration_s=duration,
                    now_ms=self.now(),
                ),
                None,
            )
        if kind == "change":
            change = draw(st.sampled_from(["cancel", "refill"]))
            order_id = f"o-{draw(st.integers(1, 6)):06d}"
            if change == "cancel":
                return lambda: m.cancel(account=buyer, order_id=order_id, now_ms=self.now()), None
            return (
                lambda: m.refill(
                    account=buyer, order_id=order_id, amount_msat=1_000_000, now_ms=self.now()
                ),
                None,
            )
        if kind == "share" and self.workers:
            key = draw(st.sampled_from(self.workers))
            difficulty = draw(st.sampled_from([0.001, 0.0123, 0.5]))
            return self._share(key, difficulty), None
        if kind == "expire":
            return lambda: m.expire(now_ms=self.now()), None
        return lambda: m.settle(now_ms=self.now()), None

    def _share(self, key: WorkerKey, difficulty: float) -> Any:
        def record() -> None:
            order_id = self.fleet.assignment(key)
            share = make_share(
                key, source=order_id or "", time_ms=self.now(), difficulty=difficulty
            )
            self.market.record_share(share, order_id=order_id)

        return record

    async def run_one(self, fn: Any, amount: int | None) -> None:
        try:
            await self.engine.execute(fn)
        except MarketError:
            return
        except StorageUnavailable:
            if amount is not None and not self.landing:  # a landing write may be durable
                self.refused.add(amount)
            return
        if amount is not None:
            self.acknowledged.add(amount)

    async def join(self, *, after_checkpoints: int = 0) -> None:
        for _ in range(after_checkpoints):
            await trio.lowlevel.checkpoint()
        key = WorkerKey(next(self.conns), self.data.draw(st.sampled_from(SELLERS)), "w", SHA)
        speed = self.data.draw(st.sampled_from([1000, MH // 3, MH, 4 * MH]))
        self.fleet.worker_joined(worker=key, estimate_hs=speed, now_ms=self.now())
        self.workers.append(key)
        self.scheduler.rebalance()
        await self.run_one(
            lambda: self.market.ensure_account(account=key.account, now_ms=self.now()), None
        )

    async def step(self) -> None:
        draw = self.data.draw
        action = draw(st.sampled_from(ACTIONS))
        if action == "commands":
            async with trio.open_nursery() as nursery:
                for _ in range(draw(st.integers(1, 5))):
                    if draw(st.integers(0, 4)) == 0:
                        # A miner connects while batches are in flight: the bridge rebalances
                        # onto whatever the market holds in memory right now.
                        delay = draw(st.integers(0, 3))
                        nursery.start_soon(partial(self.join, after_checkpoints=delay))
                        continue
                    fn, amount = self.command()
                    nursery.start_soon(self.run_one, fn, amount)
        elif action == "join":
            await self.join()
        elif action == "leave" and self.workers:
            key = draw(st.sampled_from(self.workers))
            self.workers.remove(key)
            self.fleet.worker_left(worker=key, now_ms=self.now())
        elif action == "tick":
            await trio.sleep(draw(st.integers(0, 40)))
        elif action == "snapshot":
            self.engine.snapshot()
        elif action == "break":
            self.landing = draw(st.booleans())
            self.journal.break_store(lands=self.landing)
        elif action == "mend":
            self.journal.mend_store()
        else:
            self.journal.break_snapshots(draw(st.sampled_from([None, "snapshot too big"])))

    # ------------------------------------------------------------------ checks

    async def replayed(self) -> Market:
        """What a restart would hold: the newest snapshot and the events after it."""
        market = Market(config=CONFIG)
        engine = Engine(components=[market], journal=self.journal)
        with trio.CancelScope(shield=True):
            await engine.restore()
        return market

    async def check(self) -> None:
        health = self.engine.health
        while True:
            with trio.fail_after(120):
                while health.state is StorageState.RESTORING:
                    await health.wait_changed()
            seen = self.journal.last_seq
            replica = await self.replayed()
            # A probe may find a landed batch while the replica reads: memory follows it.
            if health.state is not StorageState.RESTORING and self.journal.last_seq == seen:
                break
        assert self.market.encode_state() == replica.encode_state()
        check_invariants(self.market, self.fleet)
        events = [Market.decode_event(e.body) async for e in self.journal.replay()]
        moved = {e.amount_msat for e in events if isinstance(e, Deposited | Withdrawn)}
        assert self.acknowledged <= moved, "an acknowledged money move is not in the journal"
        assert not (self.refused & moved), "a refused money move is in the journal"
        deposits = sum(e.amount_msat for e in events if isinstance(e, Deposited))
        deposits -= sum(e.amount_msat for e in events if isinstance(e, Withdrawn))
        held = 0
        for account in [*BUYERS, *SELLERS, CONFIG.fee_account]:
            if self.market.has_account(account):
                balance = self.market.balance(account)
                assert balance.available_msat >= 0
                assert balance.escrowed_msat >= 0
                held += balance.available_msat + balance.escrowed_msat
        assert held == deposits


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_memory_equals_a_replay_of_the_journal_through_storage_faults(data: st.DataObject) -> None:
    async def main() -> None:
        model = Model(data)
        await model.engine.restore()
        for buyer in BUYERS:
            await model.run_one(
                lambda b=buyer: model.market.create_account(account=b, now_ms=0), None
            )
            amount = next(model.amounts)
            await model.run_one(
                lambda b=buyer, a=amount: model.market.deposit(
                    account=b, amount_msat=a * 100, now_ms=0
                ),
                None,
            )
        async with trio.open_nursery() as nursery:
            await nursery.start(model.engine.run)
            for _ in range(data.draw(st.integers(5, 30))):
                await model.step()
                await model.check()
            model.journal.mend_store()
            model.journal.break_snapshots(None)
            with trio.fail_after(120):
                while not model.engine.health.ready:
                    await model.engine.health.wait_changed()
            await model.run_one(lambda: model.market.settle(now_ms=model.now()), None)
            model.engine.snapshot()
            await model.run_one(lambda: model.market.settle(now_ms=model.now()), None)
            await model.check()
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
