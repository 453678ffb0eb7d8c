"""``rules explain``: why each rule did or did not fire for one facts document.

``explain(policy, facts)`` runs the whole flow as a dry run
(``engine.flow.pipeline.dry_run``), then walks every rule of every stage with
the explaining evaluator against the very facts that stage evaluated (each
stage adds its own values: the classification, the impact, the
recommendation under decision 3...). For each rule it keeps the verdict tree:
every condition, nested through ``all``/``any``/``none`` groups and
``any_item``/``all_items`` items, with its path, operator, operand and
threshold reference, the actual value found and whether it held. Each stage
ends with its outcome after conflict resolution, taken from the dry run, so
the explanation and the service can never disagree on the result.
``render_text`` prints it as a tree with ✓/✗ marks (colour only when asked,
for a terminal); ``as_dict`` gives the same as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from engine.errors import FactsError, Location
from engine.facts import vocabulary
from engine.facts.scenario import is_scenario, scenario_facts
from engine.flow import intake
from engine.flow.guards import target_facts
from engine.flow.pipeline import DryRun, dry_run
from engine.policy.model import Group, Rule, Test
from engine.policy.operators import ITEM_OPERATORS
from engine.policy.policy import Policy
from engine.policy.verdicts import Verdict, lookup
from engine.policy.verdicts import explain as verdict_of

STAGES = (
    "intake",
    "watch",
    "stabilize",
    "guards",
    "classify",
    "brief",
    "impact",
    "decisions",
    "messages",
    "recommend",
    "learning",
)
"""The stages ``rules explain`` covers, in flow order."""

Facts = Mapping[str, Any]


@dataclass(frozen=True)
class RuleExplanation:
    rule: Rule
    verdict: Verdict
    facts: Facts  # what the rule was evaluated against

    @property
    def matched(self) -> bool:
        return self.verdict.holds


@dataclass(frozen=True)
class StageExplanation:
    stage: str
    rules: tuple[RuleExplanation, ...]
    outcome: Mapping[str, Any]  # after conflict resolution, JSON-ready
    note: str = ""  # what the facts of this stage were, when not obvious

    @property
    def matched(self) -> tuple[str, ...]:
        return tuple(r.rule.id for r in self.rules if r.matched)


@dataclass(frozen=True)
class Explanation:
    policy_version: str
    stages: tuple[StageExplanation, ...]


def read_facts(path: Path) -> dict[str, Any]:
    """A facts document (JSON or YAML), or a scenario file mapped to one.

    Raises ``FactsError`` when the file is unreadable or the document does not
    fit the facts vocabulary, with every problem located.
    """
    name = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FactsError(
            f"cannot read {name}: {exc}; give a JSON (or YAML) facts document",
            code="E412",
            location=Location(name),
        ) from exc
    if not isinstance(document, dict):
        raise FactsError(
            f"{name} must hold a JSON object (alert, snapshot, incident...)",
            code="E412",
            location=Location(name),
        )
    facts = scenario_facts(document, name=name) if is_scenario(document) else document
    problems = vocabulary.validate(facts, file=name)
    if problems:
        raise FactsError(problems[0].message, problems=problems)
    return facts


def explain(
    policy: Policy,
    facts: Facts,
    *,
    now: datetime,
    stage: str | None = None,
    org: Facts | None = None,
) -> Explanation:
    """Every rule of ``stage`` (or of every stage) against ``facts``."""
    if stage is not None and stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    run = dry_run(policy, facts, now=now, org=org)
    stages = tuple(
        _stage(policy, run, facts, name) for name in STAGES if stage in (None, name)
    )
    return Explanation(policy.version, stages)


def _stage(policy: Policy, run: DryRun, facts: Facts, stage: str) -> StageExplanation:
    rules = sorted(policy.source.rules.get(stage, ()), key=Rule.sort_key)
    seen = StageFacts(policy, run, facts)
    explained = []
    for rule in rules:
        facts_seen = seen.of(stage, rule)
        explained.append(
            RuleExplanation(rule, verdict_of(rule.when, facts_seen), facts_seen)
        )
    return StageExplanation(
        stage,
        tuple(explained),
        outcome(policy, run, facts, stage),
        NOTES.get(stage, ""),
    )


NOTES = {
    "guards": "preconditions and verifications of the catalog; `target` is the "
    "item a planned action acts on",
    "decisions": "each decision is shown against the facts it was taken on; "
    "auto_execute against the first recommendation that names an action",
    "learning": "learning rules run when a human resolves the incident; here "
    "they see the facts as given: add `review` and `resolution` to see them fire",
}


class StageFacts:
    """The facts document each stage (and each decision) evaluated."""

    def __init__(self, policy: Policy, run: DryRun, given: Facts) -> None:
        self.policy = policy
        self.run = run
        self.given = given

    def of(self, stage: str, rule: Rule) -> Facts:
        run = self.run
        simple: Mapping[str, Facts] = {
            "intake": run.intake.evaluation.facts,
            "watch": self.given,
            "stabilize": run.plan.evaluation.facts,
            "classify": run.classification.evaluation.facts,
            "brief": run.brief.evaluation.facts,
            "impact": run.impact.evaluation.facts,
            "recommend": run.recommendations.evaluation.facts,
            "learning": run.facts,
        }
        if stage in simple:
            return simple[stage]
        if stage == "guards":
            return self.guard(rule)
        if stage == "decisions":
            return self.decision(str(rule.then.get("decision")))
        return run.message.evaluation.facts if run.message else run.facts

    def guard(self, rule: Rule) -> Facts:
        base = self.run.plan.evaluation.facts
        action = str(rule.then.get("action"))
        for planned in self.run.plan.actions:
            if planned.action == action:
                return {**base, "target": target_facts(planned)}
        return base

    def decision(self, name: str) -> Facts:
        run = self.run
        taken = {"stable": run.stable, "customer_impact": run.customer_impact}
        auto = next(
            (r.auto for r in run.recommendations.recommendations if r.auto), None
        )
        if auto is not None:
            taken["auto_execute"] = auto
        decided = taken.get(name)
        if decided is not None and decided.evaluation is not None:
            return decided.evaluation.facts
        return run.facts


def outcome(policy: Policy, run: DryRun, facts: Facts, stage: str) -> dict[str, Any]:
    """The stage's result after conflict resolution, as the dry run found it."""
    if stage == "intake":
        taken = run.intake
        return {
            "severity": taken.severity,
            "title": taken.title,
            "dedup_key": taken.dedup_key,
            "ignore": taken.ignore,
            "set_by": dict(taken.rules),
        }
    if stage == "watch":
        alerts = intake.watch_alerts(policy, facts)
        return {
            "alerts": [
                {"name": a.name, "severity": a.severity, "rule": a.rule_id}
                for a in alerts
            ]
        }
    if stage == "stabilize":
        return {
            "actions": [
                {
                    "action": p.action,
                    "target": p.target,
                    "rule": p.rule_id,
                    "guard": v.code,
                    "guard_message": v.message,
                }
                for p, v in run.verdicts
            ]
        }
    return _later_outcome(run, stage)


def _later_outcome(run: DryRun, stage: str) -> dict[str, Any]:
    if stage == "classify":
        found = run.classification
        return {
            "type": found.type,
            "confidence": found.confidence,
            "rule": found.rule_id,
            "also_matched": list(found.others),
        }
    if stage == "brief":
        return {
            "recommendation": run.brief.recommendation,
            "risk": run.brief.risk,
            "set_by": dict(run.brief.rules),
        }
    if stage == "impact":
        impact = run.impact
        return {
            "level": impact.level,
            "rule": impact.rule_id,
            "customer_facing": impact.customer_facing,
            "features": list(impact.features),
            "downtime_minutes": impact.downtime_minutes,
            "downtime_basis": impact.downtime_basis,
        }
    if stage == "decisions":
        return {
            name: {"value": d.value, "rule": d.rule_id}
            for name, d in run.decisions.items()
        }
    if stage == "messages":
        return _message_outcome(run)
    if stage == "recommend":
        return {
            "recommendations": [
                {
                    "id": r.id,
                    "risk": r.risk,
                    "action": r.action,
                    "target": r.target,
                    "rule": r.rule_id,
                    "auto_execute": r.auto.value if r.auto else None,
                }
                for r in run.recommendations.recommendations
            ]
        }
    return {}


def _message_outcome(run: DryRun) -> dict[str, Any]:
    draft = run.message
    if draft is None:
        return {"draft": None, "reason": "decision customer_impact is false"}
    return {
        "draft": {
            "template": draft.template,
            "tone": draft.tone,
            "channels": list(draft.channels),
            "approvals": draft.approvals_required,
            "rule": draft.rule_id,
        }
    }


def as_dict(explanation: Explanation) -> dict[str, Any]:
    return {
        "policy_version": explanation.policy_version,
        "stages": [
            {
                "stage": s.stage,
                "note": s.note,
                "matched": list(s.matched),
                "outcome": s.outcome,
                "rules": [_rule_dict(r) for r in s.rules],
            }
            for s in explanation.stages
        ],
    }


def _rule_dict(explained: RuleExplanation) -> dict[str, Any]:
    rule = explained.rule
    return {
        "id": rule.id,
        "priority": rule.priority,
        "file": rule.location.file,
        "line": rule.location.line,
        "matched": explained.matched,
        "condition": verdict_dict(explained.verdict, explained.facts),
    }


def verdict_dict(verdict: Verdict, facts: Facts) -> dict[str, Any]:
    """One verdict tree as JSON; ``facts`` names the items of item conditions."""
    condition = verdict.condition
    if isinstance(condition, Group):
        return {
            "group": condition.kind,
            "holds": verdict.holds,
            "children": [verdict_dict(c, facts) for c in verdict.children],
        }
    node: dict[str, Any] = {
        "path": condition.path,
        "op": condition.op,
        "holds": verdict.holds,
        "actual": _jsonable(verdict.actual),
        "line": condition.location.line,
    }
    if isinstance(condition.operand, Group | Test):
        node["items"] = [
            {"index": index, "name": item.get("name"), **verdict_dict(child, item)}
            for index, (item, child) in enumerate(_items(verdict, facts))
        ]
    else:
        node["operand"] = _jsonable(condition.operand)
    if condition.reference:
        node["reference"] = condition.reference
    return node


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


GREEN, RED, BOLD, DIM, RESET = "\033[32m", "\033[31m", "\033[1m", "\033[2m", "\033[0m"


@dataclass(frozen=True)
class Style:
    """ANSI styling, or none at all when the output is not a terminal."""

    color: bool = False

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def mark(self, holds: bool) -> str:
        return self.paint("✓", GREEN) if holds else self.paint("✗", RED)


def render_text(explanation: Explanation, *, color: bool = False) -> str:
    style = Style(color)
    lines = [f"policy {explanation.policy_version[:12]}"]
    for stage in explanation.stages:
        lines.extend(_stage_lines(stage, style))
    return "\n".join(lines)


def _stage_lines(stage: StageExplanation, style: Style) -> Iterator[str]:
    yield ""
    yield style.paint(f"== {stage.stage} ==", BOLD)
    if stage.note:
        yield style.paint(f"({stage.note})", DIM)
    if not stage.rules:
        yield "  no rules"
    for explained in stage.rules:
        rule = explained.rule
        where = f"{rule.location.file}:{rule.location.line}"
        yield (
            f"{style.mark(explained.matched)} {style.paint(rule.id, BOLD)}  "
            f"priority {rule.priority}  {where}"
        )
        yield from _verdict_lines(explained.verdict, style, 1, explained.facts)
    yield f"matched: {', '.join(stage.matched) or 'none'}"
    yield "outcome:" + _show_outcome(stage.outcome)


def _verdict_lines(
    verdict: Verdict, style: Style, depth: int, facts: Facts
) -> Iterator[str]:
    pad = "  " * depth
    condition = verdict.condition
    mark = style.mark(verdict.holds)
    if isinstance(condition, Group):
        if not condition.children:
            yield f"{pad}{style.mark(True)} (no conditions: always matches)"
            return
        yield f"{pad}{mark} {condition.kind}"
        for child in verdict.children:
            yield from _verdict_lines(child, style, depth + 1, facts)
        return
    yield f"{pad}{mark} {leaf_text(condition)}  ← {_actual(verdict)}"
    for index, (item, child) in enumerate(_items(verdict, facts)):
        name = f" ({item['name']})" if item.get("name") is not None else ""
        yield f"{pad}  item {index}{name}:"
        yield from _verdict_lines(child, style, depth + 2, item)


def _items(verdict: Verdict, facts: Facts) -> Iterator[tuple[Facts, Verdict]]:
    """The list items an item condition was tried on, with their verdicts."""
    condition = verdict.condition
    if not isinstance(condition, Test) or condition.op not in ITEM_OPERATORS:
        return
    found = lookup(facts, condition.path)
    listed = found if isinstance(found, list) else []
    items = [item for item in listed if isinstance(item, Mapping)]
    yield from zip(items, verdict.children, strict=False)


def leaf_text(test: Test) -> str:
    """``snapshot.memory.percent gte 95 ($memory.critical_percent)``."""
    if isinstance(test.operand, Group | Test):
        return f"{test.path} {test.op}"
    reference = f" ({test.reference})" if test.reference else ""
    return f"{test.path} {test.op} {_json(test.operand)}{reference}"


def _actual(verdict: Verdict) -> str:
    condition = verdict.condition
    value = verdict.actual
    if isinstance(condition, Test) and condition.op in ITEM_OPERATORS:
        return str(value) if value is not None else "missing"
    return "missing" if value is None else _json(value)


def _json(value: Any) -> str:
    text = json.dumps(_jsonable(value), ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _show_outcome(outcome: Mapping[str, Any]) -> str:
    if not outcome:
        return " (this stage only records its matches)"
    text = yaml.safe_dump(dict(outcome), sort_keys=False, allow_unicode=True, width=88)
    return "\n" + "\n".join("  " + line for line in text.rstrip().splitlines())
