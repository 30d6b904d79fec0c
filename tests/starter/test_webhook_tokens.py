"""Mailgun's signature tokens taken for good, on SQLite and PostgreSQL: Mailgun signs timestamp and token, not the
body, so a captured signature re-sent with a forged body is refused after a restart and by another replica too,
with nothing stored; tokens are forgotten once their signatures could no longer verify."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, inspect, select

from leadloop.domain.mail import email_hash
from leadloop.infra.db import WebhookToken, make_engine
from leadloop.services.webhooks import TOKENS_KEPT, WebhookError, take_token
from tests.starter.test_webhooks import (
    SECRETS,
    Request,
    Sns,
    add_lead,
    inbound,
    mailgun_request,
    post,
    running,
    suppressed,
)


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Any:
    return make_settings(database_url=database_url, public_url="http://t.test", relay_interval=3600, **SECRETS)


@pytest.fixture
def sns() -> Sns:
    return Sns()


def forged(request: Request, **event: Any) -> Request:
    """The same signature on another body: Mailgun's signature still verifies, since it does not cover the body."""
    body, headers = request
    doc = json.loads(body)
    doc["event-data"].update(event)
    return json.dumps(doc).encode(), headers


async def tokens(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(WebhookToken)) or 0)


async def test_the_migration_creates_the_token_table(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("webhook_tokens")})
    await engine.dispose()
    assert columns == {"provider", "token_hash", "seen_at"}


async def test_a_replayed_token_with_another_body_is_refused_after_a_restart(
    settings: Any, sessionmaker: Any, sns: Sns
) -> None:
    anna, msg_id = await add_lead(sessionmaker, "anna@example.com")
    await add_lead(sessionmaker, "bob@example.com")
    request = mailgun_request("anna@example.com", msg_id)
    async with running(settings, sessionmaker, sns) as http:
        assert (await post(http, "mailgun", request)).status_code == 200
    async with running(settings, sessionmaker, sns) as http:  # a restart: nothing in memory, the same database
        copy = forged(request, recipient="bob@example.com", id="mg-forged")
        answer = await post(http, "mailgun", copy)
        assert answer.status_code == 403 and "used before" in answer.json()["detail"]
        assert (await post(http, "mailgun", request)).status_code == 403  # the very same request, too
        refusals = 'leadloop_webhooks_refused_total{problem="refused",provider="mailgun"} 2.0'
        assert refusals in (await http.get("/metrics")).text
    assert [row.lead_id for row in await inbound(sessionmaker)] == [anna]
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}  # not Bob's


async def test_a_captured_delivery_notice_cannot_be_turned_into_a_bounce(
    settings: Any, sessionmaker: Any, sns: Sns
) -> None:
    """The most common request, a 'delivered' notice, stores no event; its token is taken all the same."""
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    failed = mailgun_request("anna@example.com", msg_id)
    delivered = forged(failed, event="delivered", severity=None, reason=None)
    async with running(settings, sessionmaker, sns) as http:
        answer = await post(http, "mailgun", delivered)
        assert answer.status_code == 200 and answer.json() == {"events": 0, "stored": 0, "note": None}
    assert await tokens(sessionmaker) == 1
    async with running(settings, sessionmaker, sns) as http:
        assert (await post(http, "mailgun", failed)).status_code == 403
    assert await inbound(sessionmaker) == []
    assert await suppressed(sessionmaker) == {}


async def test_two_replicas_take_one_token_once(settings: Any, sessionmaker: Any, sns: Sns) -> None:
    """The same signed request reaching two replicas at once: the database lets one of them take it."""
    anna, msg_id = await add_lead(sessionmaker, "anna@example.com")
    request = mailgun_request("anna@example.com", msg_id)
    async with running(settings, sessionmaker, sns) as one, running(settings, sessionmaker, sns) as two:
        answers = await asyncio.gather(post(one, "mailgun", request), post(two, "mailgun", request))
    assert sorted(answer.status_code for answer in answers) == [200, 403]
    assert [row.lead_id for row in await inbound(sessionmaker)] == [anna]


async def test_tokens_are_forgotten_once_their_signatures_no_longer_verify(sessionmaker: Any) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        await take_token(session, "mailgun", "old-token", now=now - TOKENS_KEPT - timedelta(seconds=1))
        await take_token(session, "mailgun", "recent-token", now=now - timedelta(minutes=5))
        await session.commit()
    async with sessionmaker() as session:
        with pytest.raises(WebhookError, match="used before") as refused:
            await take_token(session, "mailgun", "recent-token", now=now)
        assert refused.value.problem == "refused"
        await session.rollback()
    async with sessionmaker() as session:
        await take_token(session, "mailgun", "x" * 5000, now=now)  # any length: kept as its hash
        await session.commit()
        hashes = set((await session.execute(select(WebhookToken.token_hash))).scalars())
    assert len(hashes) == 2 and all(len(digest) == 64 for digest in hashes)  # the old one deleted, not the recent


async def test_a_request_refused_for_its_token_leaves_the_database_as_it_was(
    settings: Any, sessionmaker: Any, sns: Sns
) -> None:
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    request = mailgun_request("anna@example.com", msg_id)
    async with sessionmaker() as session:  # taken by another replica a moment ago
        await take_token(session, "mailgun", json.loads(request[0])["signature"]["token"], now=datetime.now(UTC))
        await session.commit()
    async with running(settings, sessionmaker, sns) as http:
        answer: httpx.Response = await post(http, "mailgun", request)
    assert answer.status_code == 403
    assert await inbound(sessionmaker) == [] and await suppressed(sessionmaker) == {}
    assert await tokens(sessionmaker) == 1
