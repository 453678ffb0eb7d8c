"""Policy routes: status, reload keeping the last good policy, validate, explain."""

from __future__ import annotations

import os

from tests.api.conftest import Api


def test_policy_reports_the_running_version(api: Api) -> None:
    answer = api.get("/v1/policy", role="reviewer")

    body = answer.json()
    assert body["version"] == api.service.holder.current.version
    assert body["ok"] is True and body["problems"] == []


def test_a_bad_file_keeps_the_running_policy_and_reports_where(api: Api) -> None:
    (api.rules_dir / "classify.yaml").write_text("rules:\n  - id: [broken\n")
    running = api.service.holder.current.version

    answer = api.post("/v1/policy/reload", None, org="default")

    body = answer.json()
    assert answer.status_code == 200
    assert (body["version"], body["ok"]) == (running, False)
    assert body["problems"][0]["file"].endswith("classify.yaml")
    assert body["problems"][0]["line"] > 0


def test_a_tenant_admin_cannot_reload_the_shared_policy(api: Api) -> None:
    answer = api.post("/v1/policy/reload", None, org="acme")

    assert answer.status_code == 403


def test_a_tenant_admin_cannot_make_the_service_read_a_server_path(api: Api) -> None:
    answer = api.post("/v1/policy/validate", {"directory": "/etc"}, org="acme")

    assert answer.status_code == 403
    assert "validating a directory on the server" in answer.json()["error"]["message"]


def test_validate_uploaded_files_names_each_problem(api: Api) -> None:
    broken = {
        "classify.yaml": (
            "rules:\n  - id: x\n"
            "    when: {snapshot.memory.percnt: {gte: 1}}\n"
            "    then: {type: memory_exhaustion}\n"
        )
    }

    answer = api.post("/v1/policy/validate", {"files": broken})

    body = answer.json()
    assert answer.status_code == 200, answer.text
    assert body["ok"] is False and body["errors"] >= 1
    assert body["problems"][0]["file"] == "classify.yaml"
    assert body["problems"][0]["rule_id"] == "x"


def test_validate_copes_with_a_fifo_in_the_running_rules(api: Api) -> None:
    os.mkfifo(api.rules_dir / "notes.yaml")  # opened, it would block

    answer = api.post(
        "/v1/policy/validate", {"files": {"thresholds.yaml": "memory: {}\n"}}
    )

    assert answer.status_code == 200, answer.text


def test_validate_the_shipped_rules_directory_on_the_server(api: Api) -> None:
    answer = api.post(
        "/v1/policy/validate", {"directory": str(api.rules_dir)}, org="default"
    )

    assert answer.json()["ok"] is True


def test_validate_refuses_a_file_name_that_is_not_a_rule_file(api: Api) -> None:
    answer = api.post("/v1/policy/validate", {"files": {"../etc/passwd": "x"}})

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "E542"


def test_explain_shows_each_rule_with_its_verdict(api: Api) -> None:
    facts = {"alert": {"kind": "pm2_restart_loop", "labels": {"process": "web"}}}

    answer = api.post("/v1/policy/explain", {"facts": facts, "stage": "intake"})

    stage = answer.json()["stages"][0]
    assert stage["stage"] == "intake"
    assert "restart-loop-is-critical" in stage["matched"]
    assert stage["outcome"]


def test_explain_refuses_facts_outside_the_vocabulary(api: Api) -> None:
    answer = api.post(
        "/v1/policy/explain", {"facts": {"snapshot": {"memory": {"percent": "x"}}}}
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["code"].startswith("E4")
