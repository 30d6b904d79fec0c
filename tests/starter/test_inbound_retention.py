"""Raw inbound bodies past LEADLOOP_INBOUND_RETENTION_DAYS are dropped by the HTTP service's relay and the demo's
mailbox too, not only by `leadloop inbox`: once a day, on a clock the test holds (no sleeps)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.tokens import Signer
from leadloop.infra.db import InboundMessage
from leadloop.services.inbound import store_inbound
from leadloop.services.inbound_delivery import ingest_message
from starter.http.rate_limit import RateLimiter
from starter.http.state import State
from starter.mailbox import InboundRoute
from starter.metrics import HttpMetrics

FIXED = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
RAW = b"From: Anna <anna@example.com>\r\nSubject: Re: Welcome\r\n\r\nyes, call me on Tuesday\r\n"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def keep(sessions: async_sessionmaker[AsyncSession], key: str, days_old: float) -> None:
    async with sessions() as session:
        await store_inbound(
            session,
            source="webhook:ses",
            source_key=key,
            raw=RAW,
            received_at=FIXED - timedelta(days=days_old),
            kind="human_reply",
            evidence={"reply_text": "yes, call me on Tuesday", "reasons": ["a person's reply"]},
            status="unmatched",
        )
        await session.commit()


async def bodies(sessions: async_sessionmaker[AsyncSession]) -> dict[str, bool]:
    async with sessions() as session:
        rows = (await session.execute(select(InboundMessage.source_key, InboundMessage.raw))).all()
    return {key: raw is not None for key, raw in rows}


async def test_the_http_services_relay_drops_old_bodies_once_a_day(make_settings: Any, sessionmaker: Any) -> None:
    settings = make_settings(inbound_retention_days=30)
    state = State(settings, sessionmaker, HttpMetrics(), RateLimiter(0, 0))  # what the api's lifespan builds
    assert state.inbound.retention is not None
    clock = Clock(FIXED)
    state.inbound.retention.clock = clock
    await keep(sessionmaker, "old", 31)
    await keep(sessionmaker, "recent", 29)
    assert await state.inbound.round() == 0  # the relay's round: nothing pending to signal
    assert await bodies(sessionmaker) == {"old": False, "recent": True}
    async with sessionmaker() as session:
        old = (await session.execute(select(InboundMessage).where(InboundMessage.source_key == "old"))).scalar_one()
    assert old.evidence == {"reasons": ["a person's reply"]}  # the reply's words went with the body
    # an hour later the round only reads the clock; a day later the message that aged meanwhile loses its body
    clock.now = FIXED + timedelta(hours=1)
    await state.inbound.round()
    assert await bodies(sessionmaker) == {"old": False, "recent": True}
    clock.now = FIXED + timedelta(days=1, minutes=1)
    await state.inbound.round()
    assert await bodies(sessionmaker) == {"old": False, "recent": False}


async def test_the_demo_mailbox_drops_old_bodies_as_mail_passes(make_settings: Any, sessionmaker: Any) -> None:
    route = InboundRoute.from_settings(make_settings(inbound_retention_days=30), sessionmaker, None)
    assert route.retention is not None
    route.retention.clock = Clock(FIXED)
    await keep(sessionmaker, "old", 45)
    async with sessionmaker() as session:  # a message arriving now is kept whole
        await ingest_message(session, RAW, source="mailbox", source_key="new", signer=Signer(["k"]), received_at=FIXED)
        await session.commit()
    await route.age()
    assert await bodies(sessionmaker) == {"old": False, "new": True}
