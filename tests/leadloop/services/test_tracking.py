"""What the tracking links read and store, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from leadloop.domain.classify import PriorHit
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.services.tracking import earlier_visits, message_hits, sent_at, store_hit

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def add_lead(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        lead = Lead(email="maria@example.gr", attributes={})
        session.add(lead)
        await session.flush()
        session.add(
            Outbox(
                key=f"lead-{lead.id}.c0.tips",
                lead_id=lead.id,
                cycle=0,
                step_id="tips",
                cadence="welcome",
                status="sent",
                message_id="<m@x>",
                attempts=1,
                sent_at=NOW - timedelta(hours=1),
            )
        )
        await session.commit()
        return lead.id


def hit(lead_id: int, kind: str, at: datetime, url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"lead_id": lead_id, "kind": kind, "human": True, "reason": "test", "url": url, "at": at, **extra}


async def test_the_emails_other_links_and_the_leads_visits_are_read_within_their_window(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker)
    key = f"lead-{lead_id}.c0.tips"
    assert await store_hit(sessionmaker, **hit(lead_id, "click", NOW, "https://a.example/", outbox_key=key))
    assert await store_hit(sessionmaker, **hit(lead_id, "click", NOW, "https://b.example/", outbox_key=key))
    assert await store_hit(
        sessionmaker, **hit(lead_id, "click", NOW - timedelta(minutes=5), "https://c.example/", outbox_key=key)
    )
    assert await store_hit(sessionmaker, **hit(lead_id, "visit", NOW, "https://site.example/pricing"))
    async with sessionmaker() as session:
        assert await sent_at(session, key) == NOW - timedelta(hours=1)
        assert await sent_at(session, "lead-0.c0.none") is None
        assert await message_hits(session, key, NOW - timedelta(seconds=2)) == (
            PriorHit("click", NOW, "https://a.example/"),
            PriorHit("click", NOW, "https://b.example/"),
        ) or await message_hits(session, key, NOW - timedelta(seconds=2)) == (
            PriorHit("click", NOW, "https://b.example/"),
            PriorHit("click", NOW, "https://a.example/"),
        )
        assert await earlier_visits(session, lead_id, NOW - timedelta(seconds=2)) == (NOW,)
        assert await earlier_visits(session, lead_id, NOW + timedelta(seconds=1)) == ()


async def test_an_erased_or_unknown_lead_and_a_repeated_event_id_leave_no_new_trace(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker)
    assert await store_hit(sessionmaker, **hit(lead_id, "open", NOW, event_id="once"))
    assert not await store_hit(sessionmaker, **hit(lead_id, "open", NOW, event_id="once"))
    assert not await store_hit(sessionmaker, **hit(lead_id + 1, "open", NOW))
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id)
        lead.erased_at = NOW
        await session.commit()
    assert not await store_hit(sessionmaker, **hit(lead_id, "open", NOW))
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(EngagementEvent)) == 1


async def test_a_busy_email_keeps_its_latest_hits_oldest_first(sessionmaker: Any, monkeypatch: Any) -> None:
    import leadloop.services.tracking as tracking

    lead_id = await add_lead(sessionmaker)
    key = f"lead-{lead_id}.c0.tips"
    for n in range(5):
        at = NOW + timedelta(seconds=n)
        extra = {"machine_class": "gateway", "human": False} if n == 4 else {}
        assert await store_hit(sessionmaker, **{**hit(lead_id, "click", at, f"https://s.example/{n}"), **extra},
                               outbox_key=key)  # fmt: skip
    monkeypatch.setattr(tracking, "MESSAGE_HITS", 3)
    async with sessionmaker() as session:
        latest = await message_hits(session, key, NOW - timedelta(minutes=1))
    assert [h.url for h in latest] == [f"https://s.example/{n}" for n in (2, 3, 4)]
    assert (latest[-1].human, latest[-1].machine_class) == (False, "gateway")
