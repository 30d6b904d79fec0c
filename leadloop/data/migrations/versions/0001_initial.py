"""leads, outbox and suppressions

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("company", sa.String(300)),
        sa.Column("title", sa.String(300)),
        sa.Column("industry", sa.String(200)),
        sa.Column("company_size", sa.String(50)),
        sa.Column("country", sa.String(100)),
        sa.Column("region", sa.String(100)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("locale", sa.String(16)),
        sa.Column("product_interest", sa.String(200)),
        sa.Column("owner", sa.String(320)),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("cadence", sa.String(64)),
        sa.Column("bounced_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("email", name="uq_leads_email"),
    )
    op.create_table(
        "outbox",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("cadence", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("subject", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("lead_id", "cycle", "step_id", name="uq_outbox_lead_cycle_step"),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_lead_id", "outbox", ["lead_id"])
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_table(
        "suppressions",
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_outbox_status", "outbox")
    op.drop_index("ix_outbox_lead_id", "outbox")
    op.drop_table("outbox")
    op.drop_table("leads")
