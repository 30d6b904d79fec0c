"""What the tracking links read before they judge a hit, how a judged hit is stored, and how a landing page's
beacon confirms the click that brought its visitor."""

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.classify import PriorHit
from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.services.events import record_event


async def sent_at(session: AsyncSession, outbox_key: str) -> datetime | None:
    """When the email behind a link went out (None: unknown, or not sent)."""
    return (await sent_email(session, outbox_key))[0]


async def sent_email(session: AsyncSession, outbox_key: str) -> tuple[datetime | None, int | None]:
    """When the email behind a link went out and how many tracked links it holds (None: unknown, or not sent)."""
    outbox = await session.get(Outbox, outbox_key)
    if outbox is None:
        return None, None
    return (as_utc(outbox.sent_at) if outbox.sent_at else None), outbox.tracked_links


#: How far back a click looks at the same email's earlier hits (a link walker's pace, a re-check hours later).
MESSAGE_HITS_WINDOW = timedelta(days=2)
#: ... and at most this many of them.
MESSAGE_HITS = 500


async def message_hits(session: AsyncSession, outbox_key: str, since: datetime) -> tuple[PriorHit, ...]:
    """The email's latest MESSAGE_HITS opens and clicks since `since`, oldest first (confirmations left out): the
    rules read the latest hits, so a busy email (a list address, a re-checking gateway) keeps the newest."""
    e = EngagementEvent
    rows = await session.execute(
        select(e.kind, e.occurred_at, e.url, e.human, e.machine_class)
        .where(
            e.outbox_key == outbox_key,
            e.kind.in_(("open", "click")),
            e.confirms.is_(None),
            e.occurred_at >= since,
        )
        .order_by(e.occurred_at.desc())
        .limit(MESSAGE_HITS)
    )
    latest = [PriorHit(kind, as_utc(at), url or "", human, cls) for kind, at, url, human, cls in rows.all()]
    return tuple(reversed(latest))


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


def _derived_id(what: str, of: str) -> str:
    """A confirmation's event id, the same every time for the same click or email: stored once however often the
    beacon reports."""
    return hashlib.sha256(f"{what}:{of}".encode()).hexdigest()


async def confirm_click(
    session: AsyncSession, *, lead_id: int, outbox_key: str, click_id: str, at: datetime, within: timedelta
) -> bool:
    """The landing page's beacon reported, at `at`, a human visitor sent by the click `click_id`: when that click is
    the lead's, of the email `outbox_key`, unconfirmed and no older than `within`, mark it confirmed and store its
    confirmation (and the open it proves, when the email's opens all looked like machines). The caller commits,
    in the transaction that stores the visit. False when nothing was confirmed."""
    click = await session.get(EngagementEvent, click_id)
    if (
        click is None
        or click.kind != "click"
        or click.confirms is not None
        or click.lead_id != lead_id
        or click.outbox_key != outbox_key
        or click.confirmed_at is not None
    ):
        return False
    waited = at - as_utc(click.occurred_at)
    if not timedelta(0) <= waited <= within:
        return False
    # compare-and-set: of two visits at once, only one confirms
    marked = await session.execute(
        update(EngagementEvent)
        .where(EngagementEvent.id == click_id, EngagementEvent.confirmed_at.is_(None))
        .values(confirmed_at=at),
        execution_options={"synchronize_session": False},
    )
    if marked.rowcount != 1:  # type: ignore[attr-defined]
        return False
    # the verdict it overturns (NULL: the click had been judged human and only waited for this word)
    overturned = None if click.human else (click.machine_class or "scanner")
    common: dict[str, Any] = {"lead_id": lead_id, "human": True, "outbox_key": outbox_key, "at": at}
    common |= {"confidence": 1.0, "confirms": click_id}
    await record_event(
        session,
        kind="click",
        reason=f"confirmed by the landing page's beacon {waited.total_seconds():.0f} s after the click",
        url=click.url,
        event_id=_derived_id("confirmed-click", click_id),
        machine_class=overturned,
        **common,
    )
    opens = (
        await session.execute(
            select(EngagementEvent.human, EngagementEvent.machine_class)
            .where(
                EngagementEvent.outbox_key == outbox_key,
                EngagementEvent.kind == "open",
                EngagementEvent.confirms.is_(None),
            )
            .order_by(EngagementEvent.occurred_at)
        )
    ).all()
    if opens and not any(human for human, _ in opens):
        # someone read the email to click in it: its machine-looking open was the reader's too
        seen_as = next((cls for _, cls in opens if cls), "scanner")
        await record_event(
            session,
            kind="open",
            reason=f"an open that looked like a machine ({seen_as}), proved by a click the landing page confirmed",
            event_id=_derived_id("confirmed-open", outbox_key),
            machine_class=seen_as,
            **common,
        )
    return True


async def store_visit(
    sessionmaker: async_sessionmaker[AsyncSession], *, click: tuple[str, str] | None, within: timedelta, **visit: Any
) -> tuple[bool, bool]:
    """Store a page view in its own transaction, with the confirmation of the click that sent its visitor when the
    view is human and names one (`click`: the email's outbox key and the click's event id): (stored, confirmed)."""
    async with sessionmaker() as session:
        lead = await session.get(Lead, visit["lead_id"])
        if lead is None or lead.erased_at is not None:  # an erased person leaves no new trace
            return False, False
        stored = await record_event(session, **visit)
        confirmed = False
        if stored and visit["human"] and click is not None:
            key, click_id = click
            confirmed = await confirm_click(
                session, lead_id=visit["lead_id"], outbox_key=key, click_id=click_id, at=visit["at"], within=within
            )
        await session.commit()
    return stored, confirmed
