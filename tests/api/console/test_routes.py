"""The reviewers' console: sign in, list, incident page, decisions by form."""

from __future__ import annotations

from tests.api.conftest import Api


def sign_in(api: Api, name: str = "ann") -> None:
    answer = api.client.post(
        "/console/login",
        data={"key": api.key(role="reviewer", name=name)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    api.client.cookies.set(
        "incident_policy_key", answer.cookies["incident_policy_key"], path="/console"
    )


def test_pages_need_a_signed_in_reviewer(api: Api) -> None:
    answer = api.client.get("/console/", follow_redirects=False)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    source = api.client.post("/console/login", data={"key": api.key(role="source")})
    assert source.status_code == 401


def test_the_incident_page_shows_the_brief_matches_and_decides_by_form(
    api: Api,
) -> None:
    opened = api.post(
        "/v1/alerts", {"kind": "threshold_exceeded", "name": "DiskFull"}, role="source"
    )
    incident_id = opened.json()["incident_ids"][0]
    api.drain()
    sign_in(api)

    listing = api.client.get("/console/?status=awaiting_approval")
    page = api.client.get(f"/console/incidents/{incident_id}")

    assert f"/console/incidents/{incident_id}" in listing.text
    assert "classify.yaml:" in page.text
    assert "Brief" in page.text and "Approve" in page.text
    rec = api.get(f"/v1/incidents/{incident_id}", role="reviewer").json()[
        "recommendations"
    ][0]
    decided = api.client.post(
        f"/console/decide/recommendation/{rec['id']}",
        data={"incident_id": incident_id, "verdict": "reject", "comment": "later"},
        follow_redirects=False,
    )
    assert decided.headers["location"] == f"/console/incidents/{incident_id}"
    after = api.get(f"/v1/incidents/{incident_id}", role="reviewer").json()
    assert after["recommendations"][0]["status"] == "rejected"
    assert after["recommendations"][0]["decided_by"].startswith("ann (")


def test_a_refused_decision_is_shown_on_the_page(api: Api) -> None:
    opened = api.post(
        "/v1/alerts", {"kind": "threshold_exceeded", "name": "Disk"}, role="source"
    )
    incident_id = opened.json()["incident_ids"][0]
    api.drain()
    sign_in(api)
    api.client.post(
        f"/console/incidents/{incident_id}/resolve", data={"root_cause": "logs"}
    )

    again = api.client.post(
        f"/console/incidents/{incident_id}/resolve", data={"root_cause": "x"}
    )

    assert "E721" in again.text
    assert "already resolved" in again.text


def test_the_sign_in_cookie_is_http_only_strict_and_secure_over_https(
    api: Api,
) -> None:
    key = api.key(role="reviewer", name="ann")
    cookies = {}
    for base in ("http://testserver", "https://testserver"):
        answer = api.client.post(
            f"{base}/console/login", data={"key": key}, follow_redirects=False
        )
        cookies[base] = answer.headers["set-cookie"].lower()

    for header in cookies.values():
        assert "httponly" in header
        assert "samesite=strict" in header
        assert "path=/console" in header
    assert "secure" not in cookies["http://testserver"]
    assert "secure" in cookies["https://testserver"]
