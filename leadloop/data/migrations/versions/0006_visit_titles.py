"""visit titles: the page title the site beacon reports with a page view, shown to the rep beside its path

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("engagement_events", sa.Column("title", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("engagement_events", "title")
