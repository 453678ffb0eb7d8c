"""``rules test``: unit tests of a policy, in the spirit of ``promtool test rules``.

A rules directory keeps its tests in ``tests/*.yaml``. Each case gives a facts
document (inline under ``facts``, or in a file: ``facts_file``, or a recorded
incident: ``scenario_file``) and what the policy must decide for it, stage by
stage, under ``expect``. The case runs through ``engine.flow.pipeline.dry_run``
with the compiled policy, so it sees exactly what the service would decide,
and changes nothing anywhere. The file format is checked with a JSON Schema,
every case's facts against the facts vocabulary and every rule id it names
against the policy, so a typo is an error and never a silent pass. A failure
lists each expectation that did not hold, expected and got side by side.

Expectations per stage (all optional; ``matched`` and ``not_matched`` list
rule ids of that stage and work everywhere)::

    intake:    severity, title, dedup_key, ignore
    watch:     alerts (names, exactly)
    stabilize: actions (exactly: [{action, target, guard?}]; [] means none),
               not_actions (action names, or {action, target})
    classify:  type, confidence, rule
    brief:     summary_contains, recommendation_contains, risk_contains
    impact:    level, customer_facing, features (exactly)
    decisions: stable, customer_impact, auto_execute
    recommend: ids (exactly), not_ids, not_actions
    message:   template, tone, channels (exactly), approvals; null: no draft
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.errors import IncidentPolicyError, Location, PolicyError, Problem, Severity
from engine.facts import vocabulary
from engine.facts.scenario import scenario_facts
from engine.flow import intake
from engine.flow.pipeline import DryRun, dry_run
from engine.policy.loader import SUFFIXES, load, validate_document
from engine.policy.operators import same
from engine.policy.policy import Compile, Policy, compile_python
from engine.policy.source import PathKey, Positions, SourceFile, read

log = logging.getLogger(__name__)

DEFAULT_NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
"""The time every case runs at unless it says ``now``: results never vary."""

DEFAULT_ORG: Mapping[str, Any] = {"name": "default", "auto_execute": False}

STAGE_RULES: Mapping[str, str] = {
    "intake": "intake",
    "watch": "watch",
    "stabilize": "stabilize",
    "classify": "classify",
    "brief": "brief",
    "impact": "impact",
    "decisions": "decisions",
    "recommend": "recommend",
    "message": "messages",
}
"""Expectation key: the policy stage whose rule ids it may name."""

SET_FIELDS = frozenset({"alerts", "features", "ids", "channels"})
"""Lists compared as sets: order does not matter, every item must be there."""

Schema = dict[str, Any]


def _strings() -> Schema:
    return {"type": "array", "items": {"type": "string", "minLength": 1}}


def _stage(**fields: Schema) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {"matched": _strings(), "not_matched": _strings(), **fields},
    }


def _test_schema() -> Schema:
    text = {"type": "string"}
    flag = {"type": "boolean"}
    action = {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "target"],
        "properties": {"action": text, "target": text, "guard": text},
    }
    avoided = {
        "type": "array",
        "items": {"oneOf": [{"type": "string"}, {**action, "required": ["action"]}]},
    }
    expect = {
        "intake": _stage(severity=text, title=text, dedup_key=text, ignore=flag),
        "watch": _stage(alerts=_strings()),
        "stabilize": _stage(
            actions={"type": "array", "items": action}, not_actions=avoided
        ),
        "classify": _stage(type=text, confidence={"type": "number"}, rule=text),
        "brief": _stage(
            summary_contains=text, recommendation_contains=text, risk_contains=text
        ),
        "impact": _stage(
            level=text,
            customer_facing={"type": ["boolean", "null"]},
            features=_strings(),
        ),
        "decisions": _stage(stable=flag, customer_impact=flag, auto_execute=flag),
        "recommend": _stage(ids=_strings(), not_ids=_strings(), not_actions=avoided),
        "message": {
            "oneOf": [
                {"type": "null"},
                _stage(
                    template=text,
                    tone=text,
                    channels=_strings(),
                    approvals={"type": "integer"},
                ),
            ]
        },
    }
    case = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "expect"],
        "oneOf": [
            {"required": ["facts"]},
            {"required": ["facts_file"]},
            {"required": ["scenario_file"]},
        ],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": text,
            "facts": {"type": "object"},
            "facts_file": {"type": "string", "minLength": 1},
            "scenario_file": {"type": "string", "minLength": 1},
            "org": {"type": "object"},
            "now": {"type": "string", "format": "date-time"},
            "expect": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": expect,
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["tests"],
        "properties": {
            "description": text,
            "tests": {"type": "array", "minItems": 1, "items": case},
        },
    }


TEST_SCHEMA = _test_schema()


@dataclass(frozen=True)
class Case:
    """One test case, its facts already read and checked."""

    name: str
    location: Location
    facts: Mapping[str, Any]
    expect: Mapping[str, Any]
    org: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_ORG))
    now: datetime = DEFAULT_NOW
    positions: Positions | None = None  # of the test file, to locate ids
    at: PathKey = ()  # the case's path in its file


@dataclass(frozen=True)
class Mismatch:
    """One expectation that did not hold."""

    stage: str
    field: str
    expected: str
    got: str


@dataclass(frozen=True)
class CaseResult:
    name: str
    location: Location
    mismatches: tuple[Mismatch, ...] = ()
    problems: tuple[Problem, ...] = ()  # the case could not run as written

    @property
    def passed(self) -> bool:
        return not self.mismatches and not self.problems

    def render(self) -> str:
        status = "ok" if self.passed else ("ERROR" if self.problems else "FAIL")
        lines = [f"{self.location.render()}: {status}: {self.name}"]
        lines.extend("    " + p.render() for p in self.problems)
        if self.mismatches:
            lines.extend("    " + row for row in _table(self.mismatches))
        return "\n".join(lines)


def _table(mismatches: Sequence[Mismatch]) -> list[str]:
    rows = [("stage", "field", "expected", "got")]
    rows += [(m.stage, m.field, m.expected, m.got) for m in mismatches]
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(3)]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)
        )
        + "  "
        + row[3]
        for row in rows
    ]


@dataclass(frozen=True)
class RuleTestReport:
    """The outcome of ``rules test``."""

    directory: Path
    results: tuple[CaseResult, ...] = ()
    problems: tuple[Problem, ...] = ()  # files or policy that could not load
    files: int = 0

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(bool(r.mismatches) and not r.problems for r in self.results)

    @property
    def errors(self) -> int:
        broken = sum(bool(r.problems) for r in self.results)
        return broken + sum(p.severity is Severity.ERROR for p in self.problems)

    @property
    def exit_status(self) -> int:
        return 1 if self.failed or self.errors else 0

    def summary(self) -> str:
        return (
            f"{self.passed} passed, {self.failed} failed, {self.errors} errors "
            f"({len(self.results)} cases in {self.files} files)"
        )

    def render(self, *, verbose: bool = False) -> str:
        lines = [p.render() for p in self.problems]
        lines += [r.render() for r in self.results if verbose or not r.passed]
        return "\n".join([*lines, self.summary()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "problems": [p.as_dict() for p in self.problems],
            "cases": [_case_dict(r) for r in self.results],
        }


def _case_dict(result: CaseResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "file": result.location.file,
        "line": result.location.line,
        "passed": result.passed,
        "mismatches": [m.__dict__ for m in result.mismatches],
        "problems": [p.as_dict() for p in result.problems],
    }


def run_tests(directory: Path, *, compile: Compile = compile_python) -> RuleTestReport:
    """Run every case of ``directory/tests`` against the policy in ``directory``."""
    try:
        policy = compile(load(directory))
    except PolicyError as exc:
        return RuleTestReport(directory, problems=tuple(exc.problems))
    paths = case_files(directory)
    if not paths:
        missing = Problem(
            "W806",
            f"no rule tests in {directory / 'tests'}: add tests/*.yaml (see "
            "docs/rules.md, Rule tests) so changes to the rules are checked",
            Location(str(directory / "tests")),
        )
        return RuleTestReport(directory, problems=(missing,))
    results: list[CaseResult] = []
    problems: list[Problem] = []
    for path in paths:
        cases, found = read_cases(path, str(path))
        problems.extend(found)
        results.extend(run_case(policy, case) for case in cases)
    report = RuleTestReport(directory, tuple(results), tuple(problems), len(paths))
    log.info(
        "policy.tested",
        extra={
            "directory": str(directory),
            "passed": report.passed,
            "failed": report.failed,
            "errors": report.errors,
        },
    )
    return report


def case_files(directory: Path) -> list[Path]:
    """The rule test files of a rules directory: ``tests/*.yaml``."""
    folder = directory / "tests"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())


def read_cases(path: Path, name: str) -> tuple[list[Case], list[Problem]]:
    """The cases of one test file, and the problems that keep others out."""
    try:
        file = read(path, name)
    except PolicyError as exc:
        return [], list(exc.problems)
    if not isinstance(file.data, dict):
        return [], [
            Problem(
                "E801",
                f"{name} must hold a mapping with a `tests:` list, not "
                f"{type(file.data).__name__}",
                Location(name, 1, 1),
            )
        ]
    problems = validate_document(file, TEST_SCHEMA)
    if problems:
        return [], problems
    cases: list[Case] = []
    for index, item in enumerate(file.data["tests"]):
        case, found = _case(file, path.parent, item, ("tests", index))
        problems.extend(found)
        if case is not None:
            cases.append(case)
    return cases, problems


def _case(
    file: SourceFile, folder: Path, item: Mapping[str, Any], at: PathKey
) -> tuple[Case | None, list[Problem]]:
    name = str(item["name"])
    location = file.positions.at(at, name, "name")
    facts, problems = _facts(file, folder, item, at, name)
    if facts is None:
        return None, problems
    case = Case(
        name=name,
        location=location,
        facts=facts,
        expect=item["expect"],
        org={**DEFAULT_ORG, **item.get("org", {})},
        now=_time(item.get("now")),
        positions=file.positions,
        at=at,
    )
    return case, problems


def _time(text: str | None) -> datetime:
    if text is None:
        return DEFAULT_NOW
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _facts(
    file: SourceFile, folder: Path, item: Mapping[str, Any], at: PathKey, name: str
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The case's facts document, checked against the vocabulary."""
    if "facts" in item:
        facts = dict(item["facts"])
        return _checked(facts, file.positions, (*at, "facts"), name)
    key = "facts_file" if "facts_file" in item else "scenario_file"
    where = file.positions.at((*at, key), name, key)
    target = folder / str(item[key])
    try:
        document = read(target, str(target))
    except PolicyError as exc:
        return None, [_unreadable(exc, target, where)]
    if key == "scenario_file":
        try:
            mapped = scenario_facts(document.data or {}, name=str(target))
        except IncidentPolicyError as exc:
            return None, [replace(p, location=where) for p in exc.problems]
        return _checked(mapped, file.positions, (*at, key), name)
    return _checked(dict(document.data or {}), document.positions, (), name)


def _unreadable(exc: PolicyError, target: Path, where: Location) -> Problem:
    if not target.is_file():
        return Problem(
            "E804",
            f"{target} does not exist; paths in a test are relative to the test "
            "file's folder",
            where,
        )
    return exc.problems[0]


def _checked(
    facts: dict[str, Any], positions: Positions, at: PathKey, name: str
) -> tuple[dict[str, Any] | None, list[Problem]]:
    problems = []
    for problem in vocabulary.validate(facts):
        parts = (
            tuple(problem.location.field.split(".")) if problem.location.field else ()
        )
        location = positions.at((*at, *_keys(parts)), name, problem.location.field)
        problems.append(Problem("E411", problem.message, location))
    return (None if problems else facts), problems


def _keys(parts: Iterable[str]) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in parts if p != "(document)"]


def run_case(policy: Policy, case: Case) -> CaseResult:
    unknown = list(_unknown_rule_ids(policy, case))
    if unknown:
        return CaseResult(case.name, case.location, problems=tuple(unknown))
    try:
        observed = observe(policy, case)
    except IncidentPolicyError as exc:
        return CaseResult(case.name, case.location, problems=tuple(exc.problems))
    mismatches = tuple(compare(case.expect, observed))
    log.debug("policy.case_ran", extra={"case": case.name, "failed": len(mismatches)})
    return CaseResult(case.name, case.location, mismatches)


def _unknown_rule_ids(policy: Policy, case: Case) -> Iterable[Problem]:
    for stage, expected in case.expect.items():
        if not isinstance(expected, Mapping):
            continue
        known = {r.id for r in policy.source.rules.get(STAGE_RULES[stage], ())}
        for key in ("matched", "not_matched"):
            for index, rule_id in enumerate(expected.get(key, [])):
                if rule_id in known:
                    continue
                at = (*case.at, "expect", stage, key, index)
                location = (
                    case.positions.at(at, case.name, f"{stage}.{key}")
                    if case.positions
                    else case.location
                )
                yield Problem(
                    "E803",
                    f"{stage}.{key} names rule {rule_id!r}, which is not a "
                    f"{STAGE_RULES[stage]} rule of this policy; fix the id (an "
                    "assertion on a missing rule would always pass)",
                    location,
                )


Observed = dict[str, Any]
"""What the policy decided, per expectation key: field -> value."""


def observe(policy: Policy, case: Case) -> dict[str, Observed]:
    run = dry_run(policy, case.facts, now=case.now, org=case.org)
    return {
        "intake": _intake(run),
        "watch": _watch(policy, case.facts),
        "stabilize": _stabilize(run),
        "classify": _classify(run),
        "brief": _brief(run),
        "impact": _impact(run),
        "decisions": _decisions(run),
        "recommend": _recommend(run),
        "message": _message(policy, run),
    }


def _intake(run: DryRun) -> Observed:
    taken = run.intake
    return {
        "severity": taken.severity,
        "title": taken.title,
        "dedup_key": taken.dedup_key,
        "ignore": taken.ignore,
        "matched": list(taken.evaluation.rule_ids),
    }


def _watch(policy: Policy, facts: Mapping[str, Any]) -> Observed:
    alerts = intake.watch_alerts(policy, facts)
    return {"alerts": [a.name for a in alerts], "matched": [a.rule_id for a in alerts]}


def _stabilize(run: DryRun) -> Observed:
    actions = [
        {"action": p.action, "target": p.target, "guard": v.code}
        for p, v in run.verdicts
    ]
    return {"actions": actions, "matched": list(run.plan.evaluation.rule_ids)}


def _classify(run: DryRun) -> Observed:
    found = run.classification
    return {
        "type": found.type,
        "confidence": found.confidence,
        "rule": found.rule_id,
        "matched": list(found.evaluation.rule_ids),
    }


def _brief(run: DryRun) -> Observed:
    brief = run.brief
    return {
        "summary": brief.summary,
        "recommendation": brief.recommendation,
        "risk": brief.risk,
        "matched": list(brief.evaluation.rule_ids),
    }


def _impact(run: DryRun) -> Observed:
    found = run.impact
    return {
        "level": found.level,
        "customer_facing": found.customer_facing,
        "features": list(found.features),
        "matched": list(found.evaluation.rule_ids),
    }


def _decisions(run: DryRun) -> Observed:
    decided = run.decisions
    observed: Observed = {name: d.value for name, d in decided.items()}
    evaluations = [d.evaluation for d in decided.values() if d.evaluation]
    observed["matched"] = sorted({i for e in evaluations for i in e.rule_ids})
    return observed


def _recommend(run: DryRun) -> Observed:
    found = run.recommendations
    return {
        "ids": [r.id for r in found.recommendations],
        "actions": [
            {"action": r.action, "target": r.target}
            for r in found.recommendations
            if r.action
        ],
        "matched": list(found.evaluation.rule_ids),
    }


def _message(policy: Policy, run: DryRun) -> Observed:
    draft = run.message
    matched = list(policy.evaluate("messages", run.facts).rule_ids)
    if draft is None:
        return {"draft": None, "matched": matched}
    return {
        "draft": True,
        "template": draft.template,
        "tone": draft.tone,
        "channels": list(draft.channels),
        "approvals": draft.approvals_required,
        "matched": matched,
    }


def compare(
    expect: Mapping[str, Any], observed: Mapping[str, Observed]
) -> Iterable[Mismatch]:
    """Each expectation that the observed outcome does not meet."""
    for stage, expected in expect.items():
        got = observed[stage]
        if expected is None:  # `message: null`: no draft at all
            if got.get("draft") is not None:
                yield Mismatch(stage, "draft", "no draft", f"draft {got['template']}")
            continue
        if stage == "message" and got.get("draft") is None and _draft_fields(expected):
            yield Mismatch(stage, "draft", "a draft", "no draft")
            continue
        for name, value in expected.items():
            found = _compare_field(stage, name, value, got)
            if found is not None:
                yield found


def _draft_fields(expected: Mapping[str, Any]) -> bool:
    return any(k not in ("matched", "not_matched") for k in expected)


def _compare_field(
    stage: str, name: str, expected: Any, got: Observed
) -> Mismatch | None:
    if name == "matched":
        ok = set(expected) <= set(got["matched"])
        return (
            None if ok else Mismatch(stage, name, show(expected), show(got["matched"]))
        )
    if name in ("not_matched", "not_ids"):
        listed = got["matched" if name == "not_matched" else "ids"]
        hit = [i for i in listed if i in expected]
        return (
            Mismatch(stage, name, f"none of {show(expected)}", show(listed))
            if hit
            else None
        )
    if name == "not_actions":
        return _avoided(stage, expected, got["actions"])
    if name == "actions":
        return _actions(stage, expected, got["actions"])
    if name.endswith("_contains"):
        text = str(got[name.removesuffix("_contains")])
        return (
            None
            if expected in text
            else Mismatch(stage, name, repr(expected), repr(text))
        )
    return _value(stage, name, expected, got)


def _value(stage: str, name: str, expected: Any, got: Observed) -> Mismatch | None:
    if name not in got:
        return Mismatch(stage, name, show(expected), _undecided(name))
    value = got[name]
    if name in SET_FIELDS:
        equal = sorted(map(str, expected)) == sorted(map(str, value))
    else:
        equal = (
            expected is value
            if expected is None or value is None
            else same(expected, value)
        )
    return None if equal else Mismatch(stage, name, show(expected), show(value))


def _undecided(name: str) -> str:
    if name == "auto_execute":
        return "not decided (no recommendation names an action)"
    return "not decided"


def _actions(
    stage: str, expected: Sequence[Mapping[str, str]], got: Sequence[Any]
) -> Mismatch | None:
    def key(item: Mapping[str, Any]) -> tuple[str, str]:
        return (str(item["action"]), str(item["target"]))

    planned = {key(a): a for a in got}
    wanted = {key(a): a for a in expected}
    guards_ok = all(
        "guard" not in item or planned.get(k, {}).get("guard") == item["guard"]
        for k, item in wanted.items()
    )
    if set(planned) == set(wanted) and guards_ok and len(got) == len(expected):
        return None
    return Mismatch(stage, "actions", show_actions(expected), show_actions(got))


def _avoided(
    stage: str, avoided: Sequence[Any], got: Sequence[Mapping[str, Any]]
) -> Mismatch | None:
    def hits(item: Mapping[str, Any]) -> bool:
        for entry in avoided:
            if isinstance(entry, str) and item["action"] == entry:
                return True
            if (
                isinstance(entry, Mapping)
                and item["action"] == entry["action"]
                and ("target" not in entry or item["target"] == entry["target"])
            ):
                return True
        return False

    chosen = [item for item in got if hits(item)]
    if not chosen:
        return None
    return Mismatch(
        stage, "not_actions", f"none of {show(avoided)}", show_actions(chosen)
    )


def show_actions(actions: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for item in actions:
        guard = f" ({item['guard']})" if item.get("guard") else ""
        parts.append(f"{item['action']} {item['target']}{guard}")
    return "[" + ", ".join(parts) + "]" if parts else "[] (no action)"


def show(value: Any) -> str:
    """A value as a test file would write it."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool | float | int):
        return json.dumps(value)
    return str(value)
