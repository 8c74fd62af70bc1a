"""Which backend a ``--db`` names: a ``postgresql://`` URL is PostgreSQL, anything else a
SQLite file. psycopg is imported only for a PostgreSQL database, so a market on SQLite never
loads it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from marketplace.storage.sqlite import SqliteStore
from marketplace.storage.store import Synchronous

if TYPE_CHECKING:
    from marketplace.storage.postgres import PostgresStore


def is_postgres_url(db: str | Path) -> bool:
    """Whether ``db`` names a PostgreSQL database rather than a SQLite file."""
    return str(db).startswith(("postgresql://", "postgres://"))


def open_store(
    db: str | Path, *, synchronous: Synchronous = Synchronous.FULL, busy_timeout_s: float = 5.0
) -> SqliteStore | PostgresStore:
    """The backend for ``db`` (nothing is opened yet). Raises ``ValueError`` for a PostgreSQL
    URL that cannot be parsed."""
    if is_postgres_url(db):
        from marketplace.storage.postgres import PostgresStore

        return PostgresStore(str(db), synchronous=synchronous, busy_timeout_s=busy_timeout_s)
    return SqliteStore(db, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
