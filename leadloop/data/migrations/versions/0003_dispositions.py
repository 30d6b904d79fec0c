"""dispositions: every rep decision on a lead

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispositions",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("rep_id", sa.Integer(), sa.ForeignKey("reps.id", ondelete="SET NULL")),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32)),
        sa.Column("note", sa.Text()),
        sa.Column("opportunity_id", sa.String(200)),
        sa.Column("outcome", sa.Text()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dispositions_lead_id", "dispositions", ["lead_id"])
    op.create_index("ix_dispositions_reason", "dispositions", ["reason"])


def downgrade() -> None:
    op.drop_table("dispositions")
