"""The decision brief: what a human reads first.

A one-or-two-line summary (from ``brief.yaml``'s ``summary`` template), the
time window from the first signal to now, the automatic actions and their
effect, the current state read off the latest snapshot, and the
recommendation and risk-if-nothing-is-done of the highest-priority matching
rule (quantified by the templates where the facts allow: minutes until the
disk is full, memory growth per minute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from engine.flow.outcomes import ActionSummary, Brief, ClassifyOutcome
from engine.policy.policy import Policy
from engine.policy.resolve import first_per_field
from engine.policy.verdicts import lookup

BUILT_IN_SUMMARY = "{{ type_label | capitalize }}: {{ incident.severity }} incident."
BUILT_IN_DEFAULTS = {
    "recommendation": "Look at the snapshot and the rule matches.",
    "risk": "Unknown: no rule estimated the risk of this situation.",
}


def write_brief(
    policy: Policy,
    facts: Mapping[str, Any],
    classification: ClassifyOutcome,
    actions: Sequence[ActionSummary],
    *,
    stable: bool,
    first_signal_at: datetime,
    now: datetime,
) -> Brief:
    window = max((now - first_signal_at).total_seconds() / 60, 0.0)
    context = {
        **facts,
        "type_label": classification.label,
        "evidence": evidence_text(classification.evidence),
        "actions": [a.__dict__ for a in actions],
        "stable": stable,
        "window_minutes": round(window, 1),
    }
    evaluation = policy.evaluate("brief", context)
    document = policy.source.documents.get("brief", {})
    defaults = {**BUILT_IN_DEFAULTS, **document.get("defaults", {})}
    values, origin = first_per_field(
        evaluation.matches, defaults, ("recommendation", "risk")
    )
    return Brief(
        summary=policy.render(document.get("summary", BUILT_IN_SUMMARY), context),
        window_start=first_signal_at.isoformat(),
        window_end=now.isoformat(),
        window_minutes=round(window, 1),
        actions=tuple(actions),
        current_state=current_state(facts.get("snapshot", {})),
        recommendation=policy.render(str(values["recommendation"]), context),
        risk=policy.render(str(values["risk"]), context),
        rules=origin,
        evaluation=evaluation,
    )


def evidence_text(evidence: Mapping[str, Any]) -> str:
    """``snapshot.memory.percent = 97`` pairs as a short sentence."""
    parts = [
        f"{path.removeprefix('snapshot.')} = {_show(value)}"
        for path, value in evidence.items()
        if value is not None
    ]
    return ", ".join(parts[:4])


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


STATE_PARTS = (
    ("memory.percent", "memory {:g} %"),
    ("disk.max_percent", "disk {:g} %"),
    ("http.error_rate", "5xx {:.1%}"),
    ("http.p95_latency_ms", "p95 {:g} ms"),
    ("upstream.failure_rate", "upstream failures {:.1%}"),
)


def current_state(snapshot: Mapping[str, Any]) -> str:
    """The latest snapshot in one line: only what was observed."""
    parts = []
    for path, form in STATE_PARTS:
        value = lookup(snapshot, path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(form.format(value))
    pm2 = snapshot.get("pm2") or {}
    if isinstance(pm2.get("total"), int):
        parts.append(f"PM2 {pm2.get('online', 0)}/{pm2['total']} online")
    for name in ("pm2", "nginx", "http"):
        section = snapshot.get(name) or {}
        if section.get("available") is False:
            parts.append(f"{name} not observed ({section.get('error', 'unavailable')})")
    return "; ".join(parts) or "nothing observed"
