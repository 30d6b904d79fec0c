"""disposition outcomes: what a rep's decision led to as data (action, recycled cadence, stage), read back from the
recorded words for the rows written before

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from leadloop.domain.outcomes import outcome_from_text

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

dispositions = sa.table(
    "dispositions",
    sa.column("key", sa.String()),
    sa.column("action", sa.String()),
    sa.column("outcome", sa.Text()),
    sa.column("outcome_action", sa.String()),
    sa.column("outcome_cadence", sa.String()),
    sa.column("outcome_stage", sa.String()),
)


def upgrade() -> None:
    # "other" until read: a row written without an outcome is one nobody can say anything about
    op.add_column("dispositions", sa.Column("outcome_action", sa.String(16), nullable=False, server_default="other"))
    op.add_column("dispositions", sa.Column("outcome_cadence", sa.String(64), nullable=True))
    op.add_column("dispositions", sa.Column("outcome_stage", sa.String(16), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(dispositions.c.key, dispositions.c.action, dispositions.c.outcome)).all()
    values = []
    for key, action, words in rows:
        outcome = outcome_from_text(action, words)
        values.append({"k": key, "a": outcome.action, "c": outcome.cadence, "s": outcome.stage})
    if values:
        connection.execute(
            dispositions.update()
            .where(dispositions.c.key == sa.bindparam("k"))
            .values(
                outcome_action=sa.bindparam("a"), outcome_cadence=sa.bindparam("c"), outcome_stage=sa.bindparam("s")
            ),
            values,
        )


def downgrade() -> None:
    with op.batch_alter_table("dispositions") as batch:
        batch.drop_column("outcome_stage")
        batch.drop_column("outcome_cadence")
        batch.drop_column("outcome_action")
