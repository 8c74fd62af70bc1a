"""Random command sequences against a market and its fleet: money is conserved exactly, the
allocation obeys the rule after every rebalance, refusals change nothing, and replaying the
journal rebuilds the same market (no fleet needed), from the start or from a snapshot taken at
any point. Orders with a buyer's pool come and go alive, their shares are billable only while
it is, and the pool's refusals are refunded from the fee account at settlement."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from marketplace.core.errors import MarketError
from marketplace.core.fleet import Fleet
from marketplace.core.invariants import check_market
from marketplace.core.market import Market
from marketplace.core.model import (
    FEE_ACCOUNT,
    LedgerKind,
    MarketConfig,
    OrderStatus,
    OrderType,
    WorkerKey,
    default_rules,
)
from marketplace.core.views import MarketViews
from tests.marketplace_core.helpers import MH, SHA, Core, share

RULES = msgspec.structs.replace(
    default_rules(SHA), price_down_interval_s=5, min_amount_msat=1_000_000
)
CONFIG = MarketConfig(faucet=True, markets={SHA: RULES}, speed_window_ms=20_000)
BUYERS = ["b1", "b2"]
SELLERS = ["s1", "s2"]
DIFFICULTIES = [0.0001, 0.001, 0.0123, 0.5, 1 / 3]
POOL = "p-000001"
REASONS = ["Low difficulty share", "Job not found (stale)", "no answer: connection lost"]


class MarketMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = Core(CONFIG)
        self.market = self.core.market
        self.fleet = self.core.fleet
        self.views = self.core.views
        self.events: list[Any] = []
        self.now = 0
        self.conn = 0
        self.workers: list[WorkerKey] = []
        self.deposited = 0
        #: Orders with a pool whose upstream is alive, and shares forwarded awaiting answers.
        self.alive: set[str] = set()
        self.forwarded: list[tuple[str, float, int]] = []
        self.snapshots: list[tuple[int, bytes]] = []  # (events before it, encoded state)
        for account in BUYERS:
            self.market.create_account(account=account, now_ms=0)
            self.market.deposit(account=account, amount_msat=10**9, now_ms=0)
            self.deposited += 10**9
        self.events.extend(self.market.drain_events())

    def _run(self, call: Any) -> Any:
        """Run a command; a refusal must emit nothing and leave balances as they were."""
        before = {a: self.market.balance(a) for a in BUYERS}
        try:
            result = call()
        except MarketError:
            assert self.market.drain_events() == []
            assert {a: self.market.balance(a) for a in BUYERS} == before
            return None
        self.events.extend(self.market.drain_events())
        return result

    def _orders(self) -> list[tuple[str, str]]:
        return [
            (account, view.id)
            for account in BUYERS
            for view in self.views.list_orders(account=account)
        ]

    @initialize(
        prices=st.lists(st.integers(1_000_000, 400_000_000), min_size=1, max_size=3),
        limits=st.lists(st.sampled_from([0, MH // 2, MH, 2 * MH]), min_size=3, max_size=3),
        speeds=st.lists(st.sampled_from([1000, MH // 3, MH, 4 * MH]), min_size=1, max_size=5),
        amount=st.integers(1_000_000, 50_000_000),
    )
    def lively_market(
        self, prices: list[int], limits: list[int], speeds: list[int], amount: int
    ) -> None:
        for i, price in enumerate(prices):
            self.create_order(BUYERS[i % 2], price, limits[i], amount, None, False, i == 1)
        for i, speed in enumerate(speeds):
            self.join(SELLERS[i % 2], speed)
        self.rebalance()

    @rule(dt=st.integers(0, 30_000))
    def tick(self, dt: int) -> None:
        self.now += dt

    @rule(account=st.sampled_from(BUYERS), amount=st.integers(-5, 10**9))
    def deposit(self, account: str, amount: int) -> None:
        if self._run(
            lambda: self.market.deposit(account=account, amount_msat=amount, now_ms=self.now)
        ):
            self.deposited += amount

    @rule(
        account=st.sampled_from(BUYERS),
        price=st.integers(500_000, 400_000_000),
        limit=st.sampled_from([0, 0, 5_000, MH // 2, MH, 3 * MH]),
        amount=st.integers(500_000, 10**8),
        duration=st.sampled_from([None, None, 1, 60, 600]),
        fixed=st.booleans(),
        pooled=st.booleans(),
    )
    def create_order(
        self,
        account: str,
        price: int,
        limit: int,
        amount: int,
        duration: int | None,
        fixed: bool,
        pooled: bool,
    ) -> None:
        order_id = self._run(
            lambda: self.market.create_order(
                account=account,
                algorithm=SHA,
                type=OrderType.FIXED if fixed else OrderType.STANDARD,
                price_msat=None if fixed else price,
                limit_hs=limit,
                amount_msat=amount,
                duration_s=duration,
                now_ms=self.now,
                fleet=self.fleet,
                pool_id=POOL if pooled else None,
            )
        )
        if order_id is not None and pooled:
            self.alive.add(order_id)

    def _pooled(self) -> list[str]:
        return [o for _, o in self._orders() if self.market.pool_of(o) is not None]

    @precondition(lambda self: self._pooled())
    @rule(data=st.data(), alive=st.booleans())
    def pool_status(self, data: st.DataObject, alive: bool) -> None:
        """The driver's view of an order's upstream: alive or not (ephemeral)."""
        order_id = data.draw(st.sampled_from(self._pooled()))
        if alive:
            self.alive.add(order_id)
        else:
            self.alive.discard(order_id)

    @precondition(lambda self: self._orders())
    @rule(data=st.data(), to_chain=st.booleans(), owner_ok=st.booleans())
    def set_pool(self, data: st.DataObject, to_chain: bool, owner_ok: bool) -> None:
        account, order_id = data.draw(st.sampled_from(self._orders()))
        caller = account if owner_ok else next(a for a in BUYERS if a != account)
        self._run(
            lambda: self.market.set_order_pool(
                account=caller,
                order_id=order_id,
                pool_id=None if to_chain else POOL,
                now_ms=self.now,
            )
        )

    @precondition(lambda self: self.forwarded)
    @rule(accepted=st.booleans(), count=st.integers(1, 10), reason=st.sampled_from(REASONS))
    def pool_answers(self, accepted: bool, count: int, reason: str) -> None:
        """The pools answer the oldest forwarded shares."""
        for order_id, difficulty, price in self.forwarded[:count]:
            self._run(
                lambda o=order_id, d=difficulty, p=price: self.market.record_pool_answer(
                    order_id=o,
                    accepted=accepted,
                    reason=reason,
                    difficulty=d,
                    price_msat=p,
                    now_ms=self.now,
                )
            )
        del self.forwarded[:count]

    @precondition(lambda self: self._pooled())
    @rule(data=st.data())
    def placeholder_cancel(self, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(self._pooled()))
        self._run(
            lambda: self.market.cancel_for_pool(
                order_id=order_id, reason="pool dead too long", now_ms=self.now
            )
        )

    @precondition(
        lambda self: self.views.list_orders(account="b1") or self.views.list_orders(account="b2")
    )
    @rule(
        data=st.data(),
        change=st.sampled_from(["price", "limit", "refill", "cancel"]),
        factor=st.integers(5_000, 20_000),
        owner_ok=st.booleans(),
    )
    def change_order(self, data: st.DataObject, change: str, factor: int, owner_ok: bool) -> None:
        account, order_id = data.draw(st.sampled_from(self._orders()))
        caller = account if owner_ok else next(a for a in BUYERS if a != account)
        view = self.views.get_order(account=account, order_id=order_id)
        m = self.market
        if change == "price":
            price = view.price_msat * factor // 10_000
            self._run(
                lambda: m.set_price(
                    account=caller, order_id=order_id, price_msat=price, now_ms=self.now
                )
            )
        elif change == "limit":
            limit = view.limit_hs * factor // 10_000 if view.limit_hs else MH
            self._run(
                lambda: m.set_limit(
                    account=caller, order_id=order_id, limit_hs=limit, now_ms=self.now
                )
            )
        elif change == "refill":
            self._run(
                lambda: m.refill(
                    account=caller, order_id=order_id, amount_msat=factor * 1000, now_ms=self.now
                )
            )
        else:
            self._run(lambda: m.cancel(account=caller, order_id=order_id, now_ms=self.now))

    @rule(seller=st.sampled_from(SELLERS), speed=st.sampled_from([0, 1000, MH // 3, MH, 4 * MH]))
    def join(self, seller: str, speed: int) -> None:
        self.conn += 1
        key = WorkerKey(self.conn, seller, f"w{self.conn % 3}", SHA)
        self._run(lambda: self.market.ensure_account(account=seller, now_ms=self.now))
        # Ephemeral: no events, so nothing to journal or replay.
        self.fleet.worker_joined(worker=key, estimate_hs=speed, now_ms=self.now)
        self.core.keys[key.conn_id] = key
        self.workers.append(key)

    @precondition(lambda self: self.workers)
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.workers))
        self.workers.remove(key)
        self.fleet.worker_left(worker=key, now_ms=self.now)

    @precondition(lambda self: self.workers)
    @rule(
        data=st.data(),
        difficulty=st.sampled_from(DIFFICULTIES),
        accepted=st.booleans(),
        count=st.integers(1, 20),
        stale_order=st.booleans(),
        fresh=st.booleans(),
    )
    def shares(
        self,
        data: st.DataObject,
        difficulty: float,
        accepted: bool,
        count: int,
        stale_order: bool,
        fresh: bool,
    ) -> None:
        if fresh:  # the driver rebalances after every command
            self.rebalance()
        key = data.draw(st.sampled_from(self.workers))
        order_id = self.fleet.assignment(key)
        if stale_order and self._orders():
            order_id = data.draw(st.sampled_from(self._orders()))[1]  # e.g. in flight
        pooled = order_id is not None and self.market.pool_of(order_id) is not None
        billable = not pooled or order_id in self.alive
        for i in range(count):
            # As the bridge does: the market records it, then the fleet counts accepted work;
            # a billable share of an order with a pool may go on to the pool.
            price = self.core.record_share(
                share(key, difficulty=difficulty, accepted=accepted, time_ms=self.now + i),
                order_id=order_id,
                billable=billable,
            )
            self.events.extend(self.market.drain_events())
            if pooled and billable and accepted and order_id is not None and i % 2 == 0:
                self.forwarded.append((order_id, difficulty, price or 0))

    @rule()
    def rebalance(self) -> None:
        alive = self.alive.__contains__
        moves = self.core.rebalance(SHA, now_ms=self.now, alive=alive)
        assert len({m.worker for m in moves}) == len(moves)
        # Stable: nothing changed, so a second rebalance moves nothing.
        assert self.core.rebalance(SHA, now_ms=self.now, alive=alive) == []
        # An order with a pool that is not alive holds no worker.
        for order_id in self._pooled():
            if order_id not in self.alive:
                assert self.fleet.holders(SHA, order_id) == 0

    @rule()
    def settle(self) -> None:
        self._run(lambda: self.market.settle(now_ms=self.now))

    @rule()
    def expire(self) -> None:
        ended = self._run(lambda: self.market.expire(now_ms=self.now))
        for order_id in ended or []:
            owner = next(a for a, o in self._orders() if o == order_id)
            assert self.views.get_order(account=owner, order_id=order_id).status is (
                OrderStatus.EXPIRED
            )

    @rule(seller=st.sampled_from(SELLERS), amount=st.integers(0, 10**6))
    def withdraw(self, seller: str, amount: int) -> None:
        if self.market.has_account(seller) and self._run(
            lambda: self.market.withdraw(
                account=seller, amount_msat=amount, address="addr", now_ms=self.now
            )
        ):
            self.deposited -= amount

    @rule()
    def snapshot(self) -> None:
        self.snapshots.append((len(self.events), self.market.encode_state()))

    @invariant()
    def money_is_conserved(self) -> None:
        self.core.check()
        accounts = [*BUYERS, *SELLERS, "operator"]
        held = 0
        for account in accounts:
            if self.market.has_account(account):
                balance = self.market.balance(account)
                # The fee account pays refunds and may go below zero; nobody else does.
                assert balance.available_msat >= 0 or account == FEE_ACCOUNT
                assert balance.escrowed_msat >= 0
                held += balance.available_msat + balance.escrowed_msat
        assert held == self.deposited
        spent = settled = 0
        for account in BUYERS:
            for view in self.views.list_orders(account=account):
                assert 0 <= view.spent_msat <= view.amount_msat
                spent += view.spent_msat
            settled -= sum(
                e.amount_msat
                for e in self.market.ledger(account, limit=10**9)
                if e.kind is LedgerKind.CHARGE
            )
        credits = sum(
            e.amount_msat
            for account in [*SELLERS, "operator"]
            if self.market.has_account(account)
            for e in self.market.ledger(account, limit=10**9)
            if e.kind in (LedgerKind.EARNING, LedgerKind.FEE)
        )
        assert settled == credits <= spent
        # Refunds: what buyers got back is what the fee account paid, and never more than
        # their settled charges.
        refunds = sum(
            e.amount_msat
            for account in BUYERS
            for e in self.market.ledger(account, limit=10**9)
            if e.kind is LedgerKind.REFUND
        )
        paid = -sum(
            e.amount_msat
            for e in self.market.ledger(FEE_ACCOUNT, limit=10**9)
            if e.kind is LedgerKind.REFUND_PAID
        )
        assert refunds == paid <= settled

    def teardown(self) -> None:
        self.market.settle(now_ms=self.now)
        self.events.extend(self.market.drain_events())
        replica = Market(config=CONFIG)
        for event in self.events:
            replica.apply(Market.decode_event(Market.encode_event(event)))
        self._check_replica(replica)
        # From every snapshot plus the events after it: the same state, byte for byte.
        state = self.market.encode_state()
        assert replica.encode_state() == state
        for seen, snapshot in self.snapshots:
            restored = Market(config=CONFIG)
            restored.import_state(Market.decode_state(snapshot))
            for event in self.events[seen:]:
                restored.apply(Market.decode_event(Market.encode_event(event)))
            assert restored.encode_state() == state
            self._check_replica(restored)

    def _check_replica(self, replica: Market) -> None:
        """A market rebuilt from events has this market's balances, ledger and orders; with no
        fleet, its views show no workers and so no speed now, and the same history."""
        check_market(replica)
        replica_views = MarketViews(replica, Fleet(config=CONFIG))
        for account in [*BUYERS, *SELLERS, "operator"]:
            assert replica.has_account(account) == self.market.has_account(account)
            if replica.has_account(account):
                assert replica.balance(account) == self.market.balance(account)
                assert replica.ledger(account, limit=10**9) == self.market.ledger(
                    account, limit=10**9
                )
            mine = self.views.list_orders(account=account, now_ms=self.now)
            assert replica_views.list_orders(account=account, now_ms=self.now) == [
                msgspec.structs.replace(v, workers=0, accepted_speed_hs=0) for v in mine
            ]
            for view in mine:
                assert replica_views.order_stats(
                    account=account, order_id=view.id, since_ms=None, now_ms=self.now
                ) == self.views.order_stats(
                    account=account, order_id=view.id, since_ms=None, now_ms=self.now
                )
        # The whole market spent exactly what sellers and the marketplace were credited.
        spent = sum(v.spent_msat for a in BUYERS for v in self.views.list_orders(account=a))
        credits = sum(
            e.amount_msat
            for account in [*SELLERS, "operator"]
            if self.market.has_account(account)
            for e in self.market.ledger(account, limit=10**9)
            if e.kind in (LedgerKind.EARNING, LedgerKind.FEE)
        )
        assert spent == credits


MarketMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMarketMachine = MarketMachine.TestCase
