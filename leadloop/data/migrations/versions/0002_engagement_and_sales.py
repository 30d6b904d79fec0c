"""engagement events, teams, reps and assignments

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engagement_events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("human", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outbox_key", sa.String(200)),
        sa.Column("url", sa.Text()),
        sa.Column("user_agent", sa.Text()),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("signalled_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_engagement_events_lead_id", "engagement_events", ["lead_id"])
    op.create_index("ix_engagement_events_outbox_key", "engagement_events", ["outbox_key"])
    op.create_index("ix_engagement_events_pending", "engagement_events", ["status", "lead_id"])
    op.create_table(
        "teams",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("sla_seconds", sa.Integer(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("manager_name", sa.String(200)),
        sa.Column("manager_email", sa.String(320)),
        sa.Column("last_rep_id", sa.Integer()),
    )
    op.create_table(
        "reps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("team", sa.String(64), sa.ForeignKey("teams.name", ondelete="CASCADE"), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("email", name="uq_reps_email"),
    )
    op.create_index("ix_reps_team", "reps", ["team"])
    op.create_table(
        "assignments",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("rep_id", sa.Integer(), sa.ForeignKey("reps.id", ondelete="SET NULL")),
        sa.Column("team", sa.String(64)),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer()),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_assignments_lead_id", "assignments", ["lead_id"])
    op.create_index("ix_assignments_rep_id", "assignments", ["rep_id"])
    op.create_index("ix_assignments_status", "assignments", ["status"])


def downgrade() -> None:
    op.drop_table("assignments")
    op.drop_table("reps")
    op.drop_table("teams")
    op.drop_table("engagement_events")
