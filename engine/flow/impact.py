"""Customer impact: who is hit, how badly, for how long.

Affected features are the per-feature rates of the access log
(``snapshot.http.features``, routes from ``features.yaml``) at or above the
warning error rate; the incident is customer-facing when one of them is, not
customer-facing when features were observed and none is affected and the
overall rate is low, and unknown otherwise. Customers affected are the
distinct customers that saw an error. The level comes from the impact rules
(highest level wins). The downtime estimate is the median time to resolve of
past incidents of the same type in the organization, else the file's default
for the type.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from engine.flow.outcomes import ClassifyOutcome, Impact
from engine.policy import resolve
from engine.policy.policy import Policy
from engine.policy.verdicts import lookup

DEFAULT_WARNING_RATE = 0.05
DEFAULT_DOWNTIME = 60.0


def pre_facts(policy: Policy, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The ``impact`` facts the impact rules read, before the level."""
    warning = policy.source.thresholds.values.get(
        "http.error_rate_warning", DEFAULT_WARNING_RATE
    )
    features = lookup(facts, "snapshot.http.features") or []
    affected = [
        f
        for f in features
        if isinstance(f.get("error_rate"), int | float) and f["error_rate"] >= warning
    ]
    overall = lookup(facts, "snapshot.http.error_rate")
    customer_facing: bool | None = None
    if affected:
        customer_facing = any(f.get("customer_facing") for f in affected)
    elif features and isinstance(overall, int | float) and overall < warning:
        customer_facing = False
    return {
        "customer_facing": customer_facing,
        "customers_affected": lookup(facts, "snapshot.http.customers_with_errors"),
        "features": [f["name"] for f in affected if f.get("customer_facing")],
    }


def assess(
    policy: Policy,
    facts: Mapping[str, Any],
    classification: ClassifyOutcome,
    resolve_minutes: Sequence[float],
) -> Impact:
    impact = pre_facts(policy, facts)
    evaluation = policy.evaluate("impact", {**facts, "impact": impact})
    level, rule_id = resolve.impact_level(evaluation)
    minutes, basis = downtime(policy, classification.type, evaluation, resolve_minutes)
    return Impact(
        level=level,
        customer_facing=impact["customer_facing"],
        customers_affected=impact["customers_affected"],
        features=tuple(impact["features"]),
        downtime_minutes=minutes,
        downtime_basis=basis,
        rule_id=rule_id,
        evaluation=evaluation,
    )


def downtime(
    policy: Policy,
    type_: str,
    evaluation: Any,
    resolve_minutes: Sequence[float],
) -> tuple[float, str]:
    if resolve_minutes:
        median = statistics.median(resolve_minutes)
        return round(
            median, 1
        ), f"median of {len(resolve_minutes)} past {type_} incidents"
    for match in evaluation.matches:
        if "downtime_minutes" in match.then:
            return float(match.then["downtime_minutes"]), f"rule {match.rule.id}"
    table = policy.source.documents.get("impact", {}).get("downtime_minutes", {})
    value = table.get(type_, table.get("unknown", DEFAULT_DOWNTIME))
    return float(value), f"default for {type_} (no history)"


def as_facts(impact: Impact) -> dict[str, Any]:
    return {
        "level": impact.level,
        "customer_facing": impact.customer_facing,
        "customers_affected": impact.customers_affected,
        "features": list(impact.features),
    }
