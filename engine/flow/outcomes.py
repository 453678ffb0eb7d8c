"""The typed outcome of each stage of the flow.

Stages decide; the runner stores. Every outcome below is plain data that the
runner writes to its table and to the timeline, that ``replay`` prints, and
that ``rules test`` compares with a case's expectations. Each carries the
``Evaluation`` it came from, so the rule matches can be audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.policy.model import Evaluation

TYPE_LABELS: Mapping[str, str] = {
    "memory_exhaustion": "memory exhaustion",
    "disk_pressure": "disk pressure",
    "upload_spike": "upload spike",
    "bad_deploy": "bad deploy",
    "dependency_outage": "dependency outage",
    "network_issue": "network issue",
    "unknown": "unclassified incident",
}

CUSTOMER_PROBLEMS: Mapping[str, str] = {
    "memory_exhaustion": "some requests are failing or slow",
    "disk_pressure": "some requests are failing",
    "upload_spike": "uploads are slow or failing",
    "bad_deploy": "some features are failing after an update",
    "dependency_outage": "some features that rely on a partner service are failing",
    "network_issue": "the service is unreachable or slow for some customers",
    "unknown": "some customers may see errors",
}
"""What customers notice, in words safe for a status page."""


@dataclass(frozen=True)
class Decision:
    name: str
    value: bool
    rule_id: str  # the rule that decided, or "default"
    evaluation: Evaluation | None = None


@dataclass(frozen=True)
class IntakeOutcome:
    severity: str
    title: str
    dedup_key: str
    ignore: bool
    rules: Mapping[str, str]  # field: rule id ("default")
    evaluation: Evaluation


@dataclass(frozen=True)
class WatchAlert:
    rule_id: str
    kind: str
    name: str
    severity: str
    summary: str


@dataclass(frozen=True)
class PlannedAction:
    action: str
    target: str
    rule_id: str
    item: Mapping[str, Any] | None = None  # the fact item it targets (a PM2 process)


@dataclass(frozen=True)
class StabilizePlan:
    actions: tuple[PlannedAction, ...]
    evaluation: Evaluation


@dataclass(frozen=True)
class ClassifyOutcome:
    type: str
    confidence: float
    rule_id: str | None
    evidence: Mapping[str, Any]
    others: tuple[str, ...]
    evaluation: Evaluation

    @property
    def label(self) -> str:
        return TYPE_LABELS.get(self.type, self.type)


@dataclass(frozen=True)
class ActionSummary:
    """What the brief says about one action that ran (or was refused)."""

    action: str
    target: str
    status: str
    effect: str = ""


@dataclass(frozen=True)
class Brief:
    summary: str
    window_start: str  # ISO time of the first signal
    window_end: str
    window_minutes: float
    actions: tuple[ActionSummary, ...]
    current_state: str
    recommendation: str
    risk: str
    rules: Mapping[str, str]
    evaluation: Evaluation


@dataclass(frozen=True)
class Impact:
    level: str
    customer_facing: bool | None  # None: not known from the facts
    customers_affected: int | None
    features: tuple[str, ...]
    downtime_minutes: float
    downtime_basis: str  # "history (n incidents)" or "default for <type>"
    rule_id: str | None
    evaluation: Evaluation


@dataclass(frozen=True)
class MessageDraft:
    title: str
    body: str
    tone: str
    channels: tuple[str, ...]
    approvals_required: int
    template: str
    rule_id: str
    evaluation: Evaluation


@dataclass(frozen=True)
class Recommendation:
    id: str
    text: str
    rationale: str
    risk: str
    action: str | None
    target: str | None
    rule_id: str
    auto: Decision | None = None  # decision 3 for this recommendation


@dataclass(frozen=True)
class RecommendOutcome:
    recommendations: tuple[Recommendation, ...]
    evaluation: Evaluation


@dataclass(frozen=True)
class Proposal:
    threshold: str
    old_value: Any
    new_value: Any
    reason: str
    rule_id: str


@dataclass(frozen=True)
class Review:
    root_cause: str | None
    root_cause_identified: Decision
    flagged_for_review: bool
    timeline: tuple[Mapping[str, Any], ...]
    prevention: tuple[str, ...]
    alert_improvements: tuple[str, ...]
    automation: tuple[str, ...]
    ux: tuple[str, ...]
    proposals: tuple[Proposal, ...]
    facts: Mapping[str, Any] = field(default_factory=dict)  # the review facts
    evaluation: Evaluation | None = None
