"""The tables, as typed SQLAlchemy 2.0 models.

Every table is prefixed ``tms_`` and, except organizations, carries ``org_id``
so each query can be scoped to one organization. Ids are text made by the
injected id generator (``inc_...``), except events, whose integer id gives
the timeline its order. Constraints follow one naming convention so that
migrations name them the same on SQLite and PostgreSQL. Relationships load
nothing implicitly (``lazy="raise"``): the repositories say what they read.
Timeline events are append-only: a mapper guard refuses to flush a change to
an event or its removal.

The one constraint the service's correctness rests on is the partial unique
index ``uq_tms_incidents_open_dedup``: at most one incident per organization
and dedup key that is not resolved, so concurrent identical alerts can only
open one incident.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Mapper,
    mapped_column,
    object_session,
    relationship,
)

from engine.errors import StoreError
from engine.store.types import UTCDateTime, json_document

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = dict[str, Any]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UTCDateTime(),
        str: String(),
        Json: json_document(),
        list[Any]: json_document(),
    }


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class IncidentStatus(StrEnum):
    OPEN = "open"  # accepted, the flow has not run yet
    STABILIZING = "stabilizing"  # the flow is running its stages
    MONITORING = "monitoring"  # stable after the automatic actions
    AWAITING_APPROVAL = "awaiting_approval"  # not stable: a human must decide
    RESOLVED = "resolved"


class Role(StrEnum):
    SOURCE = "source"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class ActionStatus(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    DRY_RUN = "dry_run"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"


class ActionOrigin(StrEnum):
    STABILIZE = "stabilize"
    APPROVAL = "approval"
    UNDO = "undo"
    RECHECK = "recheck"


class RecommendationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    AUTO_EXECUTED = "auto_executed"


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    FAILED = "failed"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


def one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """A CHECK that ``column`` holds one of the enum's values."""
    listed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({listed})", name=f"{column}_valid")


def org_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("tms_organizations.id"))


def incident_fk() -> Mapped[str]:
    return mapped_column(ForeignKey("tms_incidents.id", ondelete="CASCADE"))


def by_incident(table: str, order: str) -> Index:
    """The index of the rows hanging off an incident, in their order.

    Both equality columns and the order are in it, so even SQLite without
    statistics picks it over any other index and needs no sort.
    """
    columns = ["org_id", "incident_id", order] + (["id"] if order != "id" else [])
    return Index(f"ix_{table}_incident", *columns)


class Organization(Base):
    __tablename__ = "tms_organizations"

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)
    auto_execute: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "tms_api_keys"
    __table_args__ = (one_of("role", Role),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("tms_organizations.id"), index=True)
    role: Mapped[str]
    name: Mapped[str] = mapped_column(default="")
    key_hash: Mapped[str] = mapped_column(unique=True)
    prefix: Mapped[str]  # the key's public start, to recognise it in lists
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Incident(Base):
    __tablename__ = "tms_incidents"
    __table_args__ = (
        one_of("severity", Severity),
        Index(
            "uq_tms_incidents_open_dedup",
            "org_id",
            "dedup_key",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
        Index("ix_tms_incidents_org_created", "org_id", "created_at", "id"),
        Index("ix_tms_incidents_org_status", "org_id", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    dedup_key: Mapped[str]
    title: Mapped[str]
    severity: Mapped[str]
    status: Mapped[str] = mapped_column(default=IncidentStatus.OPEN)
    type: Mapped[str | None]
    confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_signal_at: Mapped[datetime]
    stabilized_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None]
    alert_count: Mapped[int] = mapped_column(default=1)
    last_alert_at: Mapped[datetime]
    policy_version: Mapped[str | None]
    # The flow's checkpoint: the next stage to run; None once nothing is left.
    stage: Mapped[str | None]

    events: Mapped[list[IncidentEvent]] = relationship(
        lazy="raise", order_by="IncidentEvent.id", viewonly=True
    )
    alerts: Mapped[list[Alert]] = relationship(lazy="raise", viewonly=True)


class Alert(Base):
    __tablename__ = "tms_alerts"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        by_incident("tms_alerts", "received_at"),
        Index("ix_tms_alerts_org_fingerprint", "org_id", "fingerprint"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    source: Mapped[str]
    kind: Mapped[str]
    fingerprint: Mapped[str]
    status: Mapped[str] = mapped_column(default="firing")
    severity: Mapped[str]
    received_at: Mapped[datetime]
    starts_at: Mapped[datetime | None]
    payload: Mapped[Json]
    facts: Mapped[Json]  # the alert facts rules read as alert.*
    # Snapshot facts the source posted with the alert, checked against the
    # vocabulary; the flow lays them over what the collectors find.
    posted_snapshot: Mapped[Json | None]
    idempotency_key: Mapped[str | None]


class IncidentEvent(Base):
    """One step of an incident's timeline; rows are never changed."""

    __tablename__ = "tms_incident_events"
    __table_args__ = (by_incident("tms_incident_events", "id"),)

    # SQLite only autoincrements an INTEGER PRIMARY KEY.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    incident_id: Mapped[str] = incident_fk()
    org_id: Mapped[str] = org_fk()
    at: Mapped[datetime]
    kind: Mapped[str]  # dotted: incident.opened, alert.folded, stage.completed
    stage: Mapped[str | None]
    actor: Mapped[str]  # "system", "worker:<id>", a reviewer's name
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[Json] = mapped_column(default=dict)


class Snapshot(Base):
    __tablename__ = "tms_snapshots"
    __table_args__ = (by_incident("tms_snapshots", "taken_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    taken_at: Mapped[datetime]
    purpose: Mapped[str]  # initial, recheck, verify
    facts: Mapped[Json]
    provenance: Mapped[Json] = mapped_column(default=dict)
    durations: Mapped[Json] = mapped_column(default=dict)


class IncidentAction(Base):
    __tablename__ = "tms_incident_actions"
    __table_args__ = (
        one_of("origin", ActionOrigin),
        one_of("status", ActionStatus),
        by_incident("tms_incident_actions", "planned_at"),
        Index(
            "ix_tms_incident_actions_target", "org_id", "action", "target", "started_at"
        ),
        # The guards' history is host-wide (every organization's runs count),
        # and a batch of the flow reads several incidents' actions at once.
        Index("ix_tms_incident_actions_history", "action", "target", "started_at"),
        Index("ix_tms_incident_actions_status", "incident_id", "status"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    # One planned action, one run: the flow derives this key from what it plans.
    run_key: Mapped[str] = mapped_column(unique=True)
    action: Mapped[str]
    target: Mapped[str]
    executor: Mapped[str]
    origin: Mapped[str]
    rule_id: Mapped[str | None]
    mode: Mapped[str]
    status: Mapped[str] = mapped_column(default=ActionStatus.PLANNED)
    guard_verdict: Mapped[str | None]
    refusal_code: Mapped[str | None]
    refusal_message: Mapped[str | None] = mapped_column(Text)
    command: Mapped[list[Any]] = mapped_column(default=list)  # argv per step
    exit_status: Mapped[int | None]
    output_tail: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int | None]
    verification: Mapped[Json | None]
    undo_data: Mapped[Json | None]
    undo_of: Mapped[str | None] = mapped_column(
        ForeignKey("tms_incident_actions.id", ondelete="SET NULL")
    )
    undone_at: Mapped[datetime | None]
    planned_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class RuleMatch(Base):
    __tablename__ = "tms_rule_matches"
    __table_args__ = (by_incident("tms_rule_matches", "evaluated_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    stage: Mapped[str]
    policy_version: Mapped[str]
    rule_id: Mapped[str]
    file: Mapped[str]
    line: Mapped[int]
    selected: Mapped[bool] = mapped_column(Boolean)
    facts_used: Mapped[Json]
    outcome: Mapped[Json]
    evaluated_at: Mapped[datetime]


class Brief(Base):
    __tablename__ = "tms_briefs"
    __table_args__ = (by_incident("tms_briefs", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    created_at: Mapped[datetime]
    policy_version: Mapped[str]
    content: Mapped[Json]


class Impact(Base):
    __tablename__ = "tms_impacts"
    __table_args__ = (by_incident("tms_impacts", "assessed_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    assessed_at: Mapped[datetime]
    likely: Mapped[bool]
    level: Mapped[str]
    summary: Mapped[str] = mapped_column(Text, default="")
    content: Mapped[Json]


class Recommendation(Base):
    __tablename__ = "tms_recommendations"
    __table_args__ = (
        one_of("status", RecommendationStatus),
        Index("ix_tms_recommendations_org_status", "org_id", "status"),
        by_incident("tms_recommendations", "created_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    key: Mapped[str]  # the recommendation's id in recommend.yaml
    text: Mapped[str] = mapped_column(Text)
    rationale: Mapped[str] = mapped_column(Text, default="")
    risk: Mapped[str]
    action: Mapped[str | None]
    target: Mapped[str | None]
    status: Mapped[str] = mapped_column(default=RecommendationStatus.PENDING)
    rule_id: Mapped[str | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    decided_by: Mapped[str | None]
    decided_at: Mapped[datetime | None]


class CustomerMessage(Base):
    __tablename__ = "tms_customer_messages"
    __table_args__ = (
        CheckConstraint(
            "approvals_required IN (1, 2)", name="approvals_required_valid"
        ),
        by_incident("tms_customer_messages", "created_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    title: Mapped[str]
    body: Mapped[str] = mapped_column(Text)
    # The draft as the policy wrote it; ``body`` holds a reviewer's edits.
    original_body: Mapped[str | None] = mapped_column(Text)
    tone: Mapped[str]
    channels: Mapped[list[Any]]
    status: Mapped[str] = mapped_column(default="draft")
    approvals_required: Mapped[int] = mapped_column(default=1)
    template: Mapped[str]
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class Approval(Base):
    """A person's decision on a recommendation, message draft or proposal."""

    __tablename__ = "tms_approvals"
    __table_args__ = (
        # One vote per person and subject: a second approver must be another.
        UniqueConstraint("subject_type", "subject_id", "actor"),
        CheckConstraint("decision IN ('approved', 'rejected')", name="decision_valid"),
        Index("ix_tms_approvals_org_at", "org_id", "at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    subject_type: Mapped[str]  # recommendation, message, proposal
    subject_id: Mapped[str]
    decision: Mapped[str]
    actor: Mapped[str]
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]


class LearningReview(Base):
    __tablename__ = "tms_learning_reviews"
    __table_args__ = (by_incident("tms_learning_reviews", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str] = incident_fk()
    created_at: Mapped[datetime]
    content: Mapped[Json]
    flagged_for_review: Mapped[bool] = mapped_column(default=False)


class Proposal(Base):
    __tablename__ = "tms_proposals"
    __table_args__ = (
        one_of("status", ProposalStatus),
        Index("ix_tms_proposals_org_status", "org_id", "status"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str | None] = mapped_column(
        ForeignKey("tms_incidents.id", ondelete="SET NULL")
    )
    review_id: Mapped[str | None] = mapped_column(
        ForeignKey("tms_learning_reviews.id", ondelete="SET NULL")
    )
    kind: Mapped[str]  # threshold, rule
    file: Mapped[str]
    path: Mapped[str]
    # Any JSON value: a threshold is a number, a rule a mapping.
    old_value: Mapped[Any] = mapped_column(json_document(), nullable=True)
    new_value: Mapped[Any] = mapped_column(json_document(), nullable=True)
    diff: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[Json] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(default=ProposalStatus.PENDING)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    decided_by: Mapped[str | None]
    decided_at: Mapped[datetime | None]


class Deploy(Base):
    __tablename__ = "tms_deploys"
    __table_args__ = (Index("ix_tms_deploys_org_app_at", "org_id", "app", "at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    app: Mapped[str]
    version: Mapped[str]
    previous_version: Mapped[str | None]
    kind: Mapped[str]  # deploy, rollback, config
    at: Mapped[datetime]
    source: Mapped[str]


class Job(Base):
    """One unit of durable work; workers claim it under a lease."""

    __tablename__ = "tms_jobs"
    __table_args__ = (
        one_of("status", JobStatus),
        Index("ix_tms_jobs_claim", "status", "run_after"),
        Index("ix_tms_jobs_incident", "incident_id", "kind", "status"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    org_id: Mapped[str] = org_fk()
    incident_id: Mapped[str | None] = mapped_column(
        ForeignKey("tms_incidents.id", ondelete="CASCADE")
    )
    kind: Mapped[str]  # flow, execute, learn, undo
    payload: Mapped[Json] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(default=JobStatus.QUEUED)
    run_after: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None]
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


APPEND_ONLY = "E706"


@event.listens_for(IncidentEvent, "before_update")
def _refuse_event_update(
    _mapper: Mapper[IncidentEvent], _conn: Connection, target: IncidentEvent
) -> None:
    session = object_session(target)
    if session is None or session.is_modified(target, include_collections=False):
        _refuse_change(target, "changed")


@event.listens_for(IncidentEvent, "before_delete")
def _refuse_event_delete(
    _mapper: Mapper[IncidentEvent], _conn: Connection, target: IncidentEvent
) -> None:
    _refuse_change(target, "deleted")


def _refuse_change(target: IncidentEvent, verb: str) -> None:
    raise StoreError(
        f"timeline event {target.id} of incident {target.incident_id} cannot be "
        f"{verb}: the timeline is append-only; append a correcting event instead",
        code=APPEND_ONLY,
    )
