"""inbound messages: replies, auto-replies, bounces and complaints, stored before they are matched and signalled

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(998)),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("source_key", sa.String(255), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sender_hash", sa.String(64)),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="SET NULL")),
        sa.Column("outbox_key", sa.String(200)),
        sa.Column("match_reason", sa.Text()),
        sa.Column("kind", sa.String(32)),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("return_date", sa.Date()),
        sa.Column("raw", sa.LargeBinary()),
        sa.Column("raw_size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("signalled_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("message_id", name="uq_inbound_messages_message_id"),
        sa.UniqueConstraint("source", "source_key", name="uq_inbound_messages_source_key"),
    )
    op.create_index("ix_inbound_messages_lead_id", "inbound_messages", ["lead_id"])
    op.create_index("ix_inbound_messages_sender_hash", "inbound_messages", ["sender_hash"])
    op.create_index("ix_inbound_messages_status", "inbound_messages", ["status", "received_at"])


def downgrade() -> None:
    op.drop_table("inbound_messages")
