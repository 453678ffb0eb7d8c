"""The first schema: every tms_ table of the service.

Revision 99c76c5c26e3, the root of the history, written 2026-12-04.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from engine.store.types import UTCDateTime

revision: str = "99c76c5c26e3"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "tms_organizations",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("auto_execute", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_organizations")),
        sa.UniqueConstraint("name", name=op.f("uq_tms_organizations_name")),
    )
    op.create_table(
        "tms_api_keys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("prefix", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('source', 'reviewer', 'admin')",
            name=op.f("ck_tms_api_keys_role_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_api_keys_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_tms_api_keys_key_hash")),
    )
    op.create_index(
        op.f("ix_tms_api_keys_org_id"), "tms_api_keys", ["org_id"], unique=False
    )

    op.create_table(
        "tms_approvals",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("subject_type", sa.String(), nullable=False),
        sa.Column("subject_id", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('approved', 'rejected')",
            name=op.f("ck_tms_approvals_decision_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_approvals_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_approvals")),
        sa.UniqueConstraint(
            "subject_type",
            "subject_id",
            "actor",
            name=op.f("uq_tms_approvals_subject_type_subject_id_actor"),
        ),
    )
    op.create_index(
        "ix_tms_approvals_org_at", "tms_approvals", ["org_id", "at"], unique=False
    )

    op.create_table(
        "tms_deploys",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("app", sa.String(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("previous_version", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_deploys_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_deploys")),
    )
    op.create_index(
        "ix_tms_deploys_org_app_at",
        "tms_deploys",
        ["org_id", "app", "at"],
        unique=False,
    )

    op.create_table(
        "tms_incidents",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("dedup_key", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("first_signal_at", UTCDateTime(), nullable=False),
        sa.Column("stabilized_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.String(), nullable=True),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("last_alert_at", UTCDateTime(), nullable=False),
        sa.Column("policy_version", sa.String(), nullable=True),
        sa.Column("stage", sa.String(), nullable=True),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')",
            name=op.f("ck_tms_incidents_severity_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_incidents_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_incidents")),
    )
    op.create_index(
        "ix_tms_incidents_org_created",
        "tms_incidents",
        ["org_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tms_incidents_org_status",
        "tms_incidents",
        ["org_id", "status", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_tms_incidents_open_dedup",
        "tms_incidents",
        ["org_id", "dedup_key"],
        unique=True,
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    )

    op.create_table(
        "tms_alerts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=True),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("facts", JSON_DOC, nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_alerts_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_alerts_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_alerts")),
        sa.UniqueConstraint(
            "org_id",
            "idempotency_key",
            name=op.f("uq_tms_alerts_org_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_tms_alerts_incident",
        "tms_alerts",
        ["org_id", "incident_id", "received_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tms_alerts_org_fingerprint",
        "tms_alerts",
        ["org_id", "fingerprint"],
        unique=False,
    )

    op.create_table(
        "tms_briefs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("policy_version", sa.String(), nullable=False),
        sa.Column("content", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_briefs_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_briefs_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_briefs")),
    )
    op.create_index(
        "ix_tms_briefs_incident",
        "tms_briefs",
        ["org_id", "incident_id", "created_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_customer_messages",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("original_body", sa.Text(), nullable=True),
        sa.Column("tone", sa.String(), nullable=False),
        sa.Column("channels", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("approvals_required", sa.Integer(), nullable=False),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "approvals_required IN (1, 2)",
            name=op.f("ck_tms_customer_messages_approvals_required_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_customer_messages_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_customer_messages_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_customer_messages")),
    )
    op.create_index(
        "ix_tms_customer_messages_incident",
        "tms_customer_messages",
        ["org_id", "incident_id", "created_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_impacts",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("assessed_at", UTCDateTime(), nullable=False),
        sa.Column("likely", sa.Boolean(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("content", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_impacts_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_impacts_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_impacts")),
    )
    op.create_index(
        "ix_tms_impacts_incident",
        "tms_impacts",
        ["org_id", "incident_id", "assessed_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_incident_actions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("run_key", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("executor", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("rule_id", sa.String(), nullable=True),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("guard_verdict", sa.String(), nullable=True),
        sa.Column("refusal_code", sa.String(), nullable=True),
        sa.Column("refusal_message", sa.Text(), nullable=True),
        sa.Column("command", JSON_DOC, nullable=False),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("verification", JSON_DOC, nullable=True),
        sa.Column("undo_data", JSON_DOC, nullable=True),
        sa.Column("undo_of", sa.String(), nullable=True),
        sa.Column("undone_at", UTCDateTime(), nullable=True),
        sa.Column("planned_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "origin IN ('stabilize', 'approval', 'undo', 'recheck')",
            name=op.f("ck_tms_incident_actions_origin_valid"),
        ),
        sa.CheckConstraint(
            "status IN ('planned', 'running', 'succeeded', 'failed', 'refused',"
            " 'dry_run', 'skipped', 'interrupted')",
            name=op.f("ck_tms_incident_actions_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_incident_actions_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_incident_actions_org_id_tms_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["undo_of"],
            ["tms_incident_actions.id"],
            name=op.f("fk_tms_incident_actions_undo_of_tms_incident_actions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_incident_actions")),
        sa.UniqueConstraint("run_key", name=op.f("uq_tms_incident_actions_run_key")),
    )
    op.create_index(
        "ix_tms_incident_actions_incident",
        "tms_incident_actions",
        ["org_id", "incident_id", "planned_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tms_incident_actions_target",
        "tms_incident_actions",
        ["org_id", "action", "target", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_tms_incident_actions_history",
        "tms_incident_actions",
        ["action", "target", "started_at"],
        unique=False,
    )
    op.create_index(
        "ix_tms_incident_actions_status",
        "tms_incident_actions",
        ["incident_id", "status"],
        unique=False,
    )

    op.create_table(
        "tms_incident_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_incident_events_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_incident_events_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_incident_events")),
    )
    op.create_index(
        "ix_tms_incident_events_incident",
        "tms_incident_events",
        ["org_id", "incident_id", "id"],
        unique=False,
    )

    op.create_table(
        "tms_jobs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_tms_jobs_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_jobs_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_jobs_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_jobs")),
    )
    op.create_index(
        "ix_tms_jobs_claim", "tms_jobs", ["status", "run_after"], unique=False
    )
    op.create_index(
        "ix_tms_jobs_incident",
        "tms_jobs",
        ["incident_id", "kind", "status"],
        unique=False,
    )

    op.create_table(
        "tms_learning_reviews",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("content", JSON_DOC, nullable=False),
        sa.Column("flagged_for_review", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_learning_reviews_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_learning_reviews_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_learning_reviews")),
    )
    op.create_index(
        "ix_tms_learning_reviews_incident",
        "tms_learning_reviews",
        ["org_id", "incident_id", "created_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_recommendations",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column("risk", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("rule_id", sa.String(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'expired', 'executed',"
            " 'auto_executed')",
            name=op.f("ck_tms_recommendations_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_recommendations_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_recommendations_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_recommendations")),
    )
    op.create_index(
        "ix_tms_recommendations_incident",
        "tms_recommendations",
        ["org_id", "incident_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_tms_recommendations_org_status",
        "tms_recommendations",
        ["org_id", "status"],
        unique=False,
    )

    op.create_table(
        "tms_rule_matches",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("policy_version", sa.String(), nullable=False),
        sa.Column("rule_id", sa.String(), nullable=False),
        sa.Column("file", sa.String(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("facts_used", JSON_DOC, nullable=False),
        sa.Column("outcome", JSON_DOC, nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_rule_matches_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_rule_matches_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_rule_matches")),
    )
    op.create_index(
        "ix_tms_rule_matches_incident",
        "tms_rule_matches",
        ["org_id", "incident_id", "evaluated_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_snapshots",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=False),
        sa.Column("taken_at", UTCDateTime(), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("facts", JSON_DOC, nullable=False),
        sa.Column("provenance", JSON_DOC, nullable=False),
        sa.Column("durations", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_snapshots_incident_id_tms_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_snapshots_org_id_tms_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_snapshots")),
    )
    op.create_index(
        "ix_tms_snapshots_incident",
        "tms_snapshots",
        ["org_id", "incident_id", "taken_at", "id"],
        unique=False,
    )

    op.create_table(
        "tms_proposals",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("org_id", sa.String(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("review_id", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("file", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("old_value", JSON_DOC, nullable=True),
        sa.Column("new_value", JSON_DOC, nullable=True),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("evidence", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'rejected', 'failed')",
            name=op.f("ck_tms_proposals_status_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["tms_incidents.id"],
            name=op.f("fk_tms_proposals_incident_id_tms_incidents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["tms_organizations.id"],
            name=op.f("fk_tms_proposals_org_id_tms_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["tms_learning_reviews.id"],
            name=op.f("fk_tms_proposals_review_id_tms_learning_reviews"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tms_proposals")),
    )
    op.create_index(
        "ix_tms_proposals_org_status",
        "tms_proposals",
        ["org_id", "status"],
        unique=False,
    )


def downgrade() -> None:
    # Indexes and constraints go with their tables.
    op.drop_table("tms_proposals")
    op.drop_table("tms_snapshots")
    op.drop_table("tms_rule_matches")
    op.drop_table("tms_recommendations")
    op.drop_table("tms_learning_reviews")
    op.drop_table("tms_jobs")
    op.drop_table("tms_incident_events")
    op.drop_table("tms_incident_actions")
    op.drop_table("tms_impacts")
    op.drop_table("tms_customer_messages")
    op.drop_table("tms_briefs")
    op.drop_table("tms_alerts")
    op.drop_table("tms_incidents")
    op.drop_table("tms_deploys")
    op.drop_table("tms_approvals")
    op.drop_table("tms_api_keys")
    op.drop_table("tms_organizations")
