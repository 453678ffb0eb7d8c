from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.errors import EngineLimitError, Location
from engine.policy.checker import check
from engine.policy.loader import PolicySource, load
from engine.policy.policy import Policy, compile_python
from tests.engine.policy.checker_cases import SHIPPED, cases, rules_copy


@pytest.mark.parametrize("case", list(cases()))
def test_check_reports_each_problem_with_its_location_and_fix(
    case: dict[str, Any], tmp_path: Path
) -> None:
    directory = rules_copy(tmp_path, case)

    report = check(directory)

    shown = [
        p.render().replace(f"{directory}/", "").replace(str(directory), "{dir}")
        for p in report.problems
    ]
    assert shown == case["problems"]
    assert report.exit_status == case.get("exit", 1)


def test_shipped_rules_pass_the_check() -> None:
    report = check(SHIPPED)

    assert [p.render() for p in report.problems] == []
    assert report.exit_status == 0
    assert report.files == 12


def test_a_missing_directory_is_one_located_error(tmp_path: Path) -> None:
    report = check(tmp_path / "nowhere")

    assert [p.code for p in report.problems] == ["E103"]
    assert report.problems[0].render().startswith(f"{tmp_path / 'nowhere'}: -: E103: ")
    assert report.exit_status == 1


def test_engine_refusals_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    directory = rules_copy(
        tmp_path, {"edit": {"messages.yaml": [["template: degraded", "template: x"]]}}
    )

    def refuse(source: PolicySource) -> Policy:
        raise EngineLimitError(
            "the engine cannot express this pattern; rewrite it without lookahead",
            code="E301",
            location=Location("classify.yaml", 131, 5, "alert-says-memory"),
        )

    report = check(directory, compile=refuse)

    assert [p.code for p in report.problems] == ["E301", "E212"]
    assert report.problems[0].render() == (
        f"{directory}/classify.yaml:131:5: alert-says-memory: E301: the engine "
        "cannot express this pattern; rewrite it without lookahead"
    )


def test_compile_waits_until_every_file_loads(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"files": {"impact.yaml": "rules: 5\n"}})
    compiled: list[PolicySource] = []

    def record(source: PolicySource) -> Policy:
        compiled.append(source)
        return compile_python(source)

    report = check(directory, compile=record)

    assert compiled == []
    assert report.exit_status == 1


def test_files_that_load_are_still_checked_when_another_does_not(
    tmp_path: Path,
) -> None:
    directory = rules_copy(
        tmp_path,
        {
            "files": {"impact.yaml": "rules: 5\n"},
            "edit": {"stabilize.yaml": [["action: rate_limit", "action: rate_limt"]]},
        },
    )

    report = check(directory)

    assert sorted(p.code for p in report.problems) == ["E112", "E114", "E206"]


def test_report_as_json_keeps_code_location_and_counts(tmp_path: Path) -> None:
    directory = rules_copy(
        tmp_path, {"edit": {"messages.yaml": [["template: degraded", "template: x"]]}}
    )

    data = check(directory).as_dict()

    assert data["errors"] == 1
    assert data["warnings"] == 0
    assert data["problems"][0]["code"] == "E212"
    assert data["problems"][0]["file"] == f"{directory}/messages.yaml"
    assert (data["problems"][0]["line"], data["problems"][0]["column"]) == (69, 17)
    assert data["problems"][0]["rule_id"] == "message-minor"


def test_summary_counts_errors_warnings_files_and_rules(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"remove": ["learning.yaml"]})

    rules = sum(len(stage) for stage in load(directory).rules.values())

    report = check(directory)

    assert report.render().splitlines()[-1] == (
        f"0 errors, 1 warning in 11 files ({rules} rules)"
    )
