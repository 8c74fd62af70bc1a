"""Snapshots: stored in order with the events, restored with only the later events replayed,
ignored (full replay) when unreadable or of another format, and taken at node shutdown; on
both backends (``journal_db``). (The scheduler's periodic snapshots: ``test_scheduler.py``.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import structlog
import trio

from marketplace.core.fleet import Fleet
from marketplace.core.key_events import Scope
from marketplace.core.keys import KeyRing
from marketplace.core.market import Market
from marketplace.core.model import WorkerKey
from marketplace.engine import Engine, SnapshotEnvelope
from marketplace.scheduler import MarketScheduler
from marketplace.storage import Journal, Record, open_journal
from tests.clocks import trio_clock

from .helpers import BTC, MH, SHA, Running, make_market, make_share, standard_order
from .test_assembly import serving, settings

MASTER = b"k" * 32


def record(n: int) -> Record:
    return Record("market", n, f"event {n}".encode())


async def test_a_snapshot_is_stored_after_the_events_queued_before_it(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(10):
        async with open_journal(path) as journal:
            assert await journal.latest_snapshot() is None
            journal.append_nowait([record(1), record(2)])
            first = journal.append_snapshot_nowait(b"state after 2", time_ms=7)
            last = journal.append_nowait([record(3)])
            await first.wait()
            await last.wait()
            stored = await journal.latest_snapshot()
            assert stored is not None
            assert (stored.seq, stored.time_ms, stored.body) == (2, 7, b"state after 2")
            # Only the newest is kept; a snapshot with no event before it in its batch still
            # names the last event journaled.
            await journal.append_snapshot_nowait(b"state after 3", time_ms=8).wait()
        async with open_journal(path) as journal:
            stored = await journal.latest_snapshot()
            assert stored is not None
            assert (stored.seq, stored.body) == (3, b"state after 3")
            # Events are all still there.
            assert [e.seq async for e in journal.replay()] == [1, 2, 3]


@dataclass
class Restored:
    run: Running
    keyring: KeyRing
    journal: Journal
    replayed: int  # events restore applied

    @property
    def engine(self) -> Engine:
        return self.run.engine

    @property
    def market(self) -> Market:
        return self.run.market


@asynccontextmanager
async def restored(path: str | Path) -> AsyncIterator[Restored]:
    """A fresh market and key ring restored from the journal at ``path`` (kept open)."""
    ids = iter(f"key-{n}" for n in range(1, 100))
    market = make_market()
    keyring = KeyRing(master_key=MASTER, new_key_id=lambda: next(ids))
    async with open_journal(path) as journal:
        engine = Engine(components=[market, keyring], journal=journal, clock=trio_clock())
        scheduler = MarketScheduler(engine=engine, market=market, fleet=Fleet(config=market.config))
        replayed = await engine.restore()
        run = Running(engine=engine, scheduler=scheduler, journal=journal)
        yield Restored(run, keyring, journal, replayed)


async def busy_history(run: Running, keyring: KeyRing) -> None:
    """Accounts, orders, shares, a settlement, keys and a recorded answer."""
    engine, market = run.engine, run.market
    now = engine.now_ms

    def fund() -> None:
        market.create_account(account="buyer", now_ms=now())
        market.deposit(account="buyer", amount_msat=BTC, now_ms=now())

    await engine.execute(fund)
    order = await engine.execute(lambda: standard_order(run, now_ms=now()))
    issued = await engine.execute(
        lambda: keyring.create_key(
            account="buyer", label="bot", scopes=[Scope.TRADE], expires_ms=None, now_ms=now()
        )
    )
    await engine.execute(
        lambda: keyring.remember(
            (issued.key.key_id, "req-1", 0),
            method="order.create",
            digest="d" * 32,
            result=b'{"id":"o-000001"}',
            now_ms=now(),
        )
    )
    key = make_key()
    run.fleet.worker_joined(worker=key, estimate_hs=MH, now_ms=now())
    run.scheduler.rebalance()
    for difficulty in (0.001, 1 / 3, 0.0123):
        share = make_share(key, source=order.id, time_ms=now(), difficulty=difficulty)
        await engine.execute(lambda s=share: market.record_share(s, order_id=order.id))
    await run.scheduler.settle()


def make_key() -> WorkerKey:
    return WorkerKey(1, "seller", "rig", SHA)


async def test_restore_from_a_snapshot_replays_only_the_later_events(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(20):
        async with restored(path) as first:
            engine, market, keyring = first.engine, first.market, first.keyring
            assert first.replayed == 0
            await busy_history(first.run, keyring)
            assert engine.snapshot() is True
            assert engine.events_since_snapshot == 0
            # More history after the snapshot: a second order and its share.
            order = await engine.execute(lambda: standard_order(first.run, now_ms=engine.now_ms()))
            share = make_share(make_key(), source=order.id, time_ms=engine.now_ms(), difficulty=0.5)
            await engine.execute(lambda: market.record_share(share, order_id=order.id))
            assert engine.events_since_snapshot == 2
        async with restored(path) as second:
            assert second.replayed == 2
        assert second.market.encode_state() == market.encode_state()
        assert second.keyring.encode_state() == keyring.encode_state()
        second.run.check()
        # The restored key ring answers a retry and derives the same secrets.
        recalled = second.keyring.recall(("key-1", "req-1", 0), now_ms=engine.now_ms())
        assert recalled is not None
        assert recalled.result == b'{"id":"o-000001"}'
        assert second.keyring.secret_of("key-1", 1) == keyring.secret_of("key-1", 1)


async def test_an_unreadable_snapshot_is_ignored_for_a_full_replay(journal_db: str) -> None:
    path = journal_db
    with trio.fail_after(20):
        async with restored(path) as first:
            await busy_history(first.run, first.keyring)
            await first.journal.append_snapshot_nowait(b'{"format": 99}', time_ms=0).wait()
            total = first.journal.last_seq
        with structlog.testing.capture_logs() as logs:
            async with restored(path) as second:
                assert second.replayed == total
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "engine.snapshot_ignored"
        ]
        assert second.market.encode_state() == first.market.encode_state()
        assert second.keyring.encode_state() == first.keyring.encode_state()


async def test_each_components_state_format_decides_whether_its_snapshot_is_read(
    journal_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = journal_db
    # Every component at format 1, as before per-component formats existed.
    monkeypatch.setattr(Market, "state_format", 1)
    with trio.fail_after(20):
        async with restored(path) as first:
            await busy_history(first.run, first.keyring)
            states = {
                "market": msgspec.Raw(first.market.encode_state()),
                "keys": msgspec.Raw(first.keyring.encode_state()),
            }
            # An envelope from before per-component formats has every state at format 1: the
            # market's state has changed shape since (pools, refunds), so it is not read.
            old = msgspec.json.encode({"format": 1, "states": states})
            await first.journal.append_snapshot_nowait(old, time_ms=0).wait()
            formats = {"market": Market.state_format, "keys": 1}
            current = SnapshotEnvelope(format=1, states=states, formats=formats)
            await first.journal.append_snapshot_nowait(
                msgspec.json.encode(current), time_ms=0
            ).wait()
            total = first.journal.last_seq
        async with restored(path) as second:
            assert second.replayed == 0
            assert second.market.encode_state() == first.market.encode_state()
            assert second.engine.snapshot()
        # The market's state changed shape (its format was bumped): the snapshot is ignored.
        monkeypatch.setattr(Market, "state_format", Market.state_format + 1)
        with structlog.testing.capture_logs() as logs:
            async with restored(path) as third:
                assert third.replayed == total
                assert third.market.encode_state() == first.market.encode_state()
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
            "engine.snapshot_ignored"
        ]
        envelope = current
        # The engine writes the formats it read with.
        async with open_journal(path) as journal:
            stored = await journal.latest_snapshot()
        assert stored is not None
        written = msgspec.json.decode(stored.body, type=SnapshotEnvelope)
        assert written.formats == envelope.formats


async def test_a_node_takes_a_snapshot_when_it_stops(
    journal_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASHMARKET_MASTER_KEY", "cd" * 32)
    with trio.fail_after(30):
        async with serving(settings(journal_db)) as node:
            market, engine = node.core.market, node.core.engine
            await engine.execute(lambda: market.create_account(account="b", now_ms=0))
            await engine.execute(lambda: market.deposit(account="b", amount_msat=BTC, now_ms=0))
        balance = market.balance("b")
        with structlog.testing.capture_logs() as logs:
            async with serving(settings(journal_db)) as node:
                assert node.core.market.balance("b") == balance
    restores = [e for e in logs if e["event"] == "engine.restored"]
    assert [(e["snapshot_seq"], e["events"]) for e in restores] == [(2, 0)]
