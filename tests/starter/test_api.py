"""The HTTP service against the real app: pixel, clicks, unsubscribe, beacon, intake; bad input refused."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.classify import LINK_BURST
from leadloop.domain.mail import email_hash
from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import EngagementEvent, Lead, Outbox, Suppression
from starter.api import PIXEL, create_app

KEYS = ["current-key", "old-key"]
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
NAV = {"user-agent": CHROME, "accept": "text/html,application/xhtml+xml,*/*;q=0.8", "sec-fetch-mode": "navigate"}
THUNDERBIRD = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"}
#: What a browser adds to the beacon's request from a page of the site.
FROM_SITE = {"origin": "https://site.example", "referer": "https://site.example/pricing"}


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Any:
    return make_settings(
        database_url=database_url,
        secret_key=KEYS[0],
        old_secret_keys=[KEYS[1]],
        public_url="http://t.test",
        site_url="https://site.example",
        api_keys=["intake-key"],
        site_keys=["site-key"],
        temporal_address="127.0.0.1:1",  # nothing listens: events stay pending
        relay_interval=3600,
    )


@asynccontextmanager
async def running(settings: Any, sessionmaker: Any, client: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, sessionmaker=sessionmaker, client=client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as http:
            yield http


@pytest.fixture
async def http(settings: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings, sessionmaker) as client:
        yield client


@pytest.fixture
async def lead_id(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    return await add_lead(sessionmaker)


async def add_lead(sessionmaker: async_sessionmaker[AsyncSession], email: str = "maria@example.gr") -> int:
    """A lead whose 'tips' email went out an hour ago (so hits on its links are not too soon to be human)."""
    async with sessionmaker() as session:
        lead = Lead(email=email, first_name="Μαρία", attributes={})
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
                sent_at=datetime.now(UTC) - timedelta(hours=1),
            )
        )
        await session.commit()
        return lead.id


def token(kind: str, lead: int, url: str = "", extra: str = "", key: str = KEYS[0], age: int = 0) -> str:
    outbox = f"lead-{lead}.c0.tips" if kind != "visitor" else ""
    return Signer([key]).sign(
        Token(kind=kind, lead_id=lead, key=outbox, issued_at=int(time.time()) - age, url=url, extra=extra)
    )  # type: ignore[arg-type]


async def events(sessionmaker: Any, **match: Any) -> list[EngagementEvent]:
    async with sessionmaker() as session:
        query = select(EngagementEvent).filter_by(**match).order_by(EngagementEvent.occurred_at)
        return list((await session.execute(query)).scalars())


async def test_pixel_is_a_gif_at_once_and_records_an_open(http, sessionmaker, lead_id) -> None:
    reply = await http.get(f"/o/{token('open', lead_id)}.gif", headers=THUNDERBIRD)
    assert reply.status_code == 200 and reply.content == PIXEL
    assert reply.headers["content-type"] == "image/gif"
    assert "no-store" in reply.headers["cache-control"]
    [event] = await events(sessionmaker)
    assert (event.kind, event.human, event.lead_id, event.status) == ("open", True, lead_id, "pending")
    # Apple's privacy proxy: kept and visible, marked machine
    await http.get(f"/o/{token('open', lead_id)}.gif", headers={"user-agent": "Mozilla/5.0"})
    machine = [e for e in await events(sessionmaker) if not e.human]
    assert len(machine) == 1 and "Apple" in machine[0].reason


@pytest.mark.parametrize("bad", ["tampered", "truncated", "foreign", "unknown-lead", "expired", "wrong-kind"])
async def test_pixel_with_a_bad_token_still_answers_a_gif_and_records_nothing(http, sessionmaker, lead_id, bad) -> None:
    good = token("open", lead_id)
    text = {
        "tampered": good[:10] + ("A" if good[10] != "A" else "B") + good[11:],
        "truncated": good[:-5],
        "foreign": token("open", lead_id, key="someone-elses-key"),
        "unknown-lead": token("open", lead_id + 999),
        "expired": token("open", lead_id, age=500 * 86400),
        "wrong-kind": token("unsubscribe", lead_id),
    }[bad]
    reply = await http.get(f"/o/{text}.gif", headers=THUNDERBIRD)
    assert reply.status_code == 200 and reply.content == PIXEL
    assert await events(sessionmaker) == []


async def test_click_redirects_to_the_sealed_url_with_a_signed_visitor_id(http, sessionmaker, lead_id) -> None:
    target = "https://site.example/pricing?plan=pro"
    reply = await http.get(f"/c/{token('click', lead_id, target)}", headers=NAV)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "site.example", "/pricing")
    query = parse_qs(location.query)
    assert query["plan"] == ["pro"]
    visitor = Signer(KEYS).verify(query["ll"][0], kind="visitor")
    assert visitor.lead_id == lead_id
    [event] = await events(sessionmaker)
    assert (event.kind, event.human, event.url) == ("click", True, target)
    # a page outside the marketer's site never receives a visitor id
    elsewhere = await http.get(f"/c/{token('click', lead_id, 'https://partner.example/x?a=1')}", headers=NAV)
    assert elsewhere.headers["location"] == "https://partner.example/x?a=1"


async def test_old_key_links_still_work_after_rotation(http, sessionmaker, lead_id) -> None:
    reply = await http.get(f"/c/{token('click', lead_id, 'https://site.example/', key=KEYS[1])}", headers=NAV)
    assert reply.status_code == 302


@pytest.mark.parametrize("bad", ["tampered", "truncated", "foreign", "expired", "swapped-url", "not-http"])
async def test_click_with_a_bad_token_is_404_and_records_nothing(http, sessionmaker, lead_id, bad) -> None:
    import base64
    import json

    good = token("click", lead_id, "https://site.example/pricing")
    if bad == "swapped-url":
        raw = base64.urlsafe_b64decode(good + "==")
        fields = json.loads(raw[:-32])
        fields[4] = "https://evil.example/"
        text = (
            base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode() + raw[-32:])
            .decode()
            .rstrip("=")
        )
    else:
        text = {
            "tampered": good[:-3] + ("x" if good[-3] != "x" else "y") + good[-2:],
            "truncated": good[:20],
            "foreign": token("click", lead_id, "https://site.example/", key="nope"),
            "expired": token("click", lead_id, "https://site.example/", age=500 * 86400),
            "not-http": token("click", lead_id, "javascript:alert(1)"),
        }[bad]
    reply = await http.get(f"/c/{text}", headers=NAV)
    assert reply.status_code == 404
    assert "location" not in reply.headers and "evil" not in reply.text
    assert await events(sessionmaker) == []


async def test_scanner_burst_and_honeypot_clicks_are_machines(http, sessionmaker, lead_id) -> None:
    for url in ("https://site.example/a", "https://site.example/b"):
        await http.get(f"/c/{token('click', lead_id, url)}", headers=NAV)
    await http.get(f"/c/{token('click', lead_id, 'http://t.test/healthz', 'h')}", headers=NAV)
    stored = await events(sessionmaker)
    verdicts = [(e.url, e.human) for e in stored]
    assert verdicts[0] == ("https://site.example/a", True)
    # a second link faster than a person clicks is a machine's; a loaded machine may take longer between the two
    # requests, and then they are a reader's two tabs
    gap = stored[1].occurred_at - stored[0].occurred_at
    assert verdicts[1] == ("https://site.example/b", gap >= LINK_BURST), gap
    assert stored[1].human or stored[1].reason.startswith("two links of one email clicked")
    assert verdicts[2] == ("http://t.test/healthz", False)  # the invisible honeypot


async def test_unsubscribe_get_only_shows_a_button(http, sessionmaker, lead_id) -> None:
    reply = await http.get(f"/u/{token('unsubscribe', lead_id)}")
    assert reply.status_code == 200 and "<button" in reply.text and 'method="post"' in reply.text
    assert await events(sessionmaker) == []
    async with sessionmaker() as session:
        assert await session.get(Suppression, email_hash("maria@example.gr")) is None


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
async def test_one_click_unsubscribe_records_once_and_suppresses(http, sessionmaker, lead_id, encoding) -> None:
    url = f"/u/{token('unsubscribe', lead_id)}"
    body = (
        {"data": {"List-Unsubscribe": "One-Click"}}
        if encoding == "urlencoded"
        else {"files": {"List-Unsubscribe": (None, "One-Click")}}
    )
    first = await http.post(url, **body)
    assert first.status_code == 200 and "You are unsubscribed" in first.text
    assert "location" not in first.headers and "set-cookie" not in first.headers
    again = await http.post(url, **body)
    assert again.status_code == 200 and "already unsubscribed" in again.text
    assert [(e.kind, e.human) for e in await events(sessionmaker)] == [("unsubscribe", True)]
    async with sessionmaker() as session:
        assert (await session.get(Suppression, email_hash("maria@example.gr"))).reason == "unsubscribe"


async def test_unsubscribe_post_without_one_click_body_or_bad_token_changes_nothing(
    http, sessionmaker, lead_id
) -> None:
    assert (await http.post(f"/u/{token('unsubscribe', lead_id)}")).status_code == 400
    assert (await http.post(f"/u/{token('unsubscribe', lead_id)}", data={"List-Unsubscribe": "yes"})).status_code == 400
    assert (await http.post(f"/u/{token('open', lead_id)}", data={"List-Unsubscribe": "One-Click"})).status_code == 404
    assert (await http.get(f"/u/{token('unsubscribe', lead_id)[:-4]}")).status_code == 404
    assert await events(sessionmaker) == []


async def test_beacon_needs_the_site_key_and_a_signed_visitor(http, sessionmaker, lead_id) -> None:
    visitor = token("visitor", lead_id)
    page = {"url": "https://site.example/pricing", "visitor": visitor}
    assert (await http.post("/v", json=page)).status_code == 401
    assert (await http.post("/v", json={**page, "site_key": "wrong"})).status_code == 401
    assert (
        await http.post("/v", json={**page, "site_key": "site-key", "visitor": visitor[:-3]}, headers=FROM_SITE)
    ).status_code == 400
    assert (await http.post("/v", json={**page, "site_key": "site-key", "url": "ftp://x"})).status_code == 400
    assert (await http.post("/v", content=b"[1,2]", headers={"x-leadloop-site-key": "site-key"})).status_code == 400
    assert (await http.post("/v", content=b"x" * 5000)).status_code == 413
    assert await events(sessionmaker) == []
    anonymous = await http.post("/v", json={"site_key": "site-key", "url": "https://site.example/"}, headers=FROM_SITE)
    assert anonymous.status_code == 202 and anonymous.json()["recorded"] is False
    # browsers send it as text/plain (no preflight)
    import json

    ok = await http.post(
        "/v",
        content=json.dumps({**page, "site_key": "site-key"}),
        headers={"content-type": "text/plain", "user-agent": CHROME, **FROM_SITE},
    )
    assert ok.status_code == 202 and ok.json()["recorded"] is True
    assert ok.headers["access-control-allow-origin"] == "*"
    [event] = await events(sessionmaker)
    assert (event.kind, event.human, event.url, event.outbox_key) == (
        "visit",
        True,
        "https://site.example/pricing",
        None,
    )


async def test_beacon_script_and_health_and_docs(http) -> None:
    script = await http.get("/beacon.js")
    assert script.status_code == 200 and "sendBeacon" in script.text and "ll=" in script.text
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    spec = (await http.get("/openapi.json")).json()
    assert {"/o/{token}.gif", "/c/{token}", "/v", "/u/{token}", "/leads", "/healthz"} <= set(spec["paths"])
    assert (await http.get("/docs")).status_code == 200


async def test_intake_refuses_missing_key_and_bad_fields_and_stores_nothing(http, sessionmaker) -> None:
    lead = {"email": "new@example.com", "first_name": "Ana"}
    assert (await http.post("/leads", json=lead)).status_code == 401
    assert (await http.post("/leads", json=lead, headers={"x-api-key": "wrong"})).status_code == 401
    bad = await http.post(
        "/leads",
        json={"email": "not-an-address", "timezone": "Mars/Base", "shoe": 1},
        headers={"x-api-key": "intake-key"},
    )
    assert bad.status_code == 422
    fields = {tuple(e["loc"])[-1] for e in bad.json()["detail"]}
    assert {"email", "timezone", "shoe"} <= fields
    header = await http.post(
        "/leads", json={"email": "x@example.com", "first_name": "A\r\nBcc: y@z"}, headers={"x-api-key": "intake-key"}
    )
    assert header.status_code == 422
    unknown = await http.post("/leads", json={**lead, "cadence": "nope"}, headers={"x-api-key": "intake-key"})
    assert unknown.status_code == 422
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Lead))).scalar() == 0


def fresh_lead_id() -> int:
    """A lead id (and so a workflow id) no other test uses on the shared dev server."""
    import random

    return random.randrange(10**8, 10**9)


async def test_patch_to_a_suppressed_address_is_409_and_changes_nothing(settings, sessionmaker, dev_env) -> None:
    from leadloop.infra.db import FormerAddress
    from tests.conftest import with_pydantic

    async with sessionmaker() as session:
        lead = Lead(id=fresh_lead_id(), email="maria@example.gr", first_name="Μαρία", attributes={})
        session.add(lead)
        session.add(Suppression(email_hash=email_hash("gone@example.com"), reason="erased"))
        await session.commit()
        lead_id = lead.id
    key = {"x-api-key": "intake-key"}
    async with running(settings, sessionmaker, with_pydantic(dev_env.client)) as http:
        refused = await http.patch(
            f"/leads/{lead_id}", json={"email": " Gone@Example.com ", "company": "Acme"}, headers=key
        )
        assert refused.status_code == 409 and "suppression list (erased)" in refused.json()["detail"]
        async with sessionmaker() as session:
            lead = await session.get(Lead, lead_id)
            assert (lead.email, lead.company) == ("maria@example.gr", None)
            assert await session.scalar(select(func.count()).select_from(FormerAddress)) == 0
        # a change to a free address keeps the old one as a hash, so `forget maria@example.gr` still finds her
        moved = await http.patch(f"/leads/{lead_id}", json={"email": "maria.p@example.gr"}, headers=key)
    assert moved.status_code == 200 and moved.json()["changed"] == ["email"]
    async with sessionmaker() as session:
        former = (await session.execute(select(FormerAddress))).scalars().all()
        assert [(f.email_hash, f.lead_id) for f in former] == [(email_hash("maria@example.gr"), lead_id)]


async def test_intake_matches_the_owner_against_the_roster(settings, sessionmaker, dev_env) -> None:
    from sqlalchemy import text

    from leadloop.domain.routing import Roster
    from leadloop.services.roster import import_roster
    from tests.conftest import with_pydantic

    first = fresh_lead_id()  # the leads' ids count on from here
    async with sessionmaker() as session:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text(f"SELECT setval('leads_id_seq', {first})"))
        else:
            session.add(Lead(id=first, email="placeholder@example.com", attributes={}))
        roster = {"teams": [{"name": "iberia", "reps": [{"email": "rep.madrid@leadloop.test", "name": "Marta"}]}]}
        await import_roster(session, Roster.model_validate(roster))
        await session.commit()
    client = with_pydantic(dev_env.client)
    key = {"x-api-key": "intake-key"}
    async with running(settings, sessionmaker, client) as http:
        known = await http.post(
            "/leads", json={"email": "a@example.es", "owner": "Rep.Madrid@LeadLoop.test"}, headers=key
        )
        unknown = await http.post("/leads", json={"email": "b@example.es", "owner": "ghost@leadloop.test"}, headers=key)
    try:
        assert known.status_code == 201 and known.json()["warnings"] == []
        assert unknown.status_code == 201  # kept, never dropped over its owner
        assert unknown.json()["warnings"] == [
            "owner: ghost@leadloop.test is not a rep on the roster; stored without an owner (routing decides)"
        ]
        async with sessionmaker() as session:
            owners = dict((await session.execute(select(Lead.email, Lead.owner).where(Lead.id > first))).all())
        assert owners == {"a@example.es": "rep.madrid@leadloop.test", "b@example.es": None}
    finally:
        for reply in (known, unknown):
            if reply.status_code == 201:
                await client.get_workflow_handle(f"lead-{reply.json()['lead_id']}").terminate("test over")
