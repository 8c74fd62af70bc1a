"""The engine over the SQLite journal: execute journals exactly what a command emitted, and
restore rebuilds the state. (The scheduler's timers: ``test_scheduler.py``.)"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.clock import Clock
from marketplace.core.errors import InsufficientBalance, MarketError, NotFound
from marketplace.core.events import AccountCreated, Deposited
from marketplace.core.fleet import Fleet
from marketplace.core.market import Market
from marketplace.core.model import LedgerKind, WorkerKey
from marketplace.core.views import MarketViews
from marketplace.engine import Engine, JournalPort
from marketplace.storage import Record, open_journal
from tests.clocks import ReadClock

from .helpers import (
    BTC,
    MH,
    SHA,
    Running,
    make_market,
    make_share,
    running_engine,
    standard_order,
)

T0 = 1_700_000_000_000


def fixed_clock(now: list[int]) -> Clock:
    return ReadClock(lambda: now[0])


async def journaled(journal: JournalPort) -> list[Any]:
    return [Market.decode_event(e.body) async for e in journal.replay()]


def snapshot(market: Market, *, accounts: list[str], now_ms: int) -> dict[str, Any]:
    """Everything durable a client can see, as plain data: seen with no fleet, since workers,
    what they serve and the speed orders receive now are ephemeral."""
    views = MarketViews(market, Fleet(config=market.config))
    return {
        "balances": {a: msgspec.to_builtins(market.balance(a)) for a in accounts},
        "ledgers": {a: msgspec.to_builtins(market.ledger(a, limit=10_000)) for a in accounts},
        "orders": {
            a: [msgspec.to_builtins(o) for o in views.list_orders(account=a, now_ms=now_ms)]
            for a in accounts
        },
        "sellers": {
            a: [msgspec.to_builtins(w) for w in views.workers_of(a, now_ms=now_ms)]
            for a in accounts
        },
    }


async def test_execute_journals_exactly_the_emitted_events(tmp_path: Path) -> None:
    now = [T0]
    async with running_engine(tmp_path / "j.db", clock=fixed_clock(now)) as run:
        engine, journal, market = run.engine, run.journal, run.market

        def open_and_fund() -> str:
            market.create_account(account="buyer", now_ms=now[0])
            market.deposit(account="buyer", amount_msat=BTC, now_ms=now[0])
            return "funded"

        with trio.fail_after(10):
            assert await engine.execute(open_and_fund) == "funded"
            assert journal.last_seq == 2
            # A command that emits nothing writes nothing.
            assert await engine.execute(lambda: market.balance("buyer").available_msat) == BTC
            assert journal.last_seq == 2
            assert await journaled(journal) == [
                AccountCreated(account="buyer", time_ms=T0),
                Deposited(account="buyer", amount_msat=BTC, time_ms=T0),
            ]
    assert engine.events_journaled == 2


async def test_a_refused_command_journals_nothing(tmp_path: Path) -> None:
    async with running_engine(tmp_path / "j.db") as run:
        engine, journal, market = run.engine, run.journal, run.market
        now = engine.now_ms()
        with trio.fail_after(10):
            await engine.execute(lambda: market.create_account(account="buyer", now_ms=now))
            before = journal.last_seq
            with pytest.raises(NotFound):
                await engine.execute(
                    lambda: market.deposit(account="ghost", amount_msat=1, now_ms=now)
                )
            with pytest.raises(InsufficientBalance):
                await engine.execute(lambda: standard_order(run, now_ms=now))
            assert journal.last_seq == before
            assert run.views.list_orders(account="buyer") == []


async def test_events_emitted_before_a_crash_in_the_command_are_still_journaled(
    tmp_path: Path,
) -> None:
    async with running_engine(tmp_path / "j.db") as run:
        engine, journal, market = run.engine, run.journal, run.market

        def half_done() -> None:
            market.create_account(account="buyer", now_ms=T0)
            raise ZeroDivisionError("bug after emitting")

        with trio.fail_after(10), pytest.raises(ZeroDivisionError):
            await engine.execute(half_done)
        # Memory has the account, so the journal must too.
        assert market.has_account("buyer")
        assert await journaled(journal) == [AccountCreated(account="buyer", time_ms=T0)]


async def test_cancellation_ends_execute_only_before_the_command_runs(tmp_path: Path) -> None:
    """Cancelled before it runs, a command does nothing; once it ran, its caller waits for the
    commit and hears the result (and the listeners the events), whatever cancels it meanwhile:
    the cancellation lands at the caller's next checkpoint."""
    async with running_engine(tmp_path / "j.db") as run:
        engine, journal, market = run.engine, run.journal, run.market
        heard: list[list[Any]] = []
        engine.add_commit_listener(lambda events: heard.append([c.event for c in events]))
        ran: list[str] = []
        with trio.fail_after(10):
            with trio.CancelScope() as early:
                early.cancel()
                await engine.execute(lambda: ran.append("early"))
            assert early.cancelled_caught
            assert ran == []
            answers: list[str] = []
            with trio.CancelScope() as late:

                def command() -> str:
                    late.cancel()  # as a deadline passing while the commit is under way
                    market.create_account(account="buyer", now_ms=T0)
                    return "created"

                answers.append(await engine.execute(command))
                await trio.lowlevel.checkpoint()
                answers.append("not reached")
            assert late.cancelled_caught
            assert answers == ["created"]
            assert heard == [[AccountCreated(account="buyer", time_ms=T0)]]
            assert await journaled(journal) == [AccountCreated(account="buyer", time_ms=T0)]


async def test_execute_and_run_require_restore(tmp_path: Path) -> None:
    async with open_journal(tmp_path / "j.db") as journal:
        engine = Engine(components=[make_market()], journal=journal)
        with pytest.raises(RuntimeError, match="restore"):
            await engine.execute(lambda: None)
        await engine.restore()
        with pytest.raises(RuntimeError, match="once"):
            await engine.restore()


async def test_restore_rejects_an_unknown_component(tmp_path: Path) -> None:
    async with open_journal(tmp_path / "j.db") as journal:
        await journal.append([Record("mystery", T0, b"\x80")])
        engine = Engine(components=[make_market()], journal=journal)
        with pytest.raises(Exception, match="unknown component 'mystery'"):
            await engine.restore()


async def run_scenario(run: Running, now: list[int]) -> list[str]:
    """A busy day: buyers, orders, a seller's workers sharing concurrently, settlements,
    a cancel and a withdrawal. Returns the accounts involved."""
    engine, market, fleet = run.engine, run.market, run.fleet

    def fund(account: str) -> None:
        market.create_account(account=account, now_ms=now[0])
        market.deposit(account=account, amount_msat=BTC, now_ms=now[0])

    await engine.execute(lambda: fund("alice"))
    await engine.execute(lambda: fund("bob"))
    first = await engine.execute(lambda: standard_order(run, account="alice", now_ms=now[0]))
    second = await engine.execute(
        lambda: standard_order(
            run, account="bob", price_msat=300_000_000, limit_hs=MH, now_ms=now[0]
        )
    )
    keys = [WorkerKey(i, "seller", f"w{i}", SHA) for i in range(1, 5)]
    for key in keys:
        fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=now[0])
    await engine.execute(lambda: market.ensure_account(account="seller", now_ms=now[0]))
    run.scheduler.rebalance()
    assert {fleet.assignment(k) for k in keys} == {first.id, second.id}

    async def submit(key: WorkerKey, n: int) -> None:
        for i in range(n):
            share = make_share(
                key,
                source=fleet.assignment(key) or "",
                time_ms=now[0] + i,
                difficulty=0.001 * (0.5 + key.conn_id),
                accepted=i % 7 != 3,
            )
            await engine.execute(
                lambda s=share: market.record_share(s, order_id=fleet.assignment(key))
            )

    for _ in range(3):
        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(submit, key, 10)
        now[0] += 10_000
        await run.scheduler.settle()
    await engine.execute(lambda: market.cancel(account="alice", order_id=first.id, now_ms=now[0]))
    await engine.execute(
        lambda: market.withdraw(account="seller", amount_msat=1000, address="addr", now_ms=now[0])
    )
    run.check()
    return ["alice", "bob", "seller", market.config.fee_account]


async def test_restore_after_reopening_gives_the_same_state(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    now = [T0]
    with trio.fail_after(30):
        async with running_engine(path, clock=fixed_clock(now)) as run:
            accounts = await run_scenario(run, now)
            before = snapshot(run.market, accounts=accounts, now_ms=now[0])
            written = run.journal.last_seq
        assert any(e["kind"] == LedgerKind.CHARGE for e in before["ledgers"]["alice"])
        assert before["ledgers"]["seller"]
        async with running_engine(path, clock=fixed_clock(now)) as run:
            assert run.journal.last_seq == written
            restored = run.market
            run.check()
            assert snapshot(restored, accounts=accounts, now_ms=now[0]) == before


COMMANDS = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.sampled_from(["a", "b", "ghost"]), st.integers(-5, BTC)),
        st.tuples(st.just("order"), st.sampled_from(["a", "b"]), st.integers(0, 3 * 10**8)),
        st.tuples(st.just("share"), st.integers(1, 3), st.floats(0.001, 50.0)),
        st.tuples(st.just("settle"), st.just(""), st.just(0)),
        st.tuples(st.just("cancel"), st.sampled_from(["a", "b"]), st.integers(1, 4)),
    ),
    max_size=25,
)


@settings(max_examples=15, deadline=None)
@given(commands=COMMANDS)
def test_replay_rebuilds_any_history(commands: list[tuple[str, Any, Any]]) -> None:
    """Whatever commands ran (refused ones included), a restored market equals the live one."""

    async def live(path: Path) -> dict[str, Any]:
        now = [T0]
        async with running_engine(path, clock=fixed_clock(now)) as run:
            engine, market, fleet = run.engine, run.market, run.fleet
            for account in ("a", "b", "s"):
                await engine.execute(
                    lambda a=account: market.create_account(account=a, now_ms=now[0])
                )
            keys = [WorkerKey(i, "s", f"w{i}", SHA) for i in (1, 2, 3)]
            for key in keys:
                fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=now[0])
            for kind, who, value in commands:
                now[0] += 997
                fn: Any
                if kind == "deposit":
                    fn = lambda w=who, v=value: market.deposit(  # noqa: E731
                        account=w, amount_msat=v, now_ms=now[0]
                    )
                elif kind == "order":
                    fn = lambda w=who, v=value: standard_order(  # noqa: E731
                        run, account=w, amount_msat=v, now_ms=now[0]
                    )
                elif kind == "share":
                    key = keys[who - 1]
                    share = make_share(key, source="", time_ms=now[0], difficulty=value)
                    fn = lambda s=share, k=key: market.record_share(  # noqa: E731
                        s, order_id=fleet.assignment(k)
                    )
                elif kind == "settle":
                    fn = lambda: market.settle(now_ms=now[0])  # noqa: E731
                else:
                    fn = lambda w=who, v=value: market.cancel(  # noqa: E731
                        account=w, order_id=f"o-{v:06d}", now_ms=now[0]
                    )
                with contextlib.suppress(MarketError):
                    await engine.execute(fn)
            run.check()
            accounts = ["a", "b", "s", market.config.fee_account]
            return snapshot(market, accounts=accounts, now_ms=now[0])

    async def main(path: Path) -> None:
        before = await live(path)
        async with running_engine(path, clock=fixed_clock([T0])) as run:
            run.check()
            after = snapshot(
                run.market,
                accounts=["a", "b", "s", run.market.config.fee_account],
                now_ms=T0 + 997 * 30,
            )
        # Times in views are the events' own; compare at the same evaluation time.
        assert after["balances"] == before["balances"]
        assert after["ledgers"] == before["ledgers"]
        assert [
            {k: v for k, v in o.items() if k != "accepted_speed_hs"}
            for a in ("a", "b")
            for o in after["orders"][a]
        ] == [
            {k: v for k, v in o.items() if k != "accepted_speed_hs"}
            for a in ("a", "b")
            for o in before["orders"][a]
        ]

    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, Path(tmp) / "j.db")
