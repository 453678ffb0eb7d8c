"""Column types that behave the same on SQLite and PostgreSQL.

``UTCDateTime`` stores instants. Going in it refuses a naive datetime (its
meaning would depend on the host's clock settings) and converts any offset to
UTC; coming out it always hands back an aware UTC datetime. PostgreSQL keeps
a ``timestamptz``; SQLite, which has no time type, keeps the UTC wall time as
fixed-width text, so text order is time order and range filters work.
``JSONDoc`` is ``JSONB`` on PostgreSQL and SQLite's JSON elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Table
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.errors import StoreError

NAIVE_DATETIME = "E704"


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; refuse a naive one."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise StoreError(
            f"the time {value.isoformat()} has no UTC offset: pass a "
            "timezone-aware datetime (for example from the injected clock)",
            code=NAIVE_DATETIME,
        )
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: aware UTC in, aware UTC out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        utc = as_utc(value)
        # SQLite's DATETIME drops the offset silently; store UTC wall time.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_document() -> TypeEngine[Any]:
    """A JSON column: ``JSONB`` on PostgreSQL, ``JSON`` elsewhere."""
    return JSON().with_variant(JSONB(), "postgresql")


def table_of(model: Any) -> Table:
    """The Core table of a mapped class (typed for bulk statements)."""
    table: Table = model.__table__
    return table
