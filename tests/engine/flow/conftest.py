"""Flow fixtures: the store fixtures (SQLite and PostgreSQL) and a harness."""

from __future__ import annotations

from tests.engine.store.conftest import (  # noqa: F401
    clock,
    db,
    db_url,
    ids,
    postgres_store_url,
    sqlite_store_url,
)


import pytest  # noqa: E402

from engine.store.db import Database, open_database  # noqa: E402
from tests.support.databases import wipe  # noqa: E402


@pytest.fixture
def sqlite_db(sqlite_store_url: str):  # noqa: F811
    """The SQLite store alone, for sweeps that need not run twice."""
    wipe(sqlite_store_url)
    database: Database = open_database(sqlite_store_url)
    try:
        yield database
    finally:
        database.dispose()
