"""The API's request and response models: what the OpenAPI document shows.

Request models refuse unknown fields, so a misspelt field is an error that
names it instead of a value silently ignored, and text no database can store
as sent. Response models are built
from store rows with ``from_attributes``; JSON documents the engine stores
(facts, outcomes, brief content) are passed through as objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.sources.alert import check_document

Json = dict[str, Any]


class Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Strict(BaseModel):
    """A request body: no unknown field, and text every database stores as
    sent (no NUL, no unpaired surrogate: E506), numbers finite (E507)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _storable(self) -> Strict:
        for name in type(self).model_fields:
            check_document(getattr(self, name), name)
        return self


# -- intake ------------------------------------------------------------------


class AcceptedOut(BaseModel):
    """What intake did with one alert."""

    status: Literal["opened", "folded", "resolved", "ignored", "replayed", "unmatched"]
    incident_id: str | None = None
    alert_id: str | None = None
    severity: str | None = None
    dedup_key: str | None = None


class IntakeOut(BaseModel):
    """The answer to an alert post: one entry per alert the body carried."""

    accepted: list[AcceptedOut]
    incident_ids: list[str] = Field(description="distinct incidents touched")
    test: bool = Field(default=False, description="a sender's test message")
    truncated: int = Field(
        default=0, description="alerts the sender cut from the group (not touched)"
    )


class DeployIn(Strict):
    """A deploy, rollback or configuration change, as CI reports it."""

    app: str = Field(min_length=1, max_length=128)
    version: str = Field(min_length=1, max_length=128)
    previous_version: str | None = Field(default=None, max_length=128)
    kind: Literal["deploy", "rollback", "config"] = "deploy"
    at: datetime | None = Field(default=None, description="when; now when absent")
    source: str = Field(default="api", min_length=1, max_length=64)


class DeployOut(Row):
    id: str
    app: str
    version: str
    previous_version: str | None
    kind: str
    at: datetime
    source: str


# -- incidents ---------------------------------------------------------------


class IncidentOut(Row):
    id: str
    title: str
    severity: str
    status: str
    type: str | None
    confidence: float | None
    dedup_key: str
    alert_count: int
    created_at: datetime
    updated_at: datetime
    first_signal_at: datetime
    last_alert_at: datetime
    stabilized_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    root_cause: str | None
    policy_version: str | None
    stage: str | None = Field(description="the next flow stage; null when idle")


class IncidentPageOut(BaseModel):
    items: list[IncidentOut]
    next_cursor: str | None = Field(description="pass as `after` for the next page")


class EventOut(Row):
    id: int
    at: datetime
    kind: str
    stage: str | None
    actor: str
    message: str
    data: Json


class AlertOut(Row):
    id: str
    source: str
    kind: str
    fingerprint: str
    status: str
    severity: str
    received_at: datetime
    starts_at: datetime | None
    facts: Json
    posted_snapshot: Json | None = Field(
        description="snapshot facts the source posted with the alert, if any"
    )


class SnapshotOut(Row):
    id: str
    taken_at: datetime
    purpose: str
    facts: Json
    provenance: Json
    durations: Json


class ActionOut(Row):
    id: str
    action: str
    target: str
    executor: str
    origin: str
    rule_id: str | None
    mode: str
    status: str
    guard_verdict: str | None
    refusal_code: str | None
    refusal_message: str | None
    command: list[Any]
    exit_status: int | None
    output_tail: str
    duration_ms: int | None
    verification: Json | None
    undo_of: str | None
    undone_at: datetime | None
    planned_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RuleMatchOut(Row):
    id: str
    stage: str
    policy_version: str
    rule_id: str
    file: str
    line: int
    selected: bool = Field(description="chosen by conflict resolution")
    facts_used: Json = Field(description="each condition's path and actual value")
    outcome: Json = Field(description="what the rule decided (its `then`)")
    evaluated_at: datetime


class BriefOut(Row):
    id: str
    created_at: datetime
    policy_version: str
    content: Json


class ImpactOut(Row):
    id: str
    assessed_at: datetime
    likely: bool
    level: str
    summary: str
    content: Json


class RecommendationOut(Row):
    id: str
    incident_id: str
    key: str
    text: str
    rationale: str
    risk: str
    action: str | None
    target: str | None
    status: str
    rule_id: str | None
    created_at: datetime
    expires_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None


class MessageOut(Row):
    id: str
    incident_id: str
    title: str
    body: str
    original_body: str | None
    tone: str
    channels: list[Any]
    status: str
    approvals_required: int
    template: str
    created_at: datetime
    decided_at: datetime | None


class ReviewOut(Row):
    id: str
    created_at: datetime
    flagged_for_review: bool
    content: Json


class ProposalOut(Row):
    id: str
    incident_id: str | None
    review_id: str | None
    kind: str
    file: str
    path: str
    old_value: Any
    new_value: Any
    diff: str
    evidence: Json
    status: str
    error: str | None
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class ApprovalOut(Row):
    id: str
    subject_type: str
    subject_id: str
    decision: str
    actor: str
    comment: str
    at: datetime


class IncidentDetailOut(BaseModel):
    """One incident with everything that hangs off it, oldest first."""

    incident: IncidentOut
    events: list[EventOut]
    alerts: list[AlertOut]
    snapshots: list[SnapshotOut]
    actions: list[ActionOut]
    rule_matches: list[RuleMatchOut]
    brief: BriefOut | None = Field(description="the latest decision brief")
    impact: ImpactOut | None = Field(description="the latest impact assessment")
    messages: list[MessageOut]
    recommendations: list[RecommendationOut]
    review: ReviewOut | None = Field(description="the learning review, once resolved")
    proposals: list[ProposalOut]
    approvals: list[ApprovalOut]


class DecisionIn(Strict):
    """A reviewer's decision; the comment is kept with who made it."""

    comment: str = Field(default="", max_length=2000)


class MessageEditIn(Strict):
    body: str = Field(min_length=1, max_length=4000)
    title: str | None = Field(default=None, max_length=200)


class ResolveIn(Strict):
    root_cause: str | None = Field(
        default=None, max_length=4000, description="null when it is not known"
    )
    category: str | None = Field(
        default=None,
        max_length=64,
        description="root-cause category (deploy, capacity, dependency...)",
    )


class ReplayIn(Strict):
    rules_dir: str | None = Field(
        default=None,
        description="a candidate rules directory on the server (admin); "
        "the running policy when absent",
    )


class Difference(BaseModel):
    field: str
    stored: Any
    replayed: Any


class ReplayOut(BaseModel):
    incident_id: str
    policy_version: str
    stored_policy_version: str | None
    replayed: Json = Field(description="what the policy decides for the facts now")
    stored: Json = Field(description="what the service decided and stored")
    differences: list[Difference]


# -- policy ------------------------------------------------------------------


class ProblemOut(BaseModel):
    code: str
    severity: str
    message: str
    file: str
    line: int
    column: int
    rule_id: str
    field: str


class PolicyStatusOut(BaseModel):
    version: str
    loaded_at: datetime | None
    directory: str
    ok: bool = Field(description="whether the last reload attempt succeeded")
    problems: list[ProblemOut] = Field(description="of the last failed reload")


class ValidateIn(Strict):
    """A candidate policy: a directory on the server, or the files themselves."""

    directory: str | None = Field(default=None, description="a path on the server")
    files: dict[str, str] | None = Field(
        default=None, description="file name -> text, e.g. {'classify.yaml': '...'}"
    )


class ValidateOut(BaseModel):
    ok: bool
    errors: int
    warnings: int
    files: int
    rules: int
    problems: list[ProblemOut]


class ExplainIn(Strict):
    facts: Json = Field(description="a facts document: alert, snapshot, incident...")
    stage: str | None = Field(default=None, description="only this stage")


class StageExplanationOut(BaseModel):
    stage: str
    note: str
    matched: list[str]
    outcome: Json
    rules: list[Json] = Field(description="each rule's verdict tree")


class ExplanationOut(BaseModel):
    policy_version: str
    stages: list[StageExplanationOut]


# -- keys ----------------------------------------------------------------------


class KeyIn(Strict):
    role: Literal["source", "reviewer", "admin"]
    name: str = Field(default="", max_length=128, description="the person or system")


class KeyOut(Row):
    id: str
    role: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedKeyOut(BaseModel):
    key: str = Field(description="the secret: shown this once, stored hashed")
    record: KeyOut


# -- operations ---------------------------------------------------------------


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str]
