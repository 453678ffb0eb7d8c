"""Private databases for tests: a SQLite file, or a PostgreSQL schema.

A PostgreSQL test database is a fresh schema (``ip_test_<random>``) on the
server the test URL names, reached through a URL whose connection options
set ``search_path`` to it, so the migrations, the engine and any child
process see only that schema; ``drop`` removes it with everything in it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import text

from engine.store.db import make_engine, parse_url
from engine.store.models import Base


def sqlite_url(directory: Path, name: str = "store") -> str:
    return f"sqlite:///{directory / f'{name}.sqlite3'}"


def schema_url(server_url: str, schema: str) -> str:
    """``server_url`` with ``schema`` as the only schema on the search path."""
    url = parse_url(server_url).update_query_dict(
        {"options": f"-csearch_path={schema}"}
    )
    return url.render_as_string(hide_password=False)


class PostgresSchema:
    """A schema of its own on a shared PostgreSQL server."""

    def __init__(self, server_url: str, prefix: str = "ip_test") -> None:
        self.server_url = server_url
        self.name = f"{prefix}_{secrets.token_hex(6)}"
        self.url = schema_url(server_url, self.name)

    def create(self) -> str:
        self._run(f'CREATE SCHEMA "{self.name}"')
        return self.url

    def drop(self) -> None:
        self._run(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')

    def _run(self, statement: str) -> None:
        engine = make_engine(self.server_url)
        try:
            with engine.begin() as conn:
                conn.execute(text(statement))
        finally:
            engine.dispose()


def wipe(url: str) -> None:
    """Delete every row of every store table, keeping the schema."""
    engine = make_engine(url)
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    try:
        with engine.begin() as conn:
            # DELETE beats TRUNCATE on the few rows a test leaves behind.
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()
