"""Organizations and their API keys.

Every row of the store belongs to one organization, and every request is
authenticated by an API key of one organization with one role (source,
reviewer, admin). A key is 32 random bytes from ``secrets``, shown once when
it is created; the store keeps only its SHA-256 hash (enough for a key of
that entropy, and a lookup by hash needs no timing-safe compare) and its
first characters, so a person can tell keys apart in a list.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.errors import ConflictError, Location, NotFoundError, StoreError
from engine.runtime import IdGenerator
from engine.store.models import ApiKey, Organization, Role
from engine.store.types import as_utc

KEY_PREFIX = "ipk_"
SHOWN_CHARS = 12  # "ipk_" and 8 characters of the secret
# Recording every use would turn each read request into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
BAD_ROLE = "E707"
BAD_ORG_NAME = "E716"
# Organization names appear in URLs, logs, metrics and the facts rules read.
ORG_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def check_org_name(name: str) -> None:
    if not ORG_NAME.fullmatch(name):
        raise StoreError(
            f"organization name {name[:80]!r} is not allowed: use 1 to 63 "
            "lowercase letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (for example 'acme' or 'team-payments')",
            code=BAD_ORG_NAME,
        )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``key`` is the secret, shown to its owner this once."""

    key: str
    record: ApiKey


def create_org(
    session: Session,
    *,
    ids: IdGenerator,
    name: str,
    now: datetime,
    auto_execute: bool = False,
) -> Organization:
    check_org_name(name)
    org = Organization(
        id=ids.new("org"),
        name=name,
        auto_execute=auto_execute,
        created_at=as_utc(now),
    )
    session.add(org)
    session.flush()
    return org


def ensure_org(
    session: Session, *, ids: IdGenerator, name: str, now: datetime
) -> Organization:
    """The organization named ``name``, created when missing (race-safe)."""
    found = find_org(session, name)
    if found is not None:
        return found
    try:
        with session.begin_nested():
            return create_org(session, ids=ids, name=name, now=now)
    except IntegrityError:
        # Another process created it between our read and our insert.
        existing = find_org(session, name)
        if existing is None:
            raise
        return existing


def find_org(session: Session, name: str) -> Organization | None:
    query = select(Organization).where(Organization.name == name)
    return session.scalars(query).first()


def get_org(session: Session, org_id: str) -> Organization:
    org = session.get(Organization, org_id)
    if org is None:
        raise NotFoundError(
            f"organization {org_id} does not exist: check the id, or list the "
            "organizations with an admin key"
        )
    return org


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(
    session: Session,
    *,
    ids: IdGenerator,
    org_id: str,
    role: str,
    now: datetime,
    name: str = "",
) -> IssuedKey:
    """Make a key for ``org_id`` with ``role``; only its hash is stored."""
    if role not in {member.value for member in Role}:
        raise StoreError(
            f"the role {role!r} does not exist: use source, reviewer or admin",
            code=BAD_ROLE,
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        id=ids.new("key"),
        org_id=org_id,
        role=role,
        name=name,
        key_hash=hash_key(key),
        prefix=key[:SHOWN_CHARS],
        created_at=as_utc(now),
    )
    session.add(record)
    session.flush()
    return IssuedKey(key=key, record=record)


def authenticate(session: Session, key: str, *, now: datetime) -> ApiKey | None:
    """The live key record for ``key``, or None when unknown or revoked."""
    query = select(ApiKey).where(
        ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)
    )
    record = session.scalars(query).first()
    if record is not None:
        _note_use(session, record, as_utc(now))
    return record


def _note_use(session: Session, record: ApiKey, now: datetime) -> None:
    last = record.last_used_at
    if last is None or now - last >= LAST_USED_RESOLUTION:
        record.last_used_at = now
        session.flush()


def revoke_api_key(
    session: Session, org_id: str, key_id: str, *, now: datetime
) -> bool:
    """Revoke one of ``org_id``'s keys; False when it is unknown or revoked.

    The last admin key of an organization is kept: without it nobody could
    manage the organization's keys or policy through the API.
    """
    _keep_an_admin(session, org_id, key_id)
    revoked = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id, ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None)
        )
        .values(revoked_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(revoked.rowcount)  # type: ignore[attr-defined]


def _keep_an_admin(session: Session, org_id: str, key_id: str) -> None:
    admins = set(
        session.scalars(
            select(ApiKey.id).where(
                ApiKey.org_id == org_id,
                ApiKey.role == Role.ADMIN.value,
                ApiKey.revoked_at.is_(None),
            )
        )
    )
    if admins == {key_id}:
        raise ConflictError(
            f"{key_id} is the organization's last admin key: create another "
            "admin key first, then revoke this one",
            code="E409",
            location=Location(field="key_id"),
        )


def list_api_keys(session: Session, org_id: str) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at)
    return list(session.scalars(query))
