"""API keys of the caller's organization: list, create, revoke (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AdminCaller, Reader, ServicesDep
from api.schemas import IssuedKeyOut, KeyIn, KeyOut
from engine.errors import NotFoundError
from engine.store.orgs import create_api_key, list_api_keys, revoke_api_key

router = APIRouter(prefix="/v1", tags=["keys"])


@router.get("/keys")
def list_keys(caller: AdminCaller, session: Reader) -> list[KeyOut]:
    """The organization's keys (their prefixes only, never the secrets)."""
    return [KeyOut.model_validate(k) for k in list_api_keys(session, caller.org_id)]


@router.post("/keys", status_code=201)
def create_key(body: KeyIn, caller: AdminCaller, services: ServicesDep) -> IssuedKeyOut:
    """Make a key for the organization; the secret is shown in this answer only."""
    with services.database.sessions.begin() as session:
        issued = create_api_key(
            session,
            ids=services.runtime.ids,
            org_id=caller.org_id,
            role=body.role,
            now=services.runtime.clock.now(),
            name=body.name,
        )
        return IssuedKeyOut(key=issued.key, record=KeyOut.model_validate(issued.record))


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, caller: AdminCaller, services: ServicesDep) -> Response:
    """Revoke one of the organization's keys; it stops working at once."""
    with services.database.sessions.begin() as session:
        revoked = revoke_api_key(
            session, caller.org_id, key_id, now=services.runtime.clock.now()
        )
    if not revoked:
        raise NotFoundError(
            f"key {key_id} does not exist in this organization or is already "
            "revoked: list the keys to find it"
        )
    services.keys.forget_key(key_id)
    return Response(status_code=204)
