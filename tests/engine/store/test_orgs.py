from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from engine.errors import StoreError
from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.models import ApiKey, Organization
from engine.store.orgs import (
    authenticate,
    create_api_key,
    create_org,
    ensure_org,
    list_api_keys,
    revoke_api_key,
)


def issue(
    db: Database,
    org_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    role: str = "reviewer",
) -> str:
    with db.sessions.begin() as session:
        return create_api_key(
            session, ids=ids, org_id=org_id, role=role, now=clock.now()
        ).key


def test_only_the_hash_of_a_key_is_stored(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    key = issue(db, org_id, ids, clock)

    with db.readers() as session:
        record = session.scalars(select(ApiKey)).one()
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in (record.key_hash, record.prefix)
    assert key.startswith(record.prefix)


def test_a_key_authenticates_as_its_org_and_role(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    key = issue(db, org_id, ids, clock, role="source")

    with db.sessions.begin() as session:
        record = authenticate(session, key, now=clock.now())

    assert record is not None
    assert (record.org_id, record.role, record.last_used_at) == (
        org_id,
        "source",
        clock.now(),
    )


def test_unknown_and_revoked_keys_do_not_authenticate(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    key = issue(db, org_id, ids, clock)
    with db.sessions.begin() as session:
        [record] = list_api_keys(session, org_id)
        assert revoke_api_key(session, org_id, record.id, now=clock.now())

    with db.sessions.begin() as session:
        assert authenticate(session, key, now=clock.now()) is None
        assert authenticate(session, key + "x", now=clock.now()) is None


def test_a_key_cannot_be_revoked_through_another_org(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    issue(db, org_id, ids, clock)
    with db.sessions.begin() as session:
        other = ensure_org(session, ids=ids, name="globex", now=clock.now()).id
        [record] = list_api_keys(session, org_id)

        assert not revoke_api_key(session, other, record.id, now=clock.now())


def test_unknown_role_is_refused_with_the_roles_that_exist(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    with pytest.raises(StoreError, match="use source, reviewer or admin"):
        issue(db, org_id, ids, clock, role="owner")


def test_ensure_org_returns_the_existing_org(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    with db.sessions.begin() as session:
        assert ensure_org(session, ids=ids, name="acme", now=clock.now()).id == org_id


@pytest.mark.parametrize(
    "name", ["", "Acme", "acme corp", "-acme", "a/b", "x" * 64, "acme\n"]
)
def test_an_organization_name_must_be_a_slug(
    db: Database, ids: SequentialIds, clock: FixedClock, name: str
) -> None:
    with pytest.raises(StoreError) as caught, db.sessions.begin() as session:
        create_org(session, ids=ids, name=name, now=clock.now())

    assert caught.value.code == "E716"
    with db.sessions() as session:
        assert session.scalars(select(Organization)).all() == []


@pytest.mark.parametrize("name", ["acme", "team-payments", "eu.acme_2", "x" * 63])
def test_slug_names_are_accepted(
    db: Database, ids: SequentialIds, clock: FixedClock, name: str
) -> None:
    with db.sessions.begin() as session:
        assert create_org(session, ids=ids, name=name, now=clock.now()).name == name
