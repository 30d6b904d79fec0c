"""What a report covers: its period and cadence as SQL conditions, and which outbox rows are marketing sends."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, true

from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Lead, Outbox

#: outbox statuses of an email handed to the relay: sent, or possibly sent and never sent twice
SENT = ("sent", "uncertain")
ENGAGING = ("open", "click")


def period_start(since: date | datetime | None) -> datetime | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return as_utc(since).astimezone(UTC)
    return datetime(since.year, since.month, since.day, tzinfo=UTC)


@dataclass
class Scope:
    """The report's period (from `since`) and cadence (None: every lead)."""

    since: datetime | None
    cadence: str | None

    def period(self, column: Any) -> ColumnElement[bool]:
        return column >= self.since if self.since is not None else true()

    def leads(self, column: Any) -> ColumnElement[bool]:
        """The lead id column restricted to the report's scope."""
        if self.cadence is None:
            return true()
        scoped = select(Lead.id).where(
            or_(Lead.cadence == self.cadence, Lead.id.in_(select(Outbox.lead_id).where(Outbox.cadence == self.cadence)))
        )
        return column.in_(scoped)  # type: ignore[no-any-return]

    def within(self, when: datetime | None) -> bool:
        return when is not None and (self.since is None or as_utc(when) >= self.since)


def marketing(column: Any) -> ColumnElement[bool]:
    """Cadence emails, not the rep notifications the outbox also keeps (cadence "_sales")."""
    return ~column.startswith("_", autoescape=True)  # type: ignore[no-any-return]


def by_person() -> ColumnElement[bool]:
    """An event a person made: called human, or a click the landing page confirmed whatever its verdict said."""
    return or_(EngagementEvent.human.is_(True), EngagementEvent.confirmed_at.is_not(None))


def email_time() -> ColumnElement[datetime]:
    """When an email went out; when it has none (uncertain, bounced), when it was queued."""
    return func.coalesce(Outbox.sent_at, Outbox.created_at)
