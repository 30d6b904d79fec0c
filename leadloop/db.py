"""Database schema (SQLAlchemy 2, async) and the engine and session factories."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Lead(Base):
    """A person being nurtured; one row per normalised email address."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("email", name="uq_leads_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    industry: Mapped[str | None] = mapped_column(String(200))
    company_size: Mapped[str | None] = mapped_column(String(50))
    country: Mapped[str | None] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    locale: Mapped[str | None] = mapped_column(String(16))
    product_interest: Mapped[str | None] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(320))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cadence: Mapped[str | None] = mapped_column(String(64))
    bounced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # `leadloop forget`
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Outbox(Base):
    """One row per email the workflow asked for; its key is claimed before SMTP."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("lead_id", "cycle", "step_id", name="uq_outbox_lead_cycle_step"),
        UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64))
    cadence: Mapped[str] = mapped_column(String(64))
    # pending -> sending -> sent | uncertain | bounced | refused
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Suppression(Base):
    """An address never to email again, kept as a hash so it survives erasure of the lead."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EngagementEvent(Base):
    """An open, click, visit or unsubscribe, stored before its HTTP answer; signalled to the workflow."""

    __tablename__ = "engagement_events"
    __table_args__ = (Index("ix_engagement_events_pending", "status", "lead_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # open | click | visit | unsubscribe
    human: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    outbox_key: Mapped[str | None] = mapped_column(String(200), index=True)
    url: Mapped[str | None] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # pending -> signalled | no_workflow (the lead's workflow had ended)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    signalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Team(Base):
    """A sales team: how it shares leads, how fast it must answer, who its manager is."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    strategy: Mapped[str] = mapped_column(String(16))  # round_robin | least_loaded
    sla_seconds: Mapped[int] = mapped_column(Integer)
    hours: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"days": [...], "start": "09:00", "end": "17:00"}
    manager_name: Mapped[str | None] = mapped_column(String(200))
    manager_email: Mapped[str | None] = mapped_column(String(320))
    last_rep_id: Mapped[int | None] = mapped_column(Integer)  # the round-robin cursor


class Rep(Base):
    """A sales rep; inactive reps and reps at capacity get no new leads."""

    __tablename__ = "reps"
    __table_args__ = (UniqueConstraint("email", name="uq_reps_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(ForeignKey("teams.name", ondelete="CASCADE"), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    capacity: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Assignment(Base):
    """One hand-over of a lead to a rep (or the wait for one): who, when, which rule chose them."""

    __tablename__ = "assignments"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # lead-<id>.c<cycle>.a<n>
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id", ondelete="SET NULL"), index=True)
    team: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(Text)
    # assigned -> lapsed | accepted | rejected | closed ; waiting: no rep was available
    status: Mapped[str] = mapped_column(String(16), index=True)
    score: Mapped[int | None] = mapped_column(Integer)
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DispositionRow(Base):
    """A rep's decision on a lead: who, which reason, the note, and what it led to."""

    __tablename__ = "dispositions"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # the assignment it answers
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16))  # accept | reject
    reason: Mapped[str | None] = mapped_column(String(32), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite files get WAL and foreign keys, and their folder is created."""
    if url.startswith("sqlite"):
        from pathlib import Path

        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT DO NOTHING / DO UPDATE."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
