"""Dependencies the routes declare: the services, a session, the caller.

``Caller`` is who is asking: the organization, role and key id behind the
``Authorization: Bearer KEY`` header (or the console's cookie). Keys are
looked up by their hash; a found key is remembered for a few seconds so a
stream of alerts does not cost a database read each, which also means a
revoked key stops working within ``KEY_CACHE_S``. Role checks are
dependencies too (``SourceCaller``, ``ReviewerCaller``, ``AdminCaller``): a
route's signature says who may call it. With ``Settings.auth`` off (allowed
on loopback only) every caller is the default organization's admin.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.holder import PolicyControl
from api.intake import IntakeBatcher
from engine.policy.policy import Compile
from engine.runtime import Runtime
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Organization, Role
from engine.store.orgs import authenticate, ensure_org, hash_key

KEY_CACHE_S = 5.0
COOKIE = "incident_policy_key"


@dataclass(frozen=True, slots=True)
class Caller:
    org_id: str
    org_name: str
    role: str
    key_id: str
    name: str

    @property
    def actor(self) -> str:
        """How decisions by this caller are recorded: one name per key."""
        return f"{self.name} ({self.key_id})" if self.name else self.key_id


class KeyCache:
    """Recently authenticated keys by hash, each for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float = KEY_CACHE_S) -> None:
        self._ttl_s = ttl_s
        self._found: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Caller | None:
        with self._lock:
            entry = self._found.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: str, caller: Caller) -> None:
        with self._lock:
            if len(self._found) > 10_000:
                self._found.clear()
            self._found[digest] = (time.monotonic() + self._ttl_s, caller)

    def forget_key(self, key_id: str) -> None:
        with self._lock:
            for digest, (_, caller) in list(self._found.items()):
                if caller.key_id == key_id:
                    del self._found[digest]


@dataclass
class Services:
    """What the routes use; assembled by ``api.service``."""

    settings: Settings
    database: Database
    policy: PolicyControl
    runtime: Runtime
    intake: IntakeBatcher
    wake: threading.Event
    reload: Callable[[], Any]
    compile: Compile
    keys: KeyCache = field(default_factory=KeyCache)

    def require_operator(self, caller: Caller, what: str) -> None:
        """Refuse a change to the shared policy from a tenant organization."""
        if caller.org_name != self.settings.default_org:
            raise HTTPException(
                403,
                f"{what} changes the policy every organization on this service "
                f"runs: only a key of the operator organization "
                f"({self.settings.default_org!r}) may do it",
            )


async def services_of(request: Request) -> Services:
    # async: FastAPI would run a plain function in its thread pool, a thread
    # hop on every request for a dictionary lookup.
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services_of)]


def reader(services: ServicesDep) -> Iterator[Session]:
    """A read-only session (never queues behind the intake's writes)."""
    with services.database.readers() as session:
        yield session


Reader = Annotated[Session, Depends(reader)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized(
                "the Authorization header must be `Bearer KEY`: send an API key "
                "made with `incident-policy keys create`"
            )
        return value.strip()
    return request.cookies.get(COOKIE)


def caller_for_key(services: Services, key: str) -> Caller | None:
    digest = hash_key(key)
    cached = services.keys.get(digest)
    if cached is not None:
        return cached
    now = services.runtime.clock.now()
    with services.database.sessions.begin() as session:
        record = authenticate(session, key, now=now)
        if record is None:
            return None
        org_name = session.get_one(Organization, record.org_id).name
        caller = Caller(record.org_id, org_name, record.role, record.id, record.name)
    services.keys.put(digest, caller)
    return caller


def _anonymous_admin(services: Services) -> Caller:
    settings = services.settings
    with services.database.sessions.begin() as session:
        org = ensure_org(
            session,
            ids=services.runtime.ids,
            name=settings.default_org,
            now=services.runtime.clock.now(),
        )
        return Caller(org.id, org.name, Role.ADMIN.value, "anonymous", "anonymous")


async def current_caller(request: Request, services: ServicesDep) -> Caller:
    if not services.settings.auth:
        return await run_in_threadpool(_anonymous_admin, services)
    key = _presented_key(request)
    if not key:
        raise _unauthorized(
            "this route needs an API key: send `Authorization: Bearer KEY` "
            "(make one with `incident-policy keys create --org NAME --role ROLE`)"
        )
    caller = services.keys.get(hash_key(key))
    if caller is None:
        caller = await run_in_threadpool(caller_for_key, services, key)
    if caller is None:
        raise _unauthorized(
            "the API key is unknown or revoked: check it, or make a new one "
            "with `incident-policy keys create`"
        )
    request.state.caller = caller
    return caller


def allow(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """A dependency that lets only ``roles`` through (403 otherwise)."""
    names = {role.value for role in roles}

    async def check(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if caller.role not in names:
            raise HTTPException(
                403,
                f"a {caller.role} key cannot use this route: it needs a key "
                f"with the role {' or '.join(sorted(names))}",
            )
        return caller

    return check


SourceCaller = Annotated[Caller, Depends(allow(Role.SOURCE, Role.ADMIN))]
ReporterCaller = Annotated[
    Caller, Depends(allow(Role.SOURCE, Role.REVIEWER, Role.ADMIN))
]
ReviewerCaller = Annotated[Caller, Depends(allow(Role.REVIEWER, Role.ADMIN))]
AdminCaller = Annotated[Caller, Depends(allow(Role.ADMIN))]
