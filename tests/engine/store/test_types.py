from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from engine.errors import StoreError
from engine.store.db import Database
from engine.store.models import Deploy
from engine.store.types import as_utc

INDIA = timezone(timedelta(hours=5, minutes=30))


def add_deploy(db: Database, org_id: str, at: datetime, deploy_id: str) -> None:
    with db.sessions.begin() as session:
        session.add(
            Deploy(
                id=deploy_id,
                org_id=org_id,
                app="web",
                version="1.2.3",
                kind="deploy",
                at=at,
                source="ci",
            )
        )


def test_offset_time_comes_back_as_the_same_instant_in_utc(
    db: Database, org_id: str
) -> None:
    sent = datetime(2026, 3, 1, 17, 45, 12, 345678, tzinfo=INDIA)
    add_deploy(db, org_id, sent, "dep_1")

    with db.readers() as session:
        stored = session.scalars(select(Deploy.at)).one()

    assert stored == sent
    assert stored.utcoffset() == timedelta(0)
    assert stored.tzinfo is UTC
    assert (stored.hour, stored.minute, stored.microsecond) == (12, 15, 345678)


def test_range_filter_compares_instants_not_wall_times(
    db: Database, org_id: str
) -> None:
    add_deploy(db, org_id, datetime(2026, 3, 1, 17, 0, tzinfo=INDIA), "dep_early")
    add_deploy(db, org_id, datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "dep_late")
    boundary = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    with db.readers() as session:
        before = session.scalars(select(Deploy.id).where(Deploy.at < boundary))
        assert list(before) == ["dep_early"]


def test_naive_time_is_refused_on_the_way_in(db: Database, org_id: str) -> None:
    with pytest.raises(StatementError) as caught:
        add_deploy(db, org_id, datetime(2026, 3, 1, 12, 0), "dep_naive")

    assert isinstance(caught.value.orig, StoreError)
    assert caught.value.orig.code == "E704"
    with db.readers() as session:
        assert session.scalars(select(Deploy.id)).all() == []


def test_as_utc_says_how_to_fix_a_naive_time() -> None:
    with pytest.raises(StoreError, match="has no UTC offset: pass a timezone-aware"):
        as_utc(datetime(2026, 3, 1, 12, 0))
