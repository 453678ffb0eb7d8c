from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from api.cli import main
from tests.engine.policy.checker_cases import ROOT, SHIPPED, rules_copy

SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["rules", *args])
    return result.exit_code, result.output


def test_check_passes_on_the_shipped_rules() -> None:
    status, output = run("check", str(SHIPPED))

    assert status == 0
    assert output.splitlines()[-1].startswith("0 errors, 0 warnings in 12 files")


def test_check_prints_one_line_per_problem_and_exits_one(tmp_path: Path) -> None:
    directory = rules_copy(
        tmp_path,
        {"edit": {"stabilize.yaml": [["action: rate_limit", "action: rate_limt"]]}},
    )

    status, output = run("check", str(directory))

    assert status == 1
    assert output.splitlines() == [
        f"{directory}/stabilize.yaml:68:19: limit-upload-surge: E206: action "
        "'rate_limt' is not in the catalog (actions.yaml); did you mean "
        "'rate_limit'? (known: pm2_restart, nginx_reload, pause_jobs, rate_limit, "
        "clear_temp)",
        "1 error, 0 warnings in 12 files (84 rules)",
    ]


def test_check_with_warnings_only_exits_zero(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"remove": ["learning.yaml"]})

    status, output = run("check", str(directory))

    assert status == 0
    assert ": -: W103: no learning.yaml in " in output


def test_check_as_json(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"remove": ["learning.yaml"]})

    status, output = run("check", str(directory), "--format", "json")

    data = json.loads(output)
    assert status == 0
    assert (data["errors"], data["warnings"]) == (0, 1)
    assert data["problems"][0]["code"] == "W103"


def test_test_passes_on_the_shipped_rules() -> None:
    status, output = run("test", str(SHIPPED))

    assert status == 0
    assert output.splitlines()[-1].endswith(" failed, 0 errors (58 cases in 6 files)")
    assert " 0 failed" in output


def test_test_prints_expected_and_got_for_a_failure(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    (directory / "tests").mkdir()
    (directory / "tests" / "cases.yaml").write_text(
        """\
tests:
  - name: memory is wrongly expected from a full disk
    facts:
      alert: {kind: threshold_exceeded}
      snapshot: {disk: {max_percent: 99}}
    expect:
      classify: {type: memory_exhaustion}
""",
        encoding="utf-8",
    )

    status, output = run("test", str(directory))

    assert status == 1
    lines = output.splitlines()
    assert lines[0].endswith(": FAIL: memory is wrongly expected from a full disk")
    assert lines[1].split() == ["stage", "field", "expected", "got"]
    assert lines[2].split() == [
        "classify",
        "type",
        "memory_exhaustion",
        "disk_pressure",
    ]


def test_test_verbose_lists_passing_cases(tmp_path: Path) -> None:
    status, output = run("test", str(SHIPPED), "--verbose")

    assert status == 0
    assert ": ok: a full disk is disk pressure, even with memory high too" in output


def test_explain_a_scenario_for_one_stage() -> None:
    status, output = run(
        "explain",
        str(SCENARIOS / "case-s03.json"),
        "--stage",
        "classify",
        "--rules",
        str(SHIPPED),
    )

    assert status == 0
    assert "== classify ==" in output
    assert "== stabilize ==" not in output
    assert "✓ dns-failing  priority 80  classify.yaml:32" in output
    assert "  ✓ snapshot.dns.failure_rate gte 0.2 ($dns.failure_rate)  ← 1.0" in output
    assert "\033[" not in output


def test_explain_as_json() -> None:
    status, output = run(
        "explain",
        str(SCENARIOS / "case-s11.json"),
        "--format",
        "json",
        "--rules",
        str(SHIPPED),
    )

    data = json.loads(output)
    assert status == 0
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["classify"]["outcome"]["type"] == "dependency_outage"
    assert stages["impact"]["outcome"]["level"] == "minor"


def test_explain_refuses_facts_outside_the_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"snapshot": {"disk": {"max_percnt": 99}}}))

    status, output = run("explain", str(path), "--rules", str(SHIPPED))

    assert status == 1
    assert f"{path}: -: E411: facts at snapshot.disk: Additional properties" in output


def test_explain_reports_a_rules_directory_that_does_not_load(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"files": {"classify.yaml": "rules: 5\n"}})

    status, output = run(
        "explain", str(SCENARIOS / "case-s01.json"), "--rules", str(directory)
    )

    assert status == 1
    assert "classify.yaml:1:8: -: E112: rules: 5 has the wrong type" in output


def test_a_file_its_schema_refuses_still_counts_as_checked(tmp_path: Path) -> None:
    directory = rules_copy(
        tmp_path, {"edit": {"classify.yaml": [["priority: 90", "priority: high"]]}}
    )

    status, output = run("check", str(directory))

    assert status == 1
    assert f"{directory}/classify.yaml:" in output
    assert " in 12 files (" in output.splitlines()[-1]
