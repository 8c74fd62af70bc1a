"""Plain SQL on a test's database, whichever backend it is (a SQLite path or a PostgreSQL URL),
for the tests that reach under the journal: a trigger, a changed schema version."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import psycopg

from marketplace.storage import is_postgres_url


def run_sql(db: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` in order, committed; the rows of the last one that returns any."""
    rows: list[tuple[Any, ...]] = []
    if is_postgres_url(db):
        with psycopg.connect(db, autocommit=True) as pg:
            for statement in statements:
                cursor = pg.execute(statement)
                if cursor.description is not None:
                    rows = cursor.fetchall()
        return rows
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
        for statement in statements:
            cursor = conn.execute(statement)
            if cursor.description is not None:
                rows = cursor.fetchall()
    return rows


def poison_trigger(db: str, *, table: str, body: bytes, message: str) -> None:
    """Make every insert into ``table`` of a row whose body is ``body`` fail with ``message``
    (an error of the database that is no storage fault: a bug, as far as the journal knows)."""
    if is_postgres_url(db):
        run_sql(
            db,
            f"CREATE FUNCTION poison_{table}() RETURNS trigger AS $$ BEGIN"
            f" IF NEW.body = '\\x{body.hex()}'::bytea THEN RAISE EXCEPTION '{message}'; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql",
            f"CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW"
            f" EXECUTE FUNCTION poison_{table}()",
        )
        return
    run_sql(
        db,
        f"CREATE TRIGGER poison_{table} BEFORE INSERT ON {table} WHEN NEW.body = x'{body.hex()}'"
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )
