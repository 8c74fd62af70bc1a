"""Fixtures every test package may use: a real PostgreSQL server for the session (``tests/pg.py``),
a fresh database of it per test, and ``journal_db``, which runs a storage test once on a SQLite
file and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import PostgresServer, find_bindir, why_not_available


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """One PostgreSQL server for the whole session, started on first use and torn down at the
    session's end; ``None`` where PostgreSQL is not installed."""
    if why_not_available() is not None:
        yield None
        return
    bindir = find_bindir()
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres(postgres_server: PostgresServer | None) -> PostgresServer:
    """The session's PostgreSQL server; the test is skipped where PostgreSQL is not
    installed."""
    if postgres_server is None:
        pytest.skip(why_not_available() or "no PostgreSQL")
    return postgres_server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session's server (dropped after the test)."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a storage test keeps its journal: a new SQLite file, then a new PostgreSQL
    database (skipped where PostgreSQL is not installed)."""
    if request.param == "sqlite":
        return str(tmp_path / "j.db")
    url: str = request.getfixturevalue("pg_url")
    return url
