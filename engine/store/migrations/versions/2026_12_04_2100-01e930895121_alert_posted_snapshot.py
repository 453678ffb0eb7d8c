"""Alerts keep the snapshot facts they posted in a column of their own.

Until now they rode inside the alert facts as ``posted_snapshot``, which the
facts vocabulary does not know: a reviewer who copied an alert's stored facts
into ``rules explain`` got a vocabulary error. Existing rows are moved.

Revision 01e930895121, written 2026-12-04.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "01e930895121"
down_revision: str | None = "99c76c5c26e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Move the posted snapshot out of the facts, then back, in each dialect's own
# JSON functions, so a large table moves in one statement.
UP = {
    "postgresql": (
        "UPDATE tms_alerts SET posted_snapshot = facts -> 'posted_snapshot', "
        "facts = facts - 'posted_snapshot' WHERE facts ? 'posted_snapshot'"
    ),
    "sqlite": (
        "UPDATE tms_alerts SET posted_snapshot = json_extract(facts, "
        "'$.posted_snapshot'), facts = json_remove(facts, '$.posted_snapshot') "
        "WHERE json_type(facts, '$.posted_snapshot') IS NOT NULL"
    ),
}
DOWN = {
    "postgresql": (
        "UPDATE tms_alerts SET facts = jsonb_set(facts, '{posted_snapshot}', "
        "posted_snapshot) WHERE posted_snapshot IS NOT NULL"
    ),
    "sqlite": (
        "UPDATE tms_alerts SET facts = json_set(facts, '$.posted_snapshot', "
        "json(posted_snapshot)) WHERE posted_snapshot IS NOT NULL"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("tms_alerts") as table:
        table.add_column(sa.Column("posted_snapshot", JSON_DOC, nullable=True))
    op.execute(UP[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute(DOWN[op.get_bind().dialect.name])
    with op.batch_alter_table("tms_alerts") as table:
        table.drop_column("posted_snapshot")
