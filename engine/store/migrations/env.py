"""Alembic's entry point for the store's migrations.

``engine.store.db.upgrade`` hands over an open connection in the config's
attributes. Developers running the ``alembic`` command itself (to write a new
revision with ``--autogenerate``) get the database the settings name.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from engine.store.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_settings() -> None:
    from engine.settings import Settings
    from engine.store.db import make_engine

    engine = make_engine(Settings().resolved_database_url)
    try:
        with engine.begin() as connection:
            run(connection)
    finally:
        engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    run_from_settings()
