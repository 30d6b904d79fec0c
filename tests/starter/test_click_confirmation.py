"""A click proved by the landing page: the beacon's page view, with the click's id sealed in its visitor id,
confirms that click (and the machine-looking open of its email) once; forged, foreign, late, repeated or machine
page views confirm nothing."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import EngagementEvent, Lead, Outbox
from leadloop.services.events import fold
from starter.api import create_app

SITE_KEY = "site-key"
SITE = "https://site.example"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
NAV = {"user-agent": CHROME, "accept": "text/html,application/xhtml+xml,*/*;q=0.8", "sec-fetch-mode": "navigate"}
FROM_SITE = {"user-agent": CHROME, "content-type": "text/plain", "origin": SITE}
READER = ("198.51.100.23", 50000)  # a person's own connection
SANDBOX = ("40.92.10.20", 50000)  # Microsoft 365's published range: a gateway detonating the page


@pytest.fixture
async def site(make_settings: Any, database_url: str, sessionmaker: Any) -> AsyncIterator[dict[str, Any]]:
    """Two leads with an email each, sent a minute ago, and the app (no Temporal: events stay pending)."""
    settings = make_settings(
        database_url=database_url,
        public_url="http://t.test",
        site_url=SITE,
        site_keys=[SITE_KEY],
        temporal_address="127.0.0.1:1",
        relay_interval=3600,
    )
    sent = datetime.now(UTC) - timedelta(minutes=1)
    async with sessionmaker() as session:
        leads = [Lead(email=f"{n}@example.com", attributes={}) for n in ("ana", "ben")]
        session.add_all(leads)
        await session.flush()
        for lead in leads:
            session.add(
                Outbox(
                    key=f"lead-{lead.id}.c0.s1",
                    lead_id=lead.id,
                    cycle=0,
                    step_id="s1",
                    cadence="slow",
                    status="sent",
                    message_id=f"<lead-{lead.id}.c0.s1@x.example>",
                    sent_at=sent,
                    tracked_links=1,
                )
            )
        await session.commit()
    app = create_app(settings, sessionmaker=sessionmaker)

    @asynccontextmanager
    async def browser(address: tuple[str, int]) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app, client=address)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as http:
            yield http

    async with app.router.lifespan_context(app):
        async with browser(READER) as reader, browser(SANDBOX) as sandbox:
            yield {
                "ids": [lead.id for lead in leads],
                "sign": Signer(settings.signing_keys()).sign,
                "verify": Signer(settings.signing_keys()).verify,
                "reader": reader,
                "sandbox": sandbox,
            }


def click_link(sign: Any, lead_id: int) -> str:
    key = f"lead-{lead_id}.c0.s1"
    return f"/c/{sign(Token('click', lead_id, key, int(time.time()), url=f'{SITE}/pricing'))}"


async def clicked(http: httpx.AsyncClient, link: str, headers: dict[str, str] = NAV) -> str:
    """Follow an email's link; the visitor id the landing page gets."""
    landing = await http.get(link, headers=headers)
    assert landing.status_code == 302
    return parse_qs(urlsplit(landing.headers["location"]).query)["ll"][0]


async def view(http: httpx.AsyncClient, visitor: str) -> httpx.Response:
    """The landing page's beacon reporting its page view."""
    return await http.post(
        "/v", json={"site_key": SITE_KEY, "visitor": visitor, "url": f"{SITE}/pricing"}, headers=FROM_SITE
    )


async def visits_aged(sessionmaker: Any) -> None:
    """The lead's earlier page views a minute older: a reader's pace, not a script's burst (no sleeping)."""
    async with sessionmaker() as session:
        for row in (await session.execute(select(EngagementEvent).where(EngagementEvent.kind == "visit"))).scalars():
            row.occurred_at -= timedelta(minutes=1)
        await session.commit()


async def rows(sessionmaker: Any) -> list[EngagementEvent]:
    async with sessionmaker() as session:
        query = select(EngagementEvent).order_by(EngagementEvent.occurred_at, EngagementEvent.kind)
        return list((await session.execute(query)).scalars())


async def test_the_landing_page_confirms_the_click_and_the_open_it_proves_once(site, sessionmaker) -> None:
    ana = site["ids"][0]
    reader = site["reader"]
    # Apple's prefetch loaded the pixel: a machine-looking open
    pixel = Token(kind="open", lead_id=ana, key=f"lead-{ana}.c0.s1", issued_at=int(time.time()))
    await reader.get(f"/o/{site['sign'](pixel)}.gif", headers={"user-agent": "Mozilla/5.0"})
    visitor = await clicked(reader, click_link(site["sign"], ana))
    [opened, click] = await rows(sessionmaker)
    assert (opened.kind, opened.human, opened.machine_class) == ("open", False, "mpp")
    assert (click.kind, click.human, click.confirmed_at) == ("click", True, None)
    # the visitor id names the email and this very click
    sealed = site["verify"](visitor, kind="visitor")
    assert (sealed.lead_id, sealed.key, sealed.extra) == (ana, f"lead-{ana}.c0.s1", click.id)

    answer = await view(reader, visitor)
    assert answer.status_code == 202 and answer.json() == {"recorded": True, "confirmed": True}
    stored = {(r.kind, r.confirms is not None): r for r in await rows(sessionmaker)}
    assert stored[("click", False)].confirmed_at is not None
    confirmation = stored[("click", True)]
    assert (confirmation.human, confirmation.confirms, confirmation.machine_class) == (True, click.id, None)
    assert confirmation.confidence == 1.0 and confirmation.url == f"{SITE}/pricing"
    assert confirmation.reason.startswith("confirmed by the landing page's beacon ")
    assert confirmation.reason.endswith(" s after the click")
    proved = stored[("open", True)]
    assert (proved.human, proved.confirms, proved.machine_class) == (True, click.id, "mpp")
    assert "mpp" in proved.reason and stored[("visit", False)].human

    # what the workflow is told: the click waiting for its word, then its confirmation and the proved open
    told = {(e.kind, e.confirms is not None): e for e in fold(await rows(sessionmaker))}
    assert told[("click", False)].confirmed is False
    assert (told[("click", True)].confirmed, told[("click", True)].was_human) == (True, True)
    assert (told[("open", True)].confirms, told[("open", True)].was_human) == (click.id, False)

    # the reader reloads the page: a second visit, nothing more confirmed
    again = await view(reader, visitor)
    assert again.status_code == 202 and again.json() == {"recorded": True}
    after = await rows(sessionmaker)
    assert [r.human for r in after if r.kind == "visit"] == [True, True]
    assert len(after) == 6 and sum(1 for r in after if r.confirms) == 2


async def test_a_click_that_looked_like_a_machine_is_overturned_and_a_read_email_gains_no_open(
    site, sessionmaker
) -> None:
    ana = site["ids"][0]
    reader = site["reader"]
    pixel = Token(kind="open", lead_id=ana, key=f"lead-{ana}.c0.s1", issued_at=int(time.time()))
    await reader.get(f"/o/{site['sign'](pixel)}.gif", headers={"user-agent": CHROME})  # a human open
    # a browser that sent no navigation headers: judged a scanner
    visitor = await clicked(reader, click_link(site["sign"], ana), headers={"user-agent": CHROME, "accept": "*/*"})
    click = next(r for r in await rows(sessionmaker) if r.kind == "click")
    assert (click.human, click.machine_class) == (False, "scanner")
    assert (await view(reader, visitor)).json() == {"recorded": True, "confirmed": True}
    [confirmation] = [r for r in await rows(sessionmaker) if r.confirms]  # no open: the reader's open counted
    assert (confirmation.kind, confirmation.human, confirmation.machine_class) == ("click", True, "scanner")
    [told] = [e for e in fold(await rows(sessionmaker)) if e.confirms]
    assert (told.confirmed, told.was_human) == (True, False)


async def test_forged_foreign_late_machine_and_old_visits_confirm_nothing(site, sessionmaker) -> None:
    ana, ben = site["ids"]
    reader, sandbox, sign = site["reader"], site["sandbox"], site["sign"]
    visitor = await clicked(reader, click_link(sign, ana))
    click = next(r for r in await rows(sessionmaker) if r.kind == "click")
    now = int(time.time())

    # forged (another key's signature) and expired visitor ids: refused as before, nothing stored
    forged = Signer(["not-ours"]).sign(Token("visitor", ana, f"lead-{ana}.c0.s1", now, extra=click.id))
    expired = sign(Token("visitor", ana, f"lead-{ana}.c0.s1", now - 400 * 86400, extra=click.id))
    for bad in (forged, expired, visitor[:-2] + ("A" if visitor[-2] != "A" else "B") + visitor[-1]):
        refused = await view(reader, bad)
        assert refused.status_code == 400 and refused.json() == {"detail": "visitor id is not valid"}
    assert [r.kind for r in await rows(sessionmaker)] == ["click"]

    # a sandbox detonating the landing page from a gateway's range: a machine visit, no confirmation
    assert (await view(sandbox, visitor)).json() == {"recorded": True}
    await visits_aged(sessionmaker)
    # another lead's visitor id naming Ana's click (and Ana's email): Ben's visit, Ana's click untouched
    foreign = sign(Token("visitor", ben, f"lead-{ana}.c0.s1", now, extra=click.id))
    assert (await view(reader, foreign)).json() == {"recorded": True}
    # an id from before clicks were sealed in it: a visit, confirming nothing
    old = sign(Token("visitor", ana, "", now))
    assert (await view(reader, old)).json() == {"recorded": True}
    await visits_aged(sessionmaker)
    # a click id that is no click (a page view's own id)
    visit_id = next(r.id for r in await rows(sessionmaker) if r.kind == "visit")
    not_a_click = sign(Token("visitor", ana, f"lead-{ana}.c0.s1", now, extra=visit_id))
    assert (await view(reader, not_a_click)).json() == {"recorded": True}

    # the person comes back after the window (the click backdated past LEADLOOP_CLICK_CONFIRM_SECONDS)
    async with sessionmaker() as session:
        late = datetime.now(UTC) - timedelta(seconds=121)
        await session.execute(update(EngagementEvent).where(EngagementEvent.id == click.id).values(occurred_at=late))
        await session.commit()
    await visits_aged(sessionmaker)
    assert (await view(reader, visitor)).json() == {"recorded": True}

    stored = await rows(sessionmaker)
    visits = [(r.lead_id, r.human) for r in stored if r.kind == "visit"]
    assert sorted(visits) == sorted([(ana, False), (ben, True), (ana, True), (ana, True), (ana, True)])
    assert [r for r in stored if r.confirms] == []
    assert next(r for r in stored if r.id == click.id).confirmed_at is None
