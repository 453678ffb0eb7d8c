"""Store fixtures: every test here runs on SQLite and on PostgreSQL.

``db_url`` is parametrized over both databases. Each database is created and
migrated to head once per test session (PostgreSQL in a schema of its own,
dropped at the end) and emptied before each test. The PostgreSQL half skips
with the reason when no test server is configured, and fails in CI.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database, open_database, upgrade
from engine.store.orgs import create_org
from tests.support.databases import PostgresSchema, sqlite_url, wipe

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sqlite_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("store"))
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_store_url(postgres_url: str) -> Iterator[str]:
    schema = PostgresSchema(postgres_url)
    url = schema.create()
    try:
        upgrade(url)
        yield url
    finally:
        schema.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    url = str(request.getfixturevalue(f"{request.param}_store_url"))
    wipe(url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()


@pytest.fixture
def org_id(db: Database, ids: SequentialIds, clock: FixedClock) -> str:
    with db.sessions.begin() as session:
        return create_org(session, ids=ids, name="acme", now=clock.now()).id
