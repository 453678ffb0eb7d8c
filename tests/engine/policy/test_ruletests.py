from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.policy.loader import load
from engine.policy.policy import compile_python
from engine.policy.ruletests import Case, case_files, read_cases, run_case, run_tests
from tests.engine.policy.checker_cases import ROOT, SHIPPED, rules_copy

SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"


def shipped_cases() -> Iterator[Any]:
    for path in case_files(SHIPPED):
        cases, problems = read_cases(path, str(path))
        assert problems == [], [p.render() for p in problems]
        for case in cases:
            yield pytest.param(case, id=f"{path.stem}: {case.name}")


@pytest.fixture(scope="module")
def shipped_policy() -> Any:
    return compile_python(load(SHIPPED))


@pytest.mark.parametrize("case", list(shipped_cases()))
def test_shipped_rule_test_passes(case: Case, shipped_policy: Any) -> None:
    result = run_case(shipped_policy, case)

    assert result.passed, result.render()


def test_every_scenario_has_a_shipped_rule_test() -> None:
    text = (SHIPPED / "tests" / "scenarios.yaml").read_text(encoding="utf-8")

    for scenario in sorted(SCENARIOS.glob("*.json")):
        assert f"scenarios/{scenario.name}" in text


def write_tests(directory: Path, text: str, name: str = "cases.yaml") -> Path:
    folder = directory / "tests"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_failing_case_shows_expected_and_got_side_by_side(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: a full disk is wrongly expected to be memory
    facts:
      alert: {kind: threshold_exceeded}
      snapshot: {disk: {max_percent: 99}}
    expect:
      classify: {type: memory_exhaustion, not_matched: [disk-full]}
      stabilize: {actions: []}
""",
    )

    report = run_tests(directory)

    assert report.exit_status == 1
    assert (report.passed, report.failed, report.errors) == (0, 1, 0)
    lines = report.render().splitlines()
    assert lines[0] == (
        f"{directory}/tests/cases.yaml:2:5: FAIL: a full disk is wrongly expected "
        "to be memory"
    )
    assert [columns(line) for line in lines[1:5]] == [
        ["stage", "field", "expected", "got"],
        ["classify", "type", "memory_exhaustion", "disk_pressure"],
        ["classify", "not_matched", "none of [disk-full]", "[disk-full]"],
        [
            "stabilize",
            "actions",
            "[] (no action)",
            "[clear_temp temp (allowed), pause_jobs jobs (allowed)]",
        ],
    ]
    assert lines[-1] == "0 passed, 1 failed, 0 errors (1 cases in 1 files)"


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_not_actions_catches_an_avoided_action_by_name_or_target(
    tmp_path: Path,
) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: restarting the leaking process is what this test forbids
    facts:
      alert: {kind: threshold_exceeded}
      snapshot:
        pm2: {processes: [{name: api, status: online, memory_mb: 2000}]}
    expect:
      stabilize: {not_actions: [{action: pm2_restart, target: api}]}
      recommend: {not_ids: [find-memory-leak]}
""",
    )

    report = run_tests(directory)

    mismatches = report.results[0].mismatches
    assert [(m.stage, m.field, m.got) for m in mismatches] == [
        ("stabilize", "not_actions", "[pm2_restart api (allowed)]"),
        ("recommend", "not_ids", "[find-memory-leak]"),
    ]


def test_message_null_fails_when_a_draft_is_made(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: customers are hit, so a draft is made
    facts:
      alert: {kind: error_rate_spike}
      snapshot: {http: {error_rate: 0.4}}
    expect:
      message: null
""",
    )

    mismatch = run_tests(directory).results[0].mismatches[0]

    assert (mismatch.field, mismatch.expected, mismatch.got) == (
        "draft",
        "no draft",
        "draft outage",
    )


def test_a_rule_id_the_policy_lacks_is_an_error_not_a_pass(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: a typo in a not_matched id
    facts: {alert: {kind: manual}}
    expect:
      classify: {not_matched: [disk-ful]}
""",
    )

    report = run_tests(directory)

    assert report.exit_status == 1
    assert [p.render() for p in report.results[0].problems] == [
        f"{directory}/tests/cases.yaml:5:32: a typo in a not_matched id: E803: "
        "classify.not_matched names rule 'disk-ful', which is not a classify rule "
        "of this policy; fix the id (an assertion on a missing rule would always "
        "pass)"
    ]


def test_facts_that_do_not_fit_the_vocabulary_are_an_error(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: a typo in a fact
    facts:
      snapshot: {disk: {max_percnt: 100}}
    expect:
      classify: {type: disk_pressure}
""",
    )

    report = run_tests(directory)

    assert report.exit_status == 1
    assert report.results == ()
    assert [p.render() for p in report.problems] == [
        f"{directory}/tests/cases.yaml:4:24: a typo in a fact: E411: facts at "
        "snapshot.disk: Additional properties are not allowed ('max_percnt' was "
        "unexpected); see the facts vocabulary in docs/facts.md for the expected shape"
    ]


def test_facts_files_are_read_relative_to_the_test_and_checked(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    folder = directory / "tests" / "facts"
    folder.mkdir(parents=True)
    (folder / "full-disk.json").write_text(
        json.dumps(
            {"alert": {"kind": "manual"}, "snapshot": {"disk": {"max_percent": 99}}}
        ),
        encoding="utf-8",
    )
    (folder / "typo.yaml").write_text(
        "snapshot:\n  memory: {percent: high}\n", encoding="utf-8"
    )
    write_tests(
        directory,
        """\
tests:
  - name: from a facts file
    facts_file: facts/full-disk.json
    expect:
      classify: {type: disk_pressure}
  - name: from a facts file with a wrong type
    facts_file: facts/typo.yaml
    expect:
      classify: {type: memory_exhaustion}
  - name: from a file that is not there
    facts_file: facts/nowhere.json
    expect:
      classify: {type: disk_pressure}
""",
    )

    report = run_tests(directory)

    assert [r.name for r in report.results if r.passed] == ["from a facts file"]
    assert [p.render() for p in report.problems] == [
        f"{folder}/typo.yaml:2:21: from a facts file with a wrong type: E411: "
        "facts at snapshot.memory.percent: 'high' is not of type 'number', 'null'; "
        "see the facts vocabulary in docs/facts.md for the expected shape",
        f"{directory}/tests/cases.yaml:11:17: from a file that is not there: E804: "
        f"{folder}/nowhere.json does not exist; paths in a test are relative to "
        "the test file's folder",
    ]


def test_a_scenario_file_is_mapped_onto_the_facts(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        f"""\
tests:
  - name: the S3 outage
    scenario_file: {SCENARIOS / "case-s05.json"}
    expect:
      classify: {{type: dependency_outage, rule: upstream-down}}
      stabilize: {{actions: [{{action: pause_jobs, target: jobs}}]}}
""",
    )

    report = run_tests(directory)

    assert report.passed == 1, report.render()


def test_an_unknown_expectation_is_a_schema_error_with_a_suggestion(
    tmp_path: Path,
) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: misspelt stage
    facts: {alert: {kind: manual}}
    expect:
      clasify: {type: unknown}
""",
    )

    report = run_tests(directory)

    assert [p.render() for p in report.problems] == [
        f"{directory}/tests/cases.yaml:5:16: -: E111: tests.0.expect: unknown field "
        "'clasify'; did you mean 'classify'? (allowed: intake, watch, stabilize, "
        "classify, brief, impact, decisions, recommend, message)"
    ]
    assert report.exit_status == 1


def test_a_directory_without_tests_warns_and_exits_zero(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)

    report = run_tests(directory)

    assert [p.code for p in report.problems] == ["W806"]
    assert report.exit_status == 0


def test_a_policy_that_does_not_load_fails_the_run(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path, {"files": {"classify.yaml": "rules: 5\n"}})
    write_tests(directory, "tests: []\n")

    report = run_tests(directory)

    assert [p.code for p in report.problems] == ["E112"]
    assert report.exit_status == 1


def test_report_as_json_lists_each_case(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    write_tests(
        directory,
        """\
tests:
  - name: unknown stays unknown
    facts: {alert: {kind: manual}}
    expect:
      classify: {type: unknown}
      decisions: {auto_execute: false}
""",
    )

    data = run_tests(directory).as_dict()

    assert data["failed"] == 1
    assert data["cases"][0]["mismatches"] == [
        {
            "stage": "decisions",
            "field": "auto_execute",
            "expected": "false",
            "got": "not decided (no recommendation names an action)",
        }
    ]


def test_a_test_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    directory = rules_copy(tmp_path)
    path = write_tests(directory, "- name: a list, not a mapping\n")

    report = run_tests(directory)

    assert [p.render() for p in report.problems] == [
        f"{path}:1:1: -: E801: {path} must hold a mapping with a `tests:` list, "
        "not list"
    ]
    assert report.exit_status == 1


def test_the_example_of_the_rule_reference_passes(tmp_path: Path) -> None:
    reference = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    example = reference.split("## Rule tests")[1].split("```yaml\n")[1].split("```")[0]
    directory = rules_copy(tmp_path)
    write_tests(directory, example)

    report = run_tests(directory)

    assert (report.passed, report.exit_status) == (1, 0), report.render()
