"""``hashmarket migrate``: a market in a SQLite file copied into an empty PostgreSQL database
and verified; a served source, a served or non-empty target and a copy that does not verify
are refused, changing nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from marketplace.assembly import Core, run_offline
from marketplace.config import NodeConfig
from marketplace.migrate import MigrationRefused, migrate
from marketplace.storage import Journal, JournalError

from .helpers import Running
from .sql import run_sql
from .test_assembly import serving, settings
from .test_snapshots import busy_history


async def a_market(db: Path) -> dict[str, str]:
    """A SQLite market with history (accounts, keys, an order, shares, a settlement), a
    snapshot, and events after it; an account key its node issued."""
    async with serving(settings(db)) as node:
        core = node.core
        made = await core.create_account("bob")
        run = Running(engine=core.engine, scheduler=core.scheduler, journal=core.journal)
        await busy_history(run, core.keyring)
        assert core.engine.snapshot()
        await core.create_account("late")
    return {"key_id": made.key_id, "secret": made.secret}


async def _state(core: Core) -> tuple[bytes, bytes, bytes]:
    await trio.lowlevel.checkpoint()
    return core.market.encode_state(), core.keyring.encode_state(), core.security.encode_state()


async def _secret(core: Core, key_id: str) -> str:
    await trio.lowlevel.checkpoint()
    return core.keyring.secret_of(key_id, 1)


async def test_a_market_moves_to_postgresql_whole(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "m.db"
    with trio.fail_after(60):
        bob = await a_market(db)
        events = [entry async for entry in Journal(db).replay()]
        done = await migrate(str(db), pg_url)
    assert done.events == len(events) > 10
    assert done.key_file == str(tmp_path / "m.db.key")
    snapshot = await Journal(pg_url).latest_snapshot()
    assert snapshot is not None
    assert (snapshot.seq, snapshot) == (done.snapshot_seq, await Journal(db).latest_snapshot())
    assert [entry async for entry in Journal(pg_url).replay()] == events
    times = run_sql(pg_url, "SELECT time_ms FROM events ORDER BY seq")
    assert times == run_sql(str(db), "SELECT time_ms FROM events ORDER BY seq")
    # A market on PostgreSQL with the file's master key is the same market: same state, and
    # the keys issued on the file still work.
    on_pg = NodeConfig(db=pg_url, master_key_file=done.key_file)
    on_file = NodeConfig(db=str(db))
    assert await trio.to_thread.run_sync(run_offline, on_pg, _state) == (
        await trio.to_thread.run_sync(run_offline, on_file, _state)
    )
    secret = await trio.to_thread.run_sync(run_offline, on_pg, lambda c: _secret(c, bob["key_id"]))
    assert secret == bob["secret"]


async def test_refusals_change_nothing(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "m.db"
    with trio.fail_after(60):
        await a_market(db)
        with pytest.raises(MigrationRefused, match="no database"):
            await migrate(str(tmp_path / "missing.db"), pg_url)
        with pytest.raises(MigrationRefused, match="SQLite file"):
            await migrate(pg_url, str(db))
        async with serving(settings(db)):
            with pytest.raises(MigrationRefused, match="being served"):
                await migrate(str(db), pg_url)
        assert run_sql(pg_url, "SELECT to_regclass('events')") == [(None,)]  # untouched
        done = await migrate(str(db), pg_url)
        with pytest.raises(MigrationRefused, match="not empty"):
            await migrate(str(db), pg_url)
        assert run_sql(pg_url, "SELECT COUNT(*) FROM events") == [(done.events,)]


async def test_a_served_target_is_refused(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASHMARKET_MASTER_KEY", "ab" * 32)
    db = tmp_path / "m.db"
    with trio.fail_after(60):
        await a_market(db)
        async with serving(settings(pg_url)):
            with pytest.raises(MigrationRefused, match="being served by a market"):
                await migrate(str(db), pg_url)


async def test_a_copy_that_does_not_verify_is_taken_out(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "m.db"
    with trio.fail_after(60):
        await a_market(db)
        # The target changes what it stores: the copy no longer equals the file.
        await Journal(pg_url).latest_snapshot()  # makes the tables
        run_sql(
            pg_url,
            "CREATE FUNCTION bend() RETURNS trigger AS $$ BEGIN"
            " IF NEW.seq = 3 THEN NEW.body = NEW.body || '\\x20'::bytea; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER bend BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION bend()",
        )
        with pytest.raises(JournalError, match="differs from the file at seq 3"):
            await migrate(str(db), pg_url)
    assert run_sql(pg_url, "SELECT COUNT(*) FROM events") == [(0,)]
    assert run_sql(pg_url, "SELECT COUNT(*) FROM snapshots") == [(0,)]


async def test_the_command_line(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "m.db"
    with trio.fail_after(60):
        await a_market(db)
        argv = [sys.executable, "-m", "marketplace", "migrate", "--from", str(db), "--to", pg_url]
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
        printed = json.loads(done.stdout)
        assert printed["key_file"] == str(tmp_path / "m.db.key")
        assert str(tmp_path / "m.db.key") in done.stderr.decode()  # the key to give the target
        again = await trio.run_process(argv, capture_stderr=True, check=False)
    assert again.returncode == 1
    assert again.stderr.decode().startswith("error: ")
    assert "not empty" in again.stderr.decode()
