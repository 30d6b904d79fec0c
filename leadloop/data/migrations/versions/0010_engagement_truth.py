"""engagement truth: each event's confidence, machine class and evidence; clicks confirmed by the landing page;
the number of tracked links in each email

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("engagement_events") as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
        batch.add_column(sa.Column("machine_class", sa.String(16), nullable=True))
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("confirms", sa.String(64), nullable=True))
    op.create_index("ix_engagement_events_confirms", "engagement_events", ["confirms"])
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("tracked_links", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("tracked_links")
    op.drop_index("ix_engagement_events_confirms", table_name="engagement_events")
    with op.batch_alter_table("engagement_events") as batch:
        batch.drop_column("confirms")
        batch.drop_column("confirmed_at")
        batch.drop_column("evidence")
        batch.drop_column("machine_class")
        batch.drop_column("confidence")
