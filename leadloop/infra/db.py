"""Database schema (SQLAlchemy 2, async) and the engine and session factories."""

import functools
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TextClause,
    UniqueConstraint,
    bindparam,
    event,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from leadloop.domain.mail import email_hash
from leadloop.domain.scoring import BANT_FIELDS, LeadProfile

_Row = TypeVar("_Row", bound="Base")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Lead(Base):
    """A person being nurtured; one row per normalised email address."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("email", name="uq_leads_email"),
        Index("uq_leads_external_id", "external_id", unique=True),
    )

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
    external_id: Mapped[str | None] = mapped_column(String(200))  # the CRM's id for the lead (unique when set)
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
    error: Mapped[str | None] = mapped_column(Text)  # why not sent; once sent, a note on how (or None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tracked_links: Mapped[int | None] = mapped_column(Integer)  # links rewritten through /c/ (honeypot not counted)


class Suppression(Base):
    """An address never to email again, kept as a hash so it survives erasure of the lead."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FormerAddress(Base):
    """An address a lead had before it was changed, kept as a hash: `forget` finds the lead by it."""

    __tablename__ = "former_addresses"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    replaced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    title: Mapped[str | None] = mapped_column(Text)  # a visit's page title, as the site beacon reported it
    user_agent: Mapped[str | None] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # pending -> signalled | no_workflow (the lead's workflow had ended)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    signalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the classifier's verdict beyond human or not (NULL in events stored before it said more)
    confidence: Mapped[float | None] = mapped_column(Float)
    machine_class: Mapped[str | None] = mapped_column(String(16))  # gateway | cloud | prefetch | mpp | scanner
    evidence: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # [{name, seen, says, weight}]
    # a click: when the landing page's beacon reported the visitor it sent (NULL: unconfirmed)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # an event that confirms an earlier click (a click's confirmation, or the open it proves): that click's id
    confirms: Mapped[str | None] = mapped_column(String(64), index=True)


class InboundMessage(Base):
    """A message that came back (reply, auto-reply, bounce, complaint), stored before anything acts on it; one
    row per Message-ID and per place it was read from, so a second delivery or a re-read is no new message."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_inbound_messages_message_id"),  # NULLs never collide
        UniqueConstraint("source", "source_key", name="uq_inbound_messages_source_key"),
        Index("ix_inbound_messages_status", "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    source: Mapped[str] = mapped_column(String(64))  # imap | webhook:<provider> | mailbox
    source_key: Mapped[str] = mapped_column(String(255))  # "<uidvalidity>:<uid>", a provider's event id
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sender_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # email_hash of From; never the address
    # email_hash of the address a bounce or complaint is about (its recipient), so an unmatched one is still forgotten
    about_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="SET NULL"), index=True)
    outbox_key: Mapped[str | None] = mapped_column(String(200))
    match_reason: Mapped[str | None] = mapped_column(Text)  # which rule named the lead, or why none did
    kind: Mapped[str | None] = mapped_column(String(32))  # None until classified
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    return_date: Mapped[date | None] = mapped_column(Date)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)  # dropped after LEADLOOP_INBOUND_RETENTION_DAYS
    raw_size: Mapped[int] = mapped_column(Integer)
    # pending -> signalled | unmatched | ignored
    status: Mapped[str] = mapped_column(String(16), default="pending")
    signalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookToken(Base):
    """A provider's signature token already taken (Mailgun's signature covers its token, not the body): shared
    by every replica and kept across restarts, so a captured signature on a forged body is refused; kept only
    as long as a signature stays fresh, then deleted."""

    __tablename__ = "webhook_tokens"
    __table_args__ = (Index("ix_webhook_tokens_seen_at", "seen_at"),)

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token, any length
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    """A rep's decision on a lead: who, which reason, the note, and what it led to (in words and as data)."""

    __tablename__ = "dispositions"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # the assignment it answers
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("reps.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16))  # accept | reject
    reason: Mapped[str | None] = mapped_column(String(32), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    opportunity_id: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(Text)  # in words, for people
    # what it led to, as data (DispositionOutcome): the report counts these
    outcome_action: Mapped[str] = mapped_column(String(16), server_default="other")
    outcome_cadence: Mapped[str | None] = mapped_column(String(64))  # where a recycled lead went
    outcome_stage: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16))
    recontact_on: Mapped[date | None] = mapped_column(Date)  # not_ready: the day the lead goes back to this rep
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LeadTag(Base):
    """One tag on a lead (the database is the truth; the workflow shows them as LeadTags)."""

    __tablename__ = "lead_tags"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Goal(Base):
    """A goal reached outside leadloop (the CRM says converted, meeting booked, opportunity created)."""

    __tablename__ = "goals"
    __table_args__ = (UniqueConstraint("lead_id", "kind", "reference", name="uq_goals_reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    source: Mapped[str] = mapped_column(String(40))
    reference: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)
    stage_before: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LifecycleEventRow(Base):
    """One lifecycle event of a lead (escalated, accepted, recycled...), recorded once by its key; the CRM's
    webhooks deliver it. Its payload holds no personal data: that is added per endpoint at delivery."""

    __tablename__ = "lifecycle_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    cycle: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookEndpoint(Base):
    """A CRM's endpoint for lifecycle webhooks (Standard Webhooks): where, signed with what, which events."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))  # whsec_<base64>
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSON)  # empty: every type
    personal_data: Mapped[list[str]] = mapped_column(JSON)  # the lead's fields this endpoint may receive
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint: its stable webhook-id, where it stands, the last answer."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("lifecycle_events.id", ondelete="CASCADE"), index=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(80))  # the webhook-id header: the same on every attempt
    # pending -> delivered | dead (retries ran out, or the endpoint was disabled)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str | None] = mapped_column(Text)  # what was signed (kept for replays; erasure clears it)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_answer: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookAttempt(Base):
    """One try at a delivery: when, the answer's status and first words, or why it never got one."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    answer: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """An API key: its name (recorded as the actor of what it changes), its scopes, only a hash of the secret."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the key
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart in lists
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Segment(Base):
    """A saved, named filter over leads' search attributes, built from validated fields (never a query string)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # what a write frees (an old address in an index, a row `forget` rewrote) is zeroed, not left readable
    # in the file's free space; `forget` then checkpoints the WAL, which holds old pages until it is emptied
    cursor.execute("PRAGMA secure_delete=ON")
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


# SQLAlchemy 2.0 never caches its dialects' INSERT ... ON CONFLICT statements (their class says
# inherit_cache = False), so each one was compiled again on every call: 5.6 % of the worker's CPU in
# the benchmark's profile, as one claimed the outbox row of every send. The same statement written as
# text, with typed parameters, is compiled once per process. Its SQL is the same on SQLite and PostgreSQL.


def _quoted(name: str) -> str:
    return f'"{name}"'


@functools.cache
def _insert_on_conflict(table: Table, columns: tuple[str, ...], returning: bool) -> TextClause:
    names = ", ".join(_quoted(table.c[c].name) for c in columns)
    sql = f"INSERT INTO {_quoted(table.name)} ({names}) VALUES ({', '.join(f':{c}' for c in columns)}) ON CONFLICT "
    if returning:
        (key_column,) = table.primary_key.columns  # one primary key column: the conflict target
        key = _quoted(key_column.name)
        # a no-op update on conflict, so RETURNING hands back an existing row too
        sql += f"({key}) DO UPDATE SET {key} = excluded.{key} RETURNING "
        sql += ", ".join(_quoted(c.name) for c in table.columns)
    else:
        sql += "DO NOTHING"
    statement = text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))
    return statement.columns(*table.columns) if returning else statement  # type: ignore[return-value]


def _with_defaults(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """The values plus the Python-side defaults of the columns they leave out, as an ORM insert would."""
    full = dict(values)
    for column in table.columns:
        default = column.default
        if column.name in full or default is None:
            continue
        if default.is_scalar:
            full[column.name] = default.arg  # type: ignore[attr-defined]
        elif default.is_callable:
            full[column.name] = default.arg(None)  # type: ignore[attr-defined]
        else:  # a SQL expression or a sequence: the text statement cannot apply it, so pass the value
            raise TypeError(f"{table.name}.{column.name}: give its value, its default is not a Python value")
    return full


async def insert_new(session: AsyncSession, model: type[Base], **values: Any) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING of one row (the caller commits); True when the row is new."""
    table: Table = model.__table__  # type: ignore[assignment]
    full = _with_defaults(table, values)
    result = await session.execute(_insert_on_conflict(table, tuple(full), False), full)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def insert_or_get(session: AsyncSession, model: type[_Row], **values: Any) -> _Row:
    """The row of these values' primary key: inserted now, or as an earlier call left it. One round trip."""
    table: Table = model.__table__  # type: ignore[assignment]
    full = _with_defaults(table, values)
    statement = select(model).from_statement(_insert_on_conflict(table, tuple(full), True))
    result = await session.scalars(statement, full, execution_options={"populate_existing": True})
    row: _Row = result.one()
    return row


async def suppress(session: AsyncSession, email: str, reason: str, detail: str, *, at: datetime | None = None) -> None:
    """Put an address on the suppression list (the caller commits); an address already there keeps its reason."""
    await insert_new(
        session, Suppression, email_hash=email_hash(email), reason=reason, detail=detail, created_at=at or utcnow()
    )


#: a hand-over waiting on its rep: what counts against the rep's capacity
OPEN = "assigned"
#: no rep was available; routing tries again
WAITING = "waiting"


async def close_assignments(
    session: AsyncSession,
    status: str,
    *,
    key: str | None = None,
    lead_id: int | None = None,
    states: tuple[str, ...] = (OPEN,),
) -> int:
    """Close one hand-over (by key) or every one of a lead's that is still in `states`, freeing the rep's
    capacity; one already closed keeps its outcome. The caller commits; returns how many were closed."""
    if (key is None) == (lead_id is None):
        raise ValueError("close by key or by lead_id (one of them)")
    which = Assignment.key == key if key is not None else Assignment.lead_id == lead_id
    result = await session.execute(
        update(Assignment)
        .where(which, Assignment.status.in_(states))
        .values(status=status, closed_at=datetime.now(UTC))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def lead_profile(lead: Lead) -> LeadProfile:
    """What scoring and routing read of a lead: no address, no name."""
    return LeadProfile(
        industry=lead.industry,
        company_size=lead.company_size,
        title=lead.title,
        country=lead.country,
        region=lead.region,
        product_interest=lead.product_interest,
        owner=lead.owner,
        attributes={k: v for k, v in (lead.attributes or {}).items() if k in BANT_FIELDS},
    )
