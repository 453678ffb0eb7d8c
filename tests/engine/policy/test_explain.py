from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.errors import FactsError
from engine.facts.scenario import scenario_facts
from engine.flow.pipeline import dry_run
from engine.policy.explain import (
    STAGES,
    Explanation,
    RuleExplanation,
    as_dict,
    explain,
    read_facts,
    render_text,
)
from engine.policy.loader import load
from engine.policy.policy import Policy, compile_python
from engine.policy.verdicts import Verdict
from tests.engine.policy.checker_cases import ROOT, SHIPPED

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
SCENARIOS = ROOT / "tests" / "fixtures" / "scenarios"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return compile_python(load(SHIPPED))


def scenario(name: str) -> dict[str, Any]:
    document = json.loads((SCENARIOS / f"{name}.json").read_text(encoding="utf-8"))
    return scenario_facts(document, name=name)


def rule(explanation: Explanation, stage: str, rule_id: str) -> RuleExplanation:
    found = next(s for s in explanation.stages if s.stage == stage)
    return next(r for r in found.rules if r.rule.id == rule_id)


def leaves(verdict: Verdict) -> dict[str, tuple[Any, bool]]:
    return {
        getattr(leaf.condition, "path", ""): (leaf.actual, leaf.holds)
        for leaf in verdict.leaves()
    }


def test_each_condition_shows_the_value_found_and_its_verdict(policy: Policy) -> None:
    explanation = explain(policy, scenario("case-s10"), now=NOW, stage="classify")

    disk = rule(explanation, "classify", "disk-full")
    assert disk.matched
    assert leaves(disk.verdict) == {
        "snapshot.disk.max_percent": (100, True),
        "snapshot.disk.max_inodes_percent": (None, False),
        "snapshot.disk.write_errors": (1, True),
    }
    deploy = rule(explanation, "classify", "deploy-then-crash-loop")
    assert not deploy.matched
    assert leaves(deploy.verdict)["snapshot.deploys.last_minutes_ago"] == (None, False)


def test_the_outcome_is_the_dry_runs_after_conflict_resolution(policy: Policy) -> None:
    facts = scenario("case-s10")
    run = dry_run(policy, facts, now=NOW)

    explanation = explain(policy, facts, now=NOW)

    stages = {s.stage: s for s in explanation.stages}
    assert [s.stage for s in explanation.stages] == list(STAGES)
    assert stages["classify"].outcome["type"] == run.classification.type
    assert stages["classify"].outcome["also_matched"] == list(run.classification.others)
    assert set(stages["classify"].matched) == {
        run.classification.rule_id,
        *run.classification.others,
    }
    assert [a["action"] for a in stages["stabilize"].outcome["actions"]] == [
        p.action for p in run.plan.actions
    ]
    assert stages["impact"].outcome["level"] == run.impact.level


def test_later_stages_see_the_facts_earlier_stages_added(policy: Policy) -> None:
    explanation = explain(policy, scenario("case-s06"), now=NOW)

    message = rule(explanation, "messages", "message-minor")
    assert leaves(message.verdict) == {"impact.level": ("minor", True)}
    advice = rule(explanation, "recommend", "recommend-clear-temp")
    assert leaves(advice.verdict) == {"classification.type": ("disk_pressure", True)}


def test_decision_three_is_shown_against_its_recommendation(policy: Policy) -> None:
    facts = {
        "alert": {"kind": "threshold_exceeded"},
        "snapshot": {"disk": {"max_percent": 99}},
    }

    explanation = explain(
        policy, facts, now=NOW, stage="decisions", org={"auto_execute": True}
    )

    auto = rule(explanation, "decisions", "auto-execute-low-risk")
    assert leaves(auto.verdict) == {
        "recommendation.risk": ("low", True),
        "recommendation.auto_allowed": (False, False),
        "org.auto_execute": (True, True),
    }


def test_item_conditions_show_each_item_by_name(policy: Policy) -> None:
    facts = {
        "alert": {"kind": "threshold_exceeded"},
        "snapshot": {
            "pm2": {
                "processes": [
                    {
                        "name": "api",
                        "status": "online",
                        "memory_mb": 1200,
                        "restart_loop": False,
                    },
                    {
                        "name": "web",
                        "status": "online",
                        "memory_mb": 200,
                        "restart_loop": False,
                    },
                ]
            }
        },
    }

    explanation = explain(policy, facts, now=NOW, stage="stabilize")

    text = render_text(explanation)
    assert "✓ snapshot.pm2.processes any_item  ← [2 items]" in text
    assert "item 0 (api):" in text
    assert "✓ memory_mb gte 900 ($memory.process_restart_mb)  ← 1200" in text
    assert "✗ memory_mb gte 900 ($memory.process_restart_mb)  ← 200" in text
    node = as_dict(explanation)["stages"][0]["rules"][0]["condition"]["children"][0]
    assert [(i["index"], i["name"], i["holds"]) for i in node["items"]] == [
        (0, "api", True),
        (1, "web", False),
    ]


def test_text_has_colour_only_when_asked(policy: Policy) -> None:
    explanation = explain(policy, scenario("case-s01"), now=NOW, stage="classify")

    plain = render_text(explanation)
    coloured = render_text(explanation, color=True)

    assert "\033[" not in plain
    assert "\033[32m✓\033[0m" in coloured
    assert "\033[31m✗\033[0m" in coloured
    lines = plain.splitlines()
    assert lines[2:4] == ["== classify ==", "✗ disk-full  priority 90  classify.yaml:9"]
    assert "✓ deploy-then-crash-loop  priority 75  classify.yaml:49" in lines
    assert "matched: deploy-then-crash-loop, deploy-then-errors" in plain
    assert "outcome:\n  type: bad_deploy\n  confidence: 0.9\n" in plain


def test_json_form_keeps_operand_reference_and_actual(policy: Policy) -> None:
    explanation = explain(policy, scenario("case-s02"), now=NOW, stage="classify")

    data = as_dict(explanation)

    stage = data["stages"][0]
    assert stage["outcome"]["type"] == "memory_exhaustion"
    memory = next(r for r in stage["rules"] if r["id"] == "memory-exhausted-host")
    assert memory["matched"] is True
    assert memory["condition"]["children"][0] == {
        "path": "snapshot.memory.percent",
        "op": "gte",
        "holds": True,
        "actual": 97,
        "line": 25,
        "operand": 95,
        "reference": "$memory.critical_percent",
    }
    json.dumps(data)


def test_an_unknown_stage_is_refused(policy: Policy) -> None:
    with pytest.raises(ValueError, match="unknown stage 'clasify'"):
        explain(policy, {}, now=NOW, stage="clasify")


def test_read_facts_maps_a_scenario_file() -> None:
    facts = read_facts(SCENARIOS / "case-s03.json")

    assert facts["snapshot"]["dns"]["failure_rate"] == 1.0


def test_read_facts_refuses_facts_outside_the_vocabulary(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"snapshot": {"memory": {"percent": "high"}}}))

    with pytest.raises(FactsError) as raised:
        read_facts(path)

    assert raised.value.render() == (
        f"{path}: -: E411: facts at snapshot.memory.percent: 'high' is not of type "
        "'number', 'null'; see the facts vocabulary in docs/facts.md for the "
        "expected shape"
    )


def test_read_facts_refuses_a_document_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "facts.json"
    path.write_text("[1, 2]")

    with pytest.raises(FactsError) as raised:
        read_facts(path)

    assert raised.value.code == "E412"
    assert raised.value.message == (
        f"{path} must hold a JSON object (alert, snapshot, incident...)"
    )
