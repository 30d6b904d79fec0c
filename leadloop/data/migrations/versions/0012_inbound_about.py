"""inbound messages: the hash of the address a bounce or complaint is about, so `leadloop forget` finds it unmatched

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # rows stored before this have none; `forget_inbound` reads those rows' addresses from their body and evidence
    op.add_column("inbound_messages", sa.Column("about_hash", sa.String(64), nullable=True))
    op.create_index("ix_inbound_messages_about_hash", "inbound_messages", ["about_hash"])


def downgrade() -> None:
    op.drop_index("ix_inbound_messages_about_hash", table_name="inbound_messages")
    op.drop_column("inbound_messages", "about_hash")
