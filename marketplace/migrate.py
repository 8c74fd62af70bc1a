"""``hashmarket migrate --from FILE.db --to postgresql://...``: move a market to PostgreSQL.

Theory of operation
-------------------
Both backends hold the same tables with the same bytes (``storage.store``), so a migration is a
copy of rows: every event (with its seq and time) and the newest snapshot. It copies a market
nobody serves into an existing, empty PostgreSQL database, and holds both databases' writer
locks throughout (``<db>.lock`` of the file, the advisory lock of the target), so no market can
start on either while it runs. It refuses, changing nothing:

- a source a market is serving (its lock is taken): stop that market first;
- a target a market is serving, or one that already holds events or a snapshot;
- a source that does not exist, or arguments the wrong way round.

The rows go in with one ``COPY`` in one transaction, so a failed copy leaves the target
empty. Then it verifies: both journals must hold the same events, and folding each (its
snapshot and the events after it, as a market's restore does) into fresh components must give
the same state, component by component; a copy that does not verify is taken out again. The
components are built under a throwaway key: state holds no secret, so the comparison does not
need the market's.

The master key is not in either database: every market of the target must be given the one the
file's markets used (``<db>.key`` beside the file, or ``HASHMARKET_MASTER_KEY``), with
``--master-key-file`` or the environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Final, NamedTuple

import trio

from marketplace.assembly import durable_components
from marketplace.config import NodeConfig
from marketplace.engine import Engine
from marketplace.storage import (
    Journal,
    JournalError,
    NodeBusy,
    Storage,
    StorageFault,
    is_postgres_url,
    open_store,
)
from marketplace.storage.journal import store_call
from marketplace.storage.postgres import PostgresStore
from marketplace.storage.sqlite import SqliteConnection, SqliteStore
from marketplace.storage.store import Row
from stratum.logconfig import configure_logging

#: Rows read from the file at a time while copying.
CHUNK: Final = 10_000
#: The key the verification folds both journals under (it derives no secret anyone uses).
_VERIFY_KEY: Final = bytes(range(32))


class MigrationRefused(Exception):
    """The migration cannot be done as asked (see the module doc); nothing was changed."""


class Migrated(NamedTuple):
    """What a migration copied and verified."""

    events: int
    snapshot_seq: int | None
    #: The master key file of the source (what the target's markets must be given), if any.
    key_file: str | None


async def migrate(source: str, target: str, *, chunk: int = CHUNK) -> Migrated:
    """Copy the market in the SQLite file ``source`` into the empty PostgreSQL database at
    ``target`` and verify the copy (see the module doc).

    Raises ``MigrationRefused`` (nothing changed) for a served or missing source, a served or
    non-empty target, or the wrong kinds of database; ``StorageFault`` if either database
    cannot be reached; ``JournalError`` if the copy does not verify.
    """
    if is_postgres_url(source) or not is_postgres_url(target):
        raise MigrationRefused("migrate copies a SQLite file (--from) into PostgreSQL (--to)")
    if not await trio.Path(source).is_file():
        raise MigrationRefused(f"no database at {source}")
    from_store = SqliteStore(source)
    to_store = open_store(target)
    assert isinstance(to_store, PostgresStore)
    try:
        reader = await store_call(from_store, from_store.open_writer)
    except NodeBusy:
        raise MigrationRefused(f"{source} is being served: stop its market first") from None
    try:
        try:
            writer = await store_call(to_store, to_store.open_writer)
        except NodeBusy:
            raise MigrationRefused(f"{to_store.name} is being served by a market") from None
        try:
            held = await store_call(to_store, writer.last_seq)
            if held or await store_call(to_store, writer.read_snapshot) is not None:
                raise MigrationRefused(
                    f"{to_store.name} is not empty (it holds {held} events): migrate only into"
                    " an empty database"
                )
            snapshot = await store_call(from_store, reader.read_snapshot)
            copied = await store_call(to_store, writer.load, _rows(reader, chunk), snapshot)
            try:
                await _verify(source, target)
            except JournalError:
                await store_call(to_store, writer.unload)  # the target is empty again
                raise
        finally:
            await trio.to_thread.run_sync(writer.close)
    finally:
        await trio.to_thread.run_sync(reader.close)
    key = Storage(source).key_path
    return Migrated(
        events=copied,
        snapshot_seq=None if snapshot is None else snapshot.seq,
        key_file=str(key) if key is not None and await trio.Path(key).exists() else None,
    )


def _rows(reader: SqliteConnection, chunk: int) -> Iterator[list[Row]]:
    after = 0
    while rows := reader.read_rows(after=after, limit=chunk):
        yield rows
        after = rows[-1].seq


async def _verify(source: str, target: str) -> None:
    """Raise ``JournalError`` unless both journals hold the same events and fold into the
    same state."""
    copied = Journal(target).replay()
    count = 0
    async for entry in Journal(source).replay():
        if await anext(copied, None) != entry:
            raise JournalError(f"the copy differs from the file at seq {entry.seq}")
        count += 1
    if await anext(copied, None) is not None:
        raise JournalError(f"the copy holds more than the file's {count} events")
    mine, theirs = await _state(source), await _state(target)
    for name, state in mine.items():
        if theirs[name] != state:
            raise JournalError(f"the copy folds into another state of {name!r}")


async def _state(db: str) -> Mapping[str, bytes]:
    parts = durable_components(NodeConfig(), master_key=_VERIFY_KEY)
    engine = Engine(components=parts.all(), journal=Journal(db))
    await engine.restore()
    return {component.component: component.encode_state() for component in parts.all()}


def main_migrate(args: argparse.Namespace) -> int:
    """``hashmarket migrate``: print one JSON object and exit 0, or "error: ..." and 1."""
    configure_logging("json", level="warning")
    try:
        done = trio.run(migrate, args.source, args.target)
    except (MigrationRefused, JournalError, StorageFault, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(done._asdict()))
    print(
        "every market of the target must be given this market's master key"
        f" ({done.key_file or 'HASHMARKET_MASTER_KEY'}) with --master-key-file or"
        " HASHMARKET_MASTER_KEY",
        file=sys.stderr,
    )
    return 0
