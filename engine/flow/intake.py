"""Intake: what an incoming alert becomes (severity, title, dedup key).

The intake rules (``rules/intake.yaml``) override the file's defaults field by
field, highest priority first. The title and dedup key are templates rendered
with the alert's facts. ``watch_alerts`` turns the host's own snapshot into
alerts with the ``watch`` rules, for the watcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.flow.outcomes import IntakeOutcome, WatchAlert
from engine.policy.policy import Policy
from engine.policy.resolve import first_per_field

BUILT_IN_DEFAULTS = {
    "severity": "warning",
    "title": "{{ alert.name or alert.kind }}",
    "dedup_key": (
        "{{ alert.fingerprint or (alert.source ~ ':' ~ (alert.name or alert.kind)) }}"
    ),
    "ignore": False,
}
FIELDS = ("severity", "title", "dedup_key", "ignore")
MAX_TITLE = 500


def assess_alert(policy: Policy, facts: Mapping[str, Any]) -> IntakeOutcome:
    evaluation = policy.evaluate("intake", facts)
    configured = policy.source.documents.get("intake", {}).get("defaults", {})
    defaults = {**BUILT_IN_DEFAULTS, **configured}
    values, origin = first_per_field(evaluation.matches, defaults, FIELDS)
    kind = (facts.get("alert") or {}).get("kind") or "alert"
    title = policy.render(str(values["title"]), facts) or str(kind)
    dedup_key = policy.render(str(values["dedup_key"]), facts) or title
    return IntakeOutcome(
        severity=str(values["severity"]),
        title=title[:MAX_TITLE],
        dedup_key=dedup_key[:MAX_TITLE],
        ignore=bool(values["ignore"]),
        rules=origin,
        evaluation=evaluation,
    )


def watch_alerts(policy: Policy, facts: Mapping[str, Any]) -> list[WatchAlert]:
    """The alerts the host's own snapshot raises, one per matching rule."""
    evaluation = policy.evaluate("watch", facts)
    alerts = []
    for match in evaluation.matches:
        spec = match.then["alert"]
        alerts.append(
            WatchAlert(
                rule_id=match.rule.id,
                kind=str(spec["kind"]),
                name=policy.render(str(spec["name"]), facts),
                severity=str(spec.get("severity", "warning")),
                summary=policy.render(str(spec.get("summary", spec["name"])), facts),
            )
        )
    return alerts
