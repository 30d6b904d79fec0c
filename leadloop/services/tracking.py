"""What the tracking links read before they judge a hit, and how a judged hit is stored."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.classify import PriorHit
from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.services.events import record_event


async def sent_at(session: AsyncSession, outbox_key: str) -> datetime | None:
    """When the email behind a link went out (None: unknown, or not sent)."""
    outbox = await session.get(Outbox, outbox_key)
    return as_utc(outbox.sent_at) if outbox and outbox.sent_at else None


#: How far back a click looks at the same email's earlier hits (a link walker's pace, a re-check hours later).
MESSAGE_HITS_WINDOW = timedelta(days=2)


async def message_hits(session: AsyncSession, outbox_key: str, since: datetime) -> tuple[PriorHit, ...]:
    """The email's opens and clicks since `since`, oldest first (confirmations of clicks left out)."""
    rows = await session.execute(
        select(EngagementEvent.kind, EngagementEvent.occurred_at, EngagementEvent.url, EngagementEvent.human)
        .where(
            EngagementEvent.outbox_key == outbox_key,
            EngagementEvent.kind.in_(("open", "click")),
            EngagementEvent.confirms.is_(None),
            EngagementEvent.occurred_at >= since,
        )
        .order_by(EngagementEvent.occurred_at)
        .limit(500)
    )
    return tuple(PriorHit(kind, as_utc(at), url or "", human) for kind, at, url, human in rows.all())


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
