"""The whole flow as pure functions: facts in, every stage's outcome out.

The runner (``engine.flow.runner``) drives the same steps with the store,
the executors and fresh snapshots between them. ``dry_run`` drives them with
nothing: planned actions get their guard verdicts but do not run, and
decision 1 reads the same snapshot. ``rules test``, ``rules explain`` and
``replay`` use it, so a rule test sees exactly what the service would decide.
How the facts document grows from stage to stage lives here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.flow import brief as brief_stage
from engine.flow import classify as classify_stage
from engine.flow import decide, guards, impact, intake, message, recommend, stabilize
from engine.flow.outcomes import (
    ActionSummary,
    Brief,
    ClassifyOutcome,
    Decision,
    Impact,
    IntakeOutcome,
    MessageDraft,
    PlannedAction,
    RecommendOutcome,
    StabilizePlan,
)
from engine.policy.policy import Policy

Facts = dict[str, Any]


def base_facts(
    facts: Mapping[str, Any], outcome: IntakeOutcome, org: Mapping[str, Any]
) -> Facts:
    """The facts every stage starts from: alert, snapshot, incident, org."""
    incident = {
        "severity": outcome.severity,
        "status": "open",
        "alert_count": 1,
        **(facts.get("incident") or {}),
    }
    return {**facts, "incident": incident, "org": dict(org)}


def with_stabilization(
    facts: Mapping[str, Any], statuses: list[str], breaker_open: bool
) -> Facts:
    return {**facts, "stabilization": stabilize.summary_facts(statuses, breaker_open)}


def with_classification(
    facts: Mapping[str, Any], outcome: ClassifyOutcome, stable: Decision
) -> Facts:
    incident = {
        **facts.get("incident", {}),
        "type": outcome.type,
        "status": "monitoring" if stable.value else "awaiting_approval",
    }
    classification = classify_stage.as_facts(outcome)
    return {**facts, "classification": classification, "incident": incident}


def with_impact(facts: Mapping[str, Any], outcome: Impact) -> Facts:
    return {**facts, "impact": impact.as_facts(outcome)}


@dataclass(frozen=True)
class DryRun:
    facts: Facts
    intake: IntakeOutcome
    plan: StabilizePlan
    verdicts: tuple[tuple[PlannedAction, guards.GuardVerdict], ...]
    stable: Decision
    classification: ClassifyOutcome
    brief: Brief
    impact: Impact
    customer_impact: Decision
    message: MessageDraft | None
    recommendations: RecommendOutcome

    @property
    def decisions(self) -> dict[str, Decision]:
        found = {d.name: d for d in (self.stable, self.customer_impact)}
        for rec in self.recommendations.recommendations:
            if rec.auto is not None:
                found.setdefault(decide.AUTO_EXECUTE, rec.auto)
        return found


def dry_run(
    policy: Policy,
    facts: Mapping[str, Any],
    *,
    now: datetime,
    first_signal_at: datetime | None = None,
    org: Mapping[str, Any] | None = None,
) -> DryRun:
    """Every stage's decision for ``facts``, changing nothing anywhere."""
    taken = intake.assess_alert(policy, facts)
    base = base_facts(facts, taken, org or {"name": "default", "auto_execute": False})
    plan = stabilize.plan(policy, base)
    verdicts = tuple(
        (p, guards.check(policy, p, base, guards.ActionHistory(), now, automatic=True))
        for p in plan.actions
    )
    statuses = ["dry_run" if v.allowed else "refused" for _, v in verdicts]
    stabilized = with_stabilization(base, statuses, breaker_open=False)
    stable = decide.decide(policy, decide.STABLE, stabilized)
    classification = classify_stage.classify(policy, stabilized)
    classified = with_classification(stabilized, classification, stable)
    summaries = tuple(
        ActionSummary(
            p.action, p.target, "dry_run" if v.allowed else "refused", v.message
        )
        for p, v in verdicts
    )
    started = first_signal_at or now
    brief = brief_stage.write_brief(
        policy,
        classified,
        classification,
        summaries,
        stable=stable.value,
        first_signal_at=started,
        now=now,
    )
    assessed = impact.assess(policy, classified, classification, ())
    impacted = with_impact(classified, assessed)
    customer = decide.decide(policy, decide.CUSTOMER_IMPACT, impacted)
    draft = (
        message.draft(
            policy,
            impacted,
            classification,
            assessed,
            started,
            stable=stable.value,
            org=str(impacted["org"].get("name", "")),
        )
        if customer.value
        else None
    )
    return DryRun(
        facts=impacted,
        intake=taken,
        plan=plan,
        verdicts=verdicts,
        stable=stable,
        classification=classification,
        brief=brief,
        impact=assessed,
        customer_impact=customer,
        message=draft,
        recommendations=recommend.recommend(policy, impacted),
    )
