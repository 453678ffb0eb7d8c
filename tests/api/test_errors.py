"""Bad input: a clear error naming the field and the limit, nothing stored.

Every case posts a bad body, checks the status, the code and the sentence,
checks that no row was added anywhere, and then that the service still
accepts a good alert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.support.fixtures import load_json

GOOD = {"kind": "threshold_exceeded", "name": "DiskFull"}


def am_body(**changes: Any) -> dict[str, Any]:
    body = load_json("alertmanager/am025_firing_high_memory.json")
    body.update(changes)
    return dict(body)


def am_alert(**changes: Any) -> dict[str, Any]:
    body = am_body()
    body["alerts"][0].update(changes)
    return body


CASES: list[tuple[str, str, Any, int, str, str, str]] = [
    # id, path, body, status, code, field, words in the message
    (
        "wrong-type",
        "/v1/alerts",
        {"kind": 5},
        422,
        "E520",
        "kind",
        "kind: Input should be a valid string",
    ),
    (
        "unknown-field",
        "/v1/alerts",
        {**GOOD, "sevrity": "critical"},
        422,
        "E520",
        "sevrity",
        "sevrity: Extra inputs are not permitted",
    ),
    (
        "unknown-kind",
        "/v1/alerts",
        {"kind": "disk_on_fire"},
        422,
        "E530",
        "kind",
        "kind: 'disk_on_fire' is not a kind the intake rules know",
    ),
    (
        "long-label",
        "/v1/alerts",
        {**GOOD, "labels": {"path": "x" * 5000}},
        422,
        "E505",
        "labels.path",
        "labels.path is 5000 characters long; the limit is 4096",
    ),
    (
        "many-labels",
        "/v1/alerts",
        {**GOOD, "labels": {f"l{i}": "v" for i in range(200)}},
        422,
        "E505",
        "labels",
        "labels has 200 entries; the limit is 128",
    ),
    (
        "label-not-text",
        "/v1/alerts",
        {**GOOD, "labels": {"nested": {"a": 1}}},
        422,
        "E504",
        "labels.nested",
        "labels.nested must be a string (got dict)",
    ),
    (
        "naive-time",
        "/v1/alerts",
        {**GOOD, "starts_at": "2026-12-04T10:00:00"},
        422,
        "E503",
        "starts_at",
        "starts_at has no time zone",
    ),
    (
        "bad-snapshot-facts",
        "/v1/alerts",
        {**GOOD, "snapshot": {"memory": {"percent": "lots"}}},
        422,
        "E531",
        "snapshot.memory.percent",
        "snapshot.memory.percent",
    ),
    (
        "alertmanager-version",
        "/v1/alerts/alertmanager",
        am_body(version="3"),
        422,
        "E510",
        "version",
        "Alertmanager webhook format '3' is not supported",
    ),
    (
        "alertmanager-alert-status",
        "/v1/alerts/alertmanager",
        am_alert(status="burning"),
        422,
        "E513",
        "alerts[0].status",
        "alerts[0].status: 'burning' is not firing or resolved",
    ),
    (
        "alertmanager-bad-time",
        "/v1/alerts/alertmanager",
        am_alert(startsAt="yesterday"),
        422,
        "E502",
        "alerts[0].startsAt",
        "'yesterday' is not an ISO 8601 time",
    ),
    (
        "alertmanager-missing-alerts",
        "/v1/alerts/alertmanager",
        {"version": "4"},
        422,
        "E520",
        "alerts",
        "alerts: Field required",
    ),
    (
        "grafana-not-a-webhook",
        "/v1/alerts/grafana",
        {"hello": "world"},
        422,
        "E520",
        "alerts",
        "not a Grafana webhook body",
    ),
    (
        "nul-in-name",
        "/v1/alerts",
        {**GOOD, "name": "Disk\u0000Full"},
        422,
        "E506",
        "name",
        "name holds a NUL character or an unpaired surrogate",
    ),
    (
        "surrogate-in-label",
        "/v1/alerts",
        {**GOOD, "labels": {"k": "\ud800"}},
        422,
        "E506",
        "labels.k",
        "labels.k holds a NUL character or an unpaired surrogate",
    ),
    (
        "nul-in-snapshot",
        "/v1/alerts",
        {**GOOD, "snapshot": {"extra": {"note": "a\u0000b"}}},
        422,
        "E506",
        "snapshot.extra.note",
        "snapshot.extra.note holds a NUL character",
    ),
    (
        "time-out-of-range",
        "/v1/alerts",
        {**GOOD, "starts_at": "9999-12-31T23:59:59-14:00"},
        422,
        "E502",
        "starts_at",
        "is outside 2000 to 2200",
    ),
    (
        "alertmanager-far-time",
        "/v1/alerts/alertmanager",
        am_alert(startsAt="9999-12-31T23:59:59-14:00"),
        422,
        "E502",
        "alerts[0].startsAt",
        "is outside 2000 to 2200",
    ),
    (
        "alertmanager-long-fingerprint",
        "/v1/alerts/alertmanager",
        am_alert(fingerprint="f" * 5000),
        422,
        "E505",
        "alerts[0].fingerprint",
        "alerts[0].fingerprint is 5000 characters long; the limit is 256",
    ),
    (
        "alertmanager-object-fingerprint",
        "/v1/alerts/alertmanager",
        am_alert(fingerprint={"x": 1}),
        422,
        "E504",
        "alerts[0].fingerprint",
        "alerts[0].fingerprint must be a string (got dict)",
    ),
    (
        "deploy-without-version",
        "/v1/deploys",
        {"app": "checkout"},
        422,
        "E520",
        "version",
        "version: Field required",
    ),
]


@pytest.fixture
def checked(api: Api) -> Iterator[Api]:
    """Fails the test unless nothing was stored and a good alert still works."""
    api.key(role="admin")
    before = api.rows()
    yield api
    assert api.rows() == before
    assert api.post("/v1/alerts", GOOD).status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_body_is_refused_with_the_field_and_nothing_is_stored(
    checked: Api,
    path: str,
    body: Any,
    status: int,
    code: str,
    field: str,
    words: str,
) -> None:
    # As JSON text with \u escapes: a lone surrogate cannot be UTF-8 encoded.
    answer = checked.client.post(
        path,
        content=json.dumps(body).encode(),
        headers={**checked.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["code"], error.get("field")) == (code, field)
    assert words in error["message"]


def test_malformed_json_names_the_problem(checked: Api) -> None:
    answer = checked.client.post(
        "/v1/alerts",
        content=b'{"kind": "threshold_exceeded",',
        headers={**checked.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("E520", "body")
    assert error["message"].startswith("body is not valid JSON at character 30")


def test_a_body_that_is_not_sent_as_json_is_refused_with_415(checked: Api) -> None:
    answer = checked.client.post(
        "/v1/alerts",
        content=b"kind=threshold_exceeded",
        headers={**checked.auth(), "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 415
    error = answer.json()["error"]
    assert error["code"] == "E415"
    assert "'application/x-www-form-urlencoded'" in error["message"]
    assert "Content-Type: application/json" in error["message"]


def test_a_body_without_a_content_type_is_refused_with_415(checked: Api) -> None:
    answer = checked.client.post(
        "/v1/alerts", content=b'{"kind": "manual"}', headers=checked.auth()
    )

    assert answer.status_code == 415
    assert answer.json()["error"]["message"].startswith(
        "the body is sent without a Content-Type"
    )


@pytest.mark.parametrize(
    "content",
    [
        b'{"kind": "manual", "summary": "\xff\xfe"}',  # not UTF-8
        b"[" * 5000 + b"]" * 5000,  # nested too deep
        b'{"kind": "manual", "value": ' + b"9" * 5000 + b"}",  # too many digits
    ],
    ids=["invalid-utf8", "too-deep", "long-number"],
)
def test_a_body_json_cannot_decode_is_a_422_naming_the_fix(
    checked: Api, content: bytes
) -> None:
    answer = checked.client.post(
        "/v1/alerts",
        content=content,
        headers={**checked.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("E520", "body")
    assert "send a JSON object" in error["message"]


def test_an_empty_body_says_so(checked: Api) -> None:
    answer = checked.client.post(
        "/v1/alerts",
        content=b"",
        headers={**checked.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("E520", "body")
    assert error["message"] == "the request has no body; send a JSON object"


def test_an_unknown_route_and_a_wrong_method_are_named(checked: Api) -> None:
    missing = checked.client.get("/v1/nothing", headers=checked.auth())
    wrong = checked.client.put("/v1/alerts", content=b"{}", headers=checked.auth())

    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "E404",
        "message": "no such route: GET /v1/nothing; the routes are listed at /docs",
    }
    assert wrong.status_code == 405
    assert wrong.json()["error"] == {
        "code": "E405",
        "message": "PUT /v1/alerts is not allowed; this path answers POST",
    }


def test_oversized_body_is_refused_with_413_naming_the_limit(checked: Api) -> None:
    body = {**GOOD, "summary": "x" * 4000, "annotations": {}}
    body["annotations"] = {f"a{i}": "y" * 4000 for i in range(20)}

    answer = checked.post("/v1/alerts", body)

    assert answer.status_code == 413
    error = answer.json()["error"]
    assert error["code"] == "E413"
    assert "the limit is 65536 bytes" in error["message"]


def test_oversized_chunked_body_is_refused_with_413(
    checked: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "threshold_exceeded", "summary": "'
        for _ in range(100):
            yield b"z" * 1024
        yield b'"}'

    caplog.set_level(logging.INFO, logger="api.app")
    answer = checked.client.post(
        "/v1/alerts",
        content=chunks(),
        headers={**checked.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == 413
    assert "more than 65536 bytes" in answer.json()["error"]["message"]
    logged = [r for r in caplog.records if r.getMessage() == "http.request"]
    assert [getattr(r, "status", None) for r in logged] == [413]


def test_unknown_route_answers_the_error_shape(api: Api) -> None:
    answer = api.get("/v1/nothing-here")

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "E404"


HOSTILE = {"nul-in-name", "surrogate-in-label", "nul-in-snapshot"}
HOSTILE |= {"alertmanager-long-fingerprint", "alertmanager-far-time"}


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [pytest.param(c[1], c[2], c[4], id=c[0]) for c in CASES if c[0] in HOSTILE],
)
def test_text_no_database_stores_is_refused_before_it_reaches_one(
    any_api: Api, path: str, body: Any, code: str
) -> None:
    any_api.key(role="admin")
    before = any_api.rows()

    answer = any_api.client.post(
        path,
        content=json.dumps(body).encode(),
        headers={**any_api.auth(), "Content-Type": "application/json"},
    )

    assert (answer.status_code, answer.json()["error"]["code"]) == (422, code)
    assert any_api.rows() == before


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/v1/deploys", {"app": "web", "version": "1\u0000"}, "version"),
        ("post", "/v1/keys", {"role": "source", "name": "ci\ud800"}, "name"),
        ("get", "/v1/incidents?q=a%00b", None, ""),
        ("get", "/v1/incidents/inc%00", None, ""),
    ],
    ids=["deploy-version", "key-name", "query", "path"],
)
def test_nul_anywhere_in_a_request_is_refused_on_every_database(
    any_api: Api, method: str, path: str, body: Any, field: str
) -> None:
    any_api.key(role="admin")
    before = any_api.rows()

    answer = any_api.client.request(
        method.upper(),
        path,
        content=json.dumps(body).encode() if body is not None else None,
        headers={**any_api.auth(), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "E506"
    assert error.get("field", "") == field
    assert any_api.rows() == before


def test_probes_answer_head_as_load_balancers_send_it(api: Api) -> None:
    for path in ("/healthz", "/readyz"):
        answer = api.client.head(path)

        assert answer.status_code == 200, path
        assert answer.content == b""


def test_a_trailing_slash_is_not_redirected_to_the_host_a_client_names(
    api: Api,
) -> None:
    answer = api.client.post(
        "/v1/alerts/",
        json={"kind": "manual"},
        headers={**api.auth(role="source"), "Host": "evil.example"},
        follow_redirects=False,
    )
    console = api.client.get(
        "/console", headers={"Host": "evil.example"}, follow_redirects=False
    )

    assert answer.status_code == 404
    assert answer.json()["error"]["message"].startswith(
        "no such route: POST /v1/alerts/"
    )
    assert (console.status_code, console.headers["location"]) == (303, "/console/")
