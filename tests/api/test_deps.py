"""Keys, roles and organizations, over every route the app serves.

The route table below lists each route with a request that would succeed
and the roles allowed to make it; ``test_every_route_is_in_the_table``
fails when a route is added without an entry, so no route escapes the
walks: one with another organization's key (nothing of the first
organization is seen or changed), one per role, one without a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from engine.store.models import Base, Organization
from engine.store.orgs import find_org
from engine.store.proposals import ProposalIn, add_proposal
from tests.api.conftest import Api, running_api
from tests.support.databases import sqlite_url
from tests.support.fixtures import load_json

SOURCE = frozenset({"source", "admin"})
REPORT = frozenset({"source", "reviewer", "admin"})
REVIEW = frozenset({"reviewer", "admin"})
ADMIN = frozenset({"admin"})
ROLES = ("source", "reviewer", "admin")
SHARED_FINGERPRINT = "shared-fp"
GOOD = {"kind": "threshold_exceeded", "name": "Disk", "fingerprint": SHARED_FINGERPRINT}


@dataclass(frozen=True)
class Call:
    roles: frozenset[str] | None  # None: no key needed
    body: Any = None
    form: dict[str, str] | None = None
    console: bool = False


ROUTES: dict[tuple[str, str], Call] = {
    ("GET", "/openapi.json"): Call(None),
    ("GET", "/docs"): Call(None),
    ("GET", "/docs/oauth2-redirect"): Call(None),
    ("GET", "/redoc"): Call(None),
    ("GET", "/healthz"): Call(None),
    ("GET", "/readyz"): Call(None),
    ("GET", "/metrics"): Call(None),
    ("POST", "/v1/alerts"): Call(SOURCE, GOOD),
    ("POST", "/v1/alerts/alertmanager"): Call(
        SOURCE, load_json("alertmanager/am025_firing_high_memory.json")
    ),
    ("POST", "/v1/alerts/grafana"): Call(
        SOURCE, load_json("grafana/grafana_v11_firing_values.json")
    ),
    ("POST", "/v1/reports"): Call(REPORT, {"summary": "the site is slow"}),
    ("POST", "/v1/deploys"): Call(SOURCE, {"app": "web", "version": "2"}),
    ("GET", "/v1/deploys"): Call(REVIEW),
    ("GET", "/v1/incidents"): Call(REVIEW),
    ("GET", "/v1/incidents/{incident_id}"): Call(REVIEW),
    ("POST", "/v1/incidents/{incident_id}/resolve"): Call(
        REVIEW, {"root_cause": "disk filled by logs"}
    ),
    ("POST", "/v1/incidents/{incident_id}/replay"): Call(REVIEW, {}),
    ("GET", "/v1/recommendations"): Call(REVIEW),
    ("POST", "/v1/recommendations/{recommendation_id}/approve"): Call(REVIEW, {}),
    ("POST", "/v1/recommendations/{recommendation_id}/reject"): Call(REVIEW, {}),
    ("GET", "/v1/messages"): Call(REVIEW),
    ("PATCH", "/v1/messages/{message_id}"): Call(REVIEW, {"body": "rewritten"}),
    ("POST", "/v1/messages/{message_id}/approve"): Call(REVIEW, {}),
    ("POST", "/v1/messages/{message_id}/reject"): Call(REVIEW, {}),
    ("GET", "/v1/proposals"): Call(REVIEW),
    ("POST", "/v1/proposals/{proposal_id}/approve"): Call(REVIEW, {}),
    ("POST", "/v1/proposals/{proposal_id}/reject"): Call(REVIEW, {}),
    ("GET", "/v1/policy"): Call(REVIEW),
    ("POST", "/v1/policy/reload"): Call(ADMIN),
    ("POST", "/v1/policy/validate"): Call(
        ADMIN, {"files": {"intake.yaml": "defaults: {severity: warning}\n"}}
    ),
    ("POST", "/v1/policy/explain"): Call(
        REVIEW, {"facts": {"alert": {"kind": "manual"}}, "stage": "intake"}
    ),
    ("GET", "/v1/keys"): Call(ADMIN),
    ("POST", "/v1/keys"): Call(ADMIN, {"role": "source", "name": "ci"}),
    ("DELETE", "/v1/keys/{key_id}"): Call(ADMIN),
    ("GET", "/console"): Call(None),
    ("GET", "/console/login"): Call(None),
    ("POST", "/console/login"): Call(None, form={"key": "not-a-key"}),
    ("POST", "/console/logout"): Call(None),
    ("GET", "/console/"): Call(REVIEW, console=True),
    ("GET", "/console/incidents/{incident_id}"): Call(REVIEW, console=True),
    ("POST", "/console/incidents/{incident_id}/resolve"): Call(
        REVIEW, form={"root_cause": "logs"}, console=True
    ),
    ("POST", "/console/decide/{subject}/{subject_id}"): Call(
        REVIEW, form={"verdict": "reject", "incident_id": "{incident_id}"}, console=True
    ),
}


def served(api: Api) -> set[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(api.client.app.routes):
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


@dataclass
class Owned:
    """One organization's records, to aim requests at."""

    org: str
    ids: dict[str, str] = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return text.format(**self.ids)


def populate(api: Api, org: str) -> Owned:
    """An incident through the flow, with a draft, recommendations, a proposal."""
    answer = api.post("/v1/alerts", GOOD, org=org, role="source")
    incident_id = answer.json()["incident_ids"][0]
    api.drain()
    detail = api.get(f"/v1/incidents/{incident_id}", org=org, role="reviewer").json()
    spare = api.post("/v1/keys", {"role": "source", "name": "spare"}, org=org).json()
    api.post("/v1/deploys", {"app": "web", "version": "1"}, org=org, role="source")
    with api.service.database.sessions.begin() as session:
        org_row = find_org(session, org)
        assert org_row is not None
        proposal = add_proposal(
            session,
            ProposalIn(
                kind="threshold",
                file="thresholds.yaml",
                path="disk.minutes_to_full",
                old_value=60,
                new_value=120,
                diff="",
                incident_id=incident_id,
            ),
            ids=api.service.runtime.ids,
            org_id=org_row.id,
            now=api.service.runtime.clock.now(),
        )
    recommendation = detail["recommendations"][0]["id"]
    return Owned(
        org,
        {
            "incident_id": incident_id,
            "recommendation_id": recommendation,
            "message_id": detail["messages"][0]["id"],
            "proposal_id": proposal.id,
            "key_id": spare["record"]["id"],
            "subject": "recommendation",
            "subject_id": recommendation,
            "alert_id": detail["alerts"][0]["id"],
        },
    )


def request(
    api: Api, method: str, path: str, call: Call, owned: Owned, key: str | None
) -> Any:
    headers: dict[str, str] = {}
    if key is not None:
        headers = (
            {"Cookie": f"incident_policy_key={key}"}
            if call.console
            else {"Authorization": f"Bearer {key}"}
        )
    form = {k: owned.fill(v) for k, v in (call.form or {}).items()} or None
    return api.client.request(
        method,
        owned.fill(path),
        json=call.body,
        data=form,
        headers=headers,
        follow_redirects=False,
    )


def org_rows(api: Api, org_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one organization, in every table (key use times aside)."""
    found = {}
    with api.service.database.readers() as session:
        for table in Base.metadata.sorted_tables:
            if "org_id" not in table.c:
                continue
            columns = [c for c in table.c if c.name != "last_used_at"]
            rows = session.execute(
                select(*columns)
                .where(table.c.org_id == org_id)
                .order_by(*table.primary_key)
            )
            found[table.name] = [tuple(r) for r in rows]
    return found


def org_id_of(api: Api, name: str) -> str:
    with api.service.database.readers() as session:
        return str(
            session.scalars(
                select(Organization.id).where(Organization.name == name)
            ).one()
        )


@pytest.fixture
def fresh(tmp_path: Any) -> Iterator[Api]:
    with running_api(tmp_path, sqlite_url(tmp_path), snapshot=None) as found:
        yield found


def test_every_route_is_in_the_table(fresh: Api) -> None:
    assert served(fresh) == set(ROUTES)


@pytest.mark.parametrize(
    ("victim", "intruder"),
    [("default", "intruder"), ("acme", "default")],
    ids=["tenant-reads-operator", "operator-reads-tenant"],
)
def test_another_organization_sees_and_changes_nothing(
    fresh: Api, victim: str, intruder: str
) -> None:
    owned = populate(fresh, victim)
    victim_id = org_id_of(fresh, victim)
    before = org_rows(fresh, victim_id)
    secrets = set(owned.ids.values()) - {"recommendation"}

    for role in ("admin", "reviewer"):
        key = fresh.key(intruder, role)
        for (method, path), call in sorted(ROUTES.items()):
            answer = request(fresh, method, path, call, owned, key)

            where = f"{role} {method} {path}"
            # An error may quote the id the request itself named, nothing else.
            form = {k: owned.fill(v) for k, v in (call.form or {}).items()}
            named = owned.fill(path) + " ".join(form.values())
            hidden = {s for s in secrets if s not in named}
            assert answer.status_code < 500, f"{where}: {answer.text}"
            assert not any(s in answer.text for s in hidden), where
            if "{" in path:
                if answer.status_code == 303:
                    assert "error=" in answer.headers["location"], where
                else:
                    assert answer.status_code in (403, 404), where

    assert org_rows(fresh, victim_id) == before


@pytest.mark.parametrize("role", ROLES)
def test_each_route_lets_in_only_its_roles(fresh: Api, role: str) -> None:
    owned = populate(fresh, "default")
    key = fresh.key("default", role, name=f"{role}-walker")

    for (method, path), call in sorted(ROUTES.items()):
        if call.roles is None:
            continue
        answer = request(fresh, method, path, call, owned, key)

        where = f"{role} {method} {path}: {answer.status_code} {answer.text[:200]}"
        if role in call.roles:
            assert answer.status_code not in (401, 403), where
            if call.console:
                assert answer.headers.get("location") != "/console/login", where
        elif call.console:
            assert answer.headers["location"] == "/console/login", where
        else:
            assert answer.status_code == 403, where
            assert answer.json()["error"]["code"] == "E403", where


def test_every_v1_route_needs_a_key(fresh: Api) -> None:
    owned = populate(fresh, "default")

    for (method, path), call in sorted(ROUTES.items()):
        if call.roles is None:
            continue
        answer = request(fresh, method, path, call, owned, None)

        if call.console:
            assert answer.headers["location"] == "/console/login", path
        else:
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"] == "Bearer"


def test_an_unknown_or_malformed_key_is_refused(fresh: Api) -> None:
    unknown = fresh.client.get(
        "/v1/incidents", headers={"Authorization": "Bearer nope"}
    )
    malformed = fresh.client.get("/v1/incidents", headers={"Authorization": "Basic x"})

    assert unknown.status_code == malformed.status_code == 401
    assert "unknown or revoked" in unknown.json()["error"]["message"]
    assert "must be `Bearer KEY`" in malformed.json()["error"]["message"]


def test_a_revoked_key_stops_working_at_once(fresh: Api) -> None:
    made = fresh.post("/v1/keys", {"role": "reviewer"}).json()
    headers = {"Authorization": f"Bearer {made['key']}"}
    assert fresh.client.get("/v1/incidents", headers=headers).status_code == 200

    revoked = fresh.client.delete(
        f"/v1/keys/{made['record']['id']}", headers=fresh.auth()
    )

    assert revoked.status_code == 204
    assert fresh.client.get("/v1/incidents", headers=headers).status_code == 401


def test_the_last_admin_key_cannot_be_revoked(fresh: Api) -> None:
    fresh.key(role="admin")  # the organization's only admin key
    [admin] = [k for k in fresh.get("/v1/keys").json() if k["role"] == "admin"]

    alone = fresh.client.delete(f"/v1/keys/{admin['id']}", headers=fresh.auth())
    other = fresh.post("/v1/keys", {"role": "admin", "name": "second"}).json()
    with_another = fresh.client.delete(f"/v1/keys/{admin['id']}", headers=fresh.auth())

    assert alone.status_code == 409
    error = alone.json()["error"]
    assert error["code"] == "E409"
    assert "last admin key: create another admin key first" in error["message"]
    assert other["record"]["role"] == "admin"
    assert with_another.status_code == 204


def test_keys_are_listed_by_prefix_never_by_secret(fresh: Api) -> None:
    made = fresh.post("/v1/keys", {"role": "source", "name": "ci"}).json()

    listed = fresh.get("/v1/keys")

    assert made["key"] not in listed.text
    assert made["key"].startswith(listed.json()[-1]["prefix"])


def test_decisions_record_who_made_them(fresh: Api) -> None:
    owned = populate(fresh, "acme")
    fresh.post(
        f"/v1/recommendations/{owned.ids['recommendation_id']}/reject",
        {"comment": "not now"},
        role="reviewer",
        name="alice",
    )
    fresh.post(
        f"/v1/incidents/{owned.ids['incident_id']}/resolve",
        {"root_cause": "logs"},
        role="reviewer",
        name="bob",
    )

    detail = fresh.get(f"/v1/incidents/{owned.ids['incident_id']}", role="reviewer")

    body = detail.json()
    assert detail.status_code == 200, body
    assert body["recommendations"][0]["decided_by"].startswith("alice (key_")
    assert body["approvals"][0]["comment"] == "not now"
    assert body["incident"]["resolved_by"].startswith("bob (key_")
