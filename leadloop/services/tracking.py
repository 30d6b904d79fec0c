"""What the tracking links read before they judge a hit, and how a judged hit is stored."""

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.services.events import record_event


async def sent_at(session: AsyncSession, outbox_key: str) -> datetime | None:
    """When the email behind a link went out (None: unknown, or not sent)."""
    outbox = await session.get(Outbox, outbox_key)
    return as_utc(outbox.sent_at) if outbox and outbox.sent_at else None


async def other_link_clicks(session: AsyncSession, outbox_key: str, url: str, since: datetime) -> tuple[datetime, ...]:
    """Clicks on the email's other links since `since`: a scanner follows them all at once."""
    rows = await session.execute(
        select(EngagementEvent.occurred_at).where(
            EngagementEvent.outbox_key == outbox_key,
            EngagementEvent.kind == "click",
            EngagementEvent.url != url,
            EngagementEvent.occurred_at >= since,
        )
    )
    return tuple(as_utc(t) for t in rows.scalars())


async def earlier_visits(session: AsyncSession, lead_id: int, since: datetime) -> tuple[datetime, ...]:
    """The lead's page views since `since`."""
    rows = await session.execute(
        select(EngagementEvent.occurred_at).where(
            EngagementEvent.lead_id == lead_id,
            EngagementEvent.kind == "visit",
            EngagementEvent.occurred_at >= since,
        )
    )
    return tuple(as_utc(t) for t in rows.scalars())


async def store_hit(sessionmaker: async_sessionmaker[AsyncSession], **event: Any) -> bool:
    """Store one event in its own transaction; False when the lead is unknown or erased, or it was stored before."""
    async with sessionmaker() as session:
        lead = await session.get(Lead, event["lead_id"])
        if lead is None or lead.erased_at is not None:  # an erased person leaves no new trace
            return False
        stored = await record_event(session, **event)
        await session.commit()
    return stored
