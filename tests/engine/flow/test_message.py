"""Customer drafts never carry internal details, whatever the alert says."""

from __future__ import annotations

import pytest

from engine.flow.message import scrub
from tests.engine.flow.harness import Harness, Snapshots, rules_copy
from tests.engine.flow.test_runner import scenario

LEAKY_SUMMARY = (
    "TypeError: Cannot read properties of undefined (reading 'id') "
    "at Object.<anonymous> (/srv/app/handlers/upload.js:41:17) on db-01.prod.internal"
)
LEAKS = (
    "db-01",
    "prod.internal",
    "10.0.3.7",
    "app-07.example.com",
    "/srv/app",
    "upload.js",
    "TypeError",
    "Object.<anonymous>",
    "Cannot read properties",
)


def leaky_alert(h: Harness) -> str | None:
    accepted = h.post(
        name="UploadErrors on app-07.example.com",
        severity="critical",
        summary=LEAKY_SUMMARY,
        labels={"instance": "10.0.3.7:9100", "host": "app-07.example.com"},
        annotations={"description": LEAKY_SUMMARY},
    )
    h.drain()
    return accepted.incident_id


def test_draft_holds_no_host_address_trace_or_raw_alert(
    db, clock, ids, tmp_path
) -> None:
    facts = scenario("case-s05")["snapshot"]
    facts["upstream"]["failing"] = ["db-01.prod.internal", "10.0.3.7:5432"]
    h = Harness(db, clock, ids, rules_copy(tmp_path), Snapshots(facts), mode="auto")

    view = h.view(leaky_alert(h))

    (draft,) = view.messages
    text = f"{draft.title}\n{draft.body}"
    assert draft.status == "draft"
    assert [leak for leak in LEAKS if leak in text] == []
    assert "partner service" in text or "provider" in text


def test_a_template_that_asks_for_the_alert_gets_nothing(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(tmp_path)
    path = rules / "messages.yaml"
    path.write_text(
        path.read_text().replace(
            "Since {{ started_at }}, a provider we rely on",
            "{{ alert.summary }} {{ snapshot.upstream.failing }}"
            " {{ alert.labels.host }} Since {{ started_at }}, a provider we rely on",
        )
    )
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s05")["snapshot"]))

    view = h.view(leaky_alert(h))

    body = view.messages[0].body
    assert [leak for leak in LEAKS if leak in body] == []
    assert body.startswith("Since ")


@pytest.mark.parametrize(
    "text",
    [
        "call 10.0.3.7:5432 now",
        "see db-01.prod.internal",
        "host app-07.example.com failed",
        "at Object.<anonymous> (/srv/app/x.js:1:2)",
        "Traceback (most recent call last):\n  File x",
        "ECONNREFUSED: connect failed",
        "fe80:0:0:0:200:f8ff:fe21:67cf is down",
    ],
)
def test_scrub_removes_what_looks_internal(text: str) -> None:
    cleaned = scrub(text)

    assert "[removed]" in cleaned
    for token in ("10.0.3.7", "db-01", "example.com", "/srv/app", "Traceback", "fe80"):
        assert token not in cleaned


def test_scrub_keeps_plain_customer_words() -> None:
    text = "Since 14:05 UTC, uploads are slow or failing. Affected: uploads, api."

    assert scrub(text) == text
