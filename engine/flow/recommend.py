"""Recommendations: next steps for a human, each with its risk.

Every matching rule of ``recommend.yaml`` adds its recommendations, fanned out
over ``for_each`` items, de-duplicated by id and target (the higher-priority
rule's kept). For each one that names a catalog action, decision 3 says
whether it may run at once (low risk, allowed by the catalog, organization
opted in) or waits for an approval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from engine.flow import decide
from engine.flow.outcomes import Recommendation, RecommendOutcome
from engine.policy import resolve
from engine.policy.policy import Policy

RENDERED = ("text", "rationale", "target")


def recommend(policy: Policy, facts: Mapping[str, Any]) -> RecommendOutcome:
    evaluation = policy.evaluate("recommend", facts)
    items = resolve.fan_out(
        evaluation.matches, "recommendations", facts, policy.render, RENDERED
    )
    kept = resolve.unique(items, key=lambda i: (i.fields["id"], i.fields.get("target")))
    found = [_recommendation(policy, facts, item) for item in kept]
    return RecommendOutcome(tuple(found), evaluation)


def _recommendation(
    policy: Policy, facts: Mapping[str, Any], item: resolve.PlannedItem
) -> Recommendation:
    fields = item.fields
    action = fields.get("action")
    draft = Recommendation(
        id=str(fields["id"]),
        text=str(fields["text"]),
        rationale=str(fields.get("rationale", "")),
        risk=str(fields["risk"]),
        action=str(action) if action else None,
        target=str(fields["target"]) if fields.get("target") else None,
        rule_id=item.rule_id,
    )
    if draft.action is None:
        return draft
    scoped = {**facts, "recommendation": as_facts(policy, draft)}
    return replace(draft, auto=decide.decide(policy, decide.AUTO_EXECUTE, scoped))


def as_facts(policy: Policy, rec: Recommendation) -> dict[str, Any]:
    spec = policy.source.catalog.actions.get(rec.action or "")
    return {
        "id": rec.id,
        "risk": rec.risk,
        "action": rec.action,
        "target": rec.target,
        "auto_allowed": bool(spec and spec.auto and policy.source.catalog.auto_execute),
    }
