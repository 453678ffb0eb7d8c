"""The four decision points, answered by ``rules/decisions.yaml``.

1. ``stable`` after stabilize; 2. ``customer_impact`` after impact;
3. ``auto_execute`` per recommendation; 4. ``root_cause_identified`` after
resolve. The highest-priority rule that sets a decision wins; without one the
file's default stands (the cautious answer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.flow.outcomes import Decision
from engine.policy import resolve
from engine.policy.model import Evaluation, Match
from engine.policy.policy import Policy

STABLE = "stable"
CUSTOMER_IMPACT = "customer_impact"
AUTO_EXECUTE = "auto_execute"
ROOT_CAUSE = "root_cause_identified"

BUILT_IN_DEFAULTS = {
    STABLE: False,
    CUSTOMER_IMPACT: True,
    AUTO_EXECUTE: False,
    ROOT_CAUSE: False,
}


def decide(policy: Policy, name: str, facts: Mapping[str, Any]) -> Decision:
    evaluation = policy.evaluate("decisions", facts)
    relevant = tuple(m for m in evaluation.matches if m.then["decision"] == name)
    scoped = Evaluation(
        evaluation.stage, evaluation.policy_version, relevant, evaluation.facts
    )
    configured = policy.source.documents.get("decisions", {}).get("defaults", {})
    defaults = {**BUILT_IN_DEFAULTS, **configured}
    value, rule_id = resolve.decisions(scoped, defaults)[name]
    return Decision(name, value, rule_id, scoped)


def matches_for(decision: Decision) -> tuple[Match, ...]:
    return decision.evaluation.matches if decision.evaluation else ()
