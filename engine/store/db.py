"""Engines, sessions and migrations for the one database the service uses.

``make_engine`` turns a ``DATABASE_URL`` into an engine tuned for its
database. SQLite (the default, a file under the data directory) runs in WAL
mode with a busy timeout and foreign keys on, and opens every write
transaction with ``BEGIN IMMEDIATE``: concurrent writers then queue on the
busy timeout instead of failing half-way when a read turns into a write.
Read-only work uses ``Database.readers``, whose plain ``BEGIN`` never waits
for a writer. Connections open an existing file only (URI ``mode=rw``): the
engine creates a new file, private, before its first connection, so a file
removed under a running service is never re-created empty. An open
``Database`` checks before every connection and transaction that its path
still names the file it opened. PostgreSQL goes through psycopg 3.
``upgrade`` applies the Alembic migrations shipped in
``engine/store/migrations`` up to head, and ``open_database`` refuses, with a
``StoreError`` saying what to run, a database that is unreachable or not at
the code's revision.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
FILE_TEMPLATE = (
    "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(rev)s_%%(slug)s"
)
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Serialises concurrent `db upgrade` runs of several replicas on PostgreSQL.
MIGRATION_LOCK_ID = 0x1C1D_E7E0

UNREACHABLE = "E701"
BEHIND = "E702"
AHEAD = "E703"
UNSUPPORTED = "E705"

_READ_ONLY = "incident_policy_read_only"
# The readiness probe's write: one row, one page, the value unchanged.
REWRITE_VERSION = text("UPDATE alembic_version SET version_num = version_num")


@dataclass(frozen=True, slots=True)
class Database:
    """An engine and its two session factories.

    ``sessions`` is for work that may write. ``readers`` is for work that
    only reads: on SQLite its transaction is a snapshot that does not queue
    behind writers; on PostgreSQL it runs without a transaction, each
    statement seeing what was committed when it started.
    """

    url: URL
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    file_identity: tuple[int, int] | None = None  # SQLite: (device, inode)

    def dispose(self) -> None:
        self.engine.dispose()

    def ensure_same_file(self) -> None:
        """Refuse to go on when the SQLite file was removed or replaced.

        SQLite keeps writing to a deleted file it has open: every commit
        would succeed and be lost at the next start.
        """
        if self.file_identity is None:
            return
        path = self.url.database or ""
        if _identity(path) != self.file_identity:
            raise StoreError(
                f"the database file {path} was removed or replaced while the "
                "service ran: nothing more is accepted; restore the file or "
                "restart the service",
                code=UNREACHABLE,
            )

    def check_writable(self) -> None:
        """The database still takes writes (for readiness)."""
        self.ensure_same_file()
        if self.engine.dialect.name != "sqlite":
            return
        try:
            # A real write, committed: an empty transaction writes nothing,
            # so it passes while the file or its -wal refuses every write.
            # SQLite rewrites the row even when the value is the same.
            with self.engine.begin() as conn:
                conn.execute(REWRITE_VERSION)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"the database {self.url.database} refuses writes "
                f"({exc.__class__.__name__}); check the file's permissions and "
                "the free disk space",
                code=UNREACHABLE,
            ) from exc


def open_database(url: str, *, check: bool = True) -> Database:
    """Connect to ``url``; with ``check``, refuse a database not at head."""
    engine = make_engine(url)
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    database = Database(
        url=engine.url,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        readers=sessionmaker(_reader(engine), expire_on_commit=False),
        file_identity=_identity(path) if path and path != ":memory:" else None,
    )
    if database.file_identity is not None:
        _check_before_work(engine, database.ensure_same_file)
    if check:
        try:
            ensure_current(engine)
        except StoreError:
            engine.dispose()
            raise
    return database


def _check_before_work(engine: Engine, check: Callable[[], None]) -> None:
    """Run ``check`` before each new connection and each transaction, ahead
    of the other listeners: no BEGIN is sent when it raises."""

    def on_connect(*_args: Any) -> None:
        check()

    def on_begin(_conn: Connection) -> None:
        check()

    event.listen(engine, "do_connect", on_connect, insert=True)
    event.listen(engine, "begin", on_begin, insert=True)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def _reader(engine: Engine) -> Engine:
    if engine.dialect.name == "postgresql":
        # Under READ COMMITTED a transaction gives reads no common snapshot
        # anyway; without one a read saves the BEGIN and ROLLBACK round trips.
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{_READ_ONLY: True})


def make_engine(url: str) -> Engine:
    """An engine for a SQLite or PostgreSQL URL, tuned for the service."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(parsed, pool_pre_ping=True)


def parse_url(url: str) -> URL:
    """Parse ``url``; a bare ``postgresql://`` is taken to mean psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"the database URL {url!r} cannot be parsed ({exc}): use "
            "sqlite:///path/to/file.sqlite3 or "
            "postgresql+psycopg://user@host:5432/name",
            code=UNSUPPORTED,
        ) from exc
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and "+" not in parsed.drivername:
        return parsed.set(drivername="postgresql+psycopg")
    if (backend, driver) in {("sqlite", "pysqlite"), ("postgresql", "psycopg")}:
        return parsed
    raise StoreError(
        f"the database driver {parsed.drivername!r} is not supported: use "
        "sqlite:///path/to/file.sqlite3 or postgresql+psycopg://...",
        code=UNSUPPORTED,
    )


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1e3})
    if url.database and url.database != ":memory:":
        _create_private(Path(url.database))
        # A URL already in SQLite URI mode keeps the options it names.
        if "uri" not in url.query:
            event.listen(engine, "do_connect", _open_existing)
    event.listen(engine, "connect", _configure_sqlite)
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _create_private(path: Path) -> None:
    """Create a new SQLite file readable by its owner only: it holds alert
    payloads and key hashes. SQLite gives its -wal and -shm files the same
    mode. An existing file keeps the mode its owner chose."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _open_existing(
    _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
) -> None:
    """Open the file read-write but never create it: a connection made after
    the file was removed fails instead of starting an empty database."""
    cargs[0] = f"{Path(cargs[0]).as_uri()}?mode=rw"
    cparams["uri"] = True


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event, not the driver, open transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    # An accepted alert must survive a power cut, not only a killed process.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _begin_sqlite(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the shipped migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", FILE_TEMPLATE)
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> str:
    """Apply the migrations to ``url`` up to ``revision``; return the head."""
    engine = make_engine(url)
    try:
        with connect(engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
            command.upgrade(alembic_config(conn), revision)
            reached = current_revision(conn)
    finally:
        engine.dispose()
    log.info(
        "store.upgraded",
        extra={"url": engine.url.render_as_string(), "revision": reached},
    )
    return reached


def current_revision(conn: Connection) -> str:
    heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads))


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    return ",".join(sorted(script.get_heads()))


def ensure_current(engine: Engine) -> None:
    """Raise a ``StoreError`` unless the database is at the code's head."""
    with connect(engine) as conn:
        current = current_revision(conn)
    head = head_revision()
    if current == head:
        return
    where = engine.url.render_as_string()
    known = {
        script.revision
        for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    if current and not set(current.split(",")) <= known:
        raise StoreError(
            f"the database {where} is at revision {current}, which this version "
            "of incident-policy does not know: it was upgraded by a newer "
            "version; run that version, or restore a backup",
            code=AHEAD,
        )
    raise StoreError(
        f"the database {where} is at revision {current or 'none (empty)'} but "
        f"this version needs {head}: run `incident-policy db upgrade`",
        code=BEHIND,
    )


@contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection, or a ``StoreError`` that says the database is down."""
    try:
        conn = engine.connect()
    except OperationalError as exc:
        where = engine.url.render_as_string()
        raise StoreError(
            f"cannot reach the database {where} ({_first_line(exc)}): check "
            "DATABASE_URL and that the server is running and accepts this user",
            code=UNREACHABLE,
        ) from exc
    with conn:
        yield conn


def _first_line(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
