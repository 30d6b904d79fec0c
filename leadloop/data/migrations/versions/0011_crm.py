"""the CRM's side: external ids, tags, goals, lifecycle events and their webhooks, scoped API keys, segments,
keep-in-touch dates on dispositions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # a unique index, not a constraint: on SQLite a constraint would rebuild `leads`, and dropping the old table
    # would cascade to every row that points at it
    op.add_column("leads", sa.Column("external_id", sa.String(200), nullable=True))
    op.create_index("uq_leads_external_id", "leads", ["external_id"], unique=True)
    op.add_column("dispositions", sa.Column("recontact_on", sa.Date(), nullable=True))
    op.create_table(
        "lead_tags",
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(40), primary_key=True),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_lead_tags_tag", "lead_tags", ["tag"])
    op.create_table(
        "goals",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("reference", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("stage_before", sa.String(16), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("lead_id", "kind", "reference", name="uq_goals_reference"),
    )
    op.create_index("ix_goals_lead_id", "goals", ["lead_id"])
    op.create_index("ix_goals_kind", "goals", ["kind"])
    op.create_table(
        "lifecycle_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(100), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("occurred_at", _WHEN, nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_index("ix_lifecycle_events_lead_id", "lifecycle_events", ["lead_id"])
    op.create_index("ix_lifecycle_events_type", "lifecycle_events", ["type"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("previous_secret", sa.String(200), nullable=True),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("personal_data", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("failing_since", _WHEN, nullable=True),
        sa.Column("disabled_at", _WHEN, nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secret_rotated_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id", sa.Integer(), sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("lifecycle_events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message_id", sa.String(80), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_answer", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", _WHEN, nullable=True),
        sa.Column("delivered_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_event"),
    )
    for column in ("endpoint_id", "event_id", "lead_id", "status"):
        op.create_index(f"ix_webhook_deliveries_{column}", "webhook_deliveries", [column])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id", sa.Integer(), sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.Column("last_used_at", _WHEN, nullable=True),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_table("api_keys")
    op.drop_index("ix_webhook_attempts_delivery_id", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    for column in ("endpoint_id", "event_id", "lead_id", "status"):
        op.drop_index(f"ix_webhook_deliveries_{column}", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_lifecycle_events_type", table_name="lifecycle_events")
    op.drop_index("ix_lifecycle_events_lead_id", table_name="lifecycle_events")
    op.drop_table("lifecycle_events")
    op.drop_index("ix_goals_kind", table_name="goals")
    op.drop_index("ix_goals_lead_id", table_name="goals")
    op.drop_table("goals")
    op.drop_index("ix_lead_tags_tag", table_name="lead_tags")
    op.drop_table("lead_tags")
    op.drop_column("dispositions", "recontact_on")
    op.drop_index("uq_leads_external_id", table_name="leads")
    op.drop_column("leads", "external_id")  # in place (SQLite 3.35+): a rebuilt `leads` would cascade
