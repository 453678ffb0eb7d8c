from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from engine.errors import StoreError
from engine.store.db import (
    head_revision,
    make_engine,
    open_database,
    parse_url,
    upgrade,
)
from engine.store.models import Base
from tests.support.databases import PostgresSchema, sqlite_url


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it, of each kind."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path, "empty")
        return
    schema = PostgresSchema(str(request.getfixturevalue("postgres_url")))
    try:
        yield schema.create()
    finally:
        schema.drop()


def schema_differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_takes_an_empty_database_to_head(empty_url: str) -> None:
    assert upgrade(empty_url) == head_revision()

    open_database(empty_url).dispose()  # passes the revision check


def test_upgrade_twice_changes_nothing(empty_url: str) -> None:
    upgrade(empty_url)

    assert upgrade(empty_url) == head_revision()


def test_migrations_build_exactly_the_models(empty_url: str) -> None:
    upgrade(empty_url)

    assert schema_differences(empty_url) == []


def test_comparison_notices_a_missing_index(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_tms_deploys_org_app_at"))
    engine.dispose()

    differences = schema_differences(empty_url)

    assert [d[0] for d in differences] == ["add_index"]  # type: ignore[index]


def test_open_refuses_an_unmigrated_database(empty_url: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_database(empty_url)

    assert caught.value.code == "E702"
    assert "run `incident-policy db upgrade`" in caught.value.message


def test_open_refuses_a_database_from_a_newer_version(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'fffffffffff0'"))
    engine.dispose()

    with pytest.raises(StoreError) as caught:
        open_database(empty_url)

    assert caught.value.code == "E703"
    assert "upgraded by a newer version" in caught.value.message


def test_unreachable_server_is_a_store_error_without_the_password() -> None:
    # Port 1 on loopback: nothing listens there.
    url = "postgresql+psycopg://someone:hunter2@127.0.0.1:1/nothing"

    with pytest.raises(StoreError) as caught:
        open_database(url)

    assert caught.value.code == "E701"
    assert "cannot reach the database" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "made" / "on" / "demand"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    engine.dispose()


def test_bare_postgresql_url_means_psycopg_3() -> None:
    url = parse_url("postgresql://postgres@127.0.0.1:5432/test")

    assert url.drivername == "postgresql+psycopg"


def test_other_drivers_are_refused_with_the_supported_forms() -> None:
    with pytest.raises(StoreError) as caught:
        parse_url("mysql://root@127.0.0.1/db")

    assert caught.value.code == "E705"
    assert "postgresql+psycopg://" in caught.value.message
