from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from engine.errors import StoreError
from engine.runtime import SequentialIds
from engine.store.alerts import AlertIn
from engine.store.db import (
    Database,
    alembic_config,
    head_revision,
    make_engine,
    open_database,
    parse_url,
    upgrade,
)
from engine.store.incidents import open_or_fold
from engine.store.models import Alert, ApiKey, Base
from engine.store.orgs import create_api_key, create_org, find_org
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


def test_posted_snapshots_move_out_of_the_alert_facts_and_back(
    empty_url: str,
) -> None:
    # Before revision 01e930895121 the posted snapshot rode in the facts.
    posted = {"memory": {"percent": 97.5}}
    upgrade(empty_url)
    database = open_database(empty_url)
    ids, now = SequentialIds(), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with database.sessions.begin() as session:
        org = create_org(session, ids=ids, name="acme", now=now)
        alert = AlertIn(
            source="api",
            kind="threshold_exceeded",
            fingerprint="fp",
            severity="warning",
            received_at=now,
            facts={"kind": "threshold_exceeded"},
            posted_snapshot=posted,
        )
        open_or_fold(session, org.id, "k", "warning", "t", alert, ids=ids)
    database.dispose()

    engine = make_engine(empty_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "99c76c5c26e3")
        with engine.connect() as conn:
            old = conn.execute(text("SELECT facts FROM tms_alerts")).scalar_one()
    finally:
        engine.dispose()
    upgrade(empty_url)
    database = open_database(empty_url)
    with database.sessions() as session:
        row = session.scalars(select(Alert)).one()
        moved = (row.facts, row.posted_snapshot)
    database.dispose()

    old = json.loads(old) if isinstance(old, str) else old
    assert old == {"kind": "threshold_exceeded", "posted_snapshot": posted}
    assert moved == ({"kind": "threshold_exceeded"}, posted)


def test_a_new_sqlite_file_and_its_folder_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "var"
    url = f"sqlite:///{folder / 'store.sqlite3'}"

    upgrade(url)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes["store.sqlite3"] == 0o600
    assert set(modes.values()) == {0o600}  # the -wal and -shm files too


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    """An open SQLite database with an organization, and its file."""
    url = sqlite_url(tmp_path)
    upgrade(url)
    database = open_database(url)
    with database.sessions.begin() as session:
        create_org(session, ids=SequentialIds(), name="acme", now=NOW)
    try:
        yield database, Path(url.removeprefix("sqlite:///"))
    finally:
        database.dispose()


def add_key(database: Database) -> None:
    with database.sessions.begin() as session:
        org = find_org(session, "acme")
        assert org is not None
        create_api_key(
            session,
            ids=SequentialIds(),
            org_id=org.id,
            role="admin",
            now=NOW,
        )


def count_keys(path: Path) -> int:
    database = open_database(f"sqlite:///{path}")
    try:
        with database.readers() as session:
            return int(session.scalar(select(func.count()).select_from(ApiKey)))
    finally:
        database.dispose()


def test_a_moved_file_refuses_writes_and_is_not_recreated(
    sqlite_file: tuple[Database, Path],
) -> None:
    database, path = sqlite_file
    moved = path.with_name("moved.sqlite3")
    path.rename(moved)

    with pytest.raises(StoreError) as caught:
        add_key(database)

    assert caught.value.code == "E701"
    assert f"the database file {path} was removed or replaced" in (caught.value.message)
    assert "restore the file or restart the service" in caught.value.message
    assert not path.exists()
    moved.rename(path)
    assert count_keys(path) == 0


def test_a_restored_file_takes_writes_again(
    sqlite_file: tuple[Database, Path],
) -> None:
    database, path = sqlite_file
    moved = path.with_name("moved.sqlite3")
    path.rename(moved)
    with pytest.raises(StoreError):
        add_key(database)

    moved.rename(path)
    add_key(database)

    assert count_keys(path) == 1


def test_a_replaced_file_refuses_reads_and_writes(
    sqlite_file: tuple[Database, Path],
) -> None:
    database, path = sqlite_file
    copy = path.with_name("copy.sqlite3")
    shutil.copyfile(path, copy)
    os.replace(copy, path)

    with pytest.raises(StoreError) as written:
        add_key(database)
    with pytest.raises(StoreError) as read, database.readers() as session:
        session.execute(select(ApiKey)).all()

    assert (written.value.code, read.value.code) == ("E701", "E701")
    database.dispose()
    assert count_keys(path) == 0


def test_a_new_connection_to_a_removed_file_is_refused(
    sqlite_file: tuple[Database, Path],
) -> None:
    database, path = sqlite_file
    database.dispose()  # the pool holds no open connection any more
    path.unlink()

    with pytest.raises(StoreError) as caught, database.readers() as session:
        session.execute(select(ApiKey)).all()

    assert caught.value.code == "E701"
    assert not path.exists()


def test_an_engine_never_creates_a_file_removed_after_it_was_made(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    engine = make_engine(url)
    path = tmp_path / "store.sqlite3"
    path.unlink()

    with pytest.raises(OperationalError, match="unable to open"):
        engine.connect().close()

    assert not path.exists()
    engine.dispose()


def test_the_writable_check_commits_a_write(
    sqlite_file: tuple[Database, Path],
) -> None:
    database, path = sqlite_file
    watcher = sqlite3.connect(path)
    before = watcher.execute("PRAGMA data_version").fetchone()[0]

    database.check_writable()

    # data_version moves only when another connection commits a change.
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    watcher.close()
