"""former addresses: hashes of addresses leads had before a change (`forget` finds them); hand-overs closed

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "former_addresses",
        sa.Column("email_hash", sa.String(64), primary_key=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
    )
    # `forget` before this release left an erased lead's hand-over open, holding a place in its rep's capacity
    op.execute(
        "UPDATE assignments SET status = 'closed', closed_at = CURRENT_TIMESTAMP"
        " WHERE status IN ('assigned', 'waiting') AND lead_id IN (SELECT id FROM leads WHERE erased_at IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_table("former_addresses")
