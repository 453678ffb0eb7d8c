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
