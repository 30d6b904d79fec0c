"""Site visits through the real app into a real workflow: a forged visit changes nothing, a page counts once a
day, a burst is a machine, and the rep reads a visit as its path on the site, never as a link."""

import asyncio
import contextlib
import email
import email.policy
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence, Escalation, Sender, SendWindow, Step
from leadloop.domain.models import LeadState
from leadloop.domain.routing import Roster
from leadloop.domain.scoring import load_scoring
from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import EngagementEvent, Lead
from leadloop.infra.settings import get_settings
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.roster import import_roster
from starter.api import create_app
from tests.conftest import SmtpServer, with_pydantic

SITE_KEY = "site-key"
SITE = "https://site.example"
ALWAYS = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59")  # type: ignore[arg-type]
#: With the shipped scoring.yaml: a pricing click 25, a pricing page 15, any other page 3.
CADENCE = Cadence(
    name="slow",
    version=1,
    send_window=ALWAYS,
    sender=Sender(name="Demo", address="demo@leadloop.example"),
    steps=[
        Step(id="s1", wait="0", template="welcome", subject="hi"),  # type: ignore[arg-type]
        Step(id="s2", wait="30d", template="tips", subject="hi"),
    ],  # type: ignore[arg-type]
    escalation=Escalation(threshold=43),
)
ROSTER = Roster.model_validate(
    {
        "teams": [
            {
                "name": "emea",
                "strategy": "round_robin",
                "sla": "4h",
                "reps": [{"email": "rep@sales.example", "name": "Rep", "timezone": "Europe/Athens"}],
            }
        ]
    }
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
NAV = {"user-agent": FIREFOX, "accept": "text/html,application/xhtml+xml,*/*;q=0.8", "sec-fetch-mode": "navigate"}
#: A page of the site: what a browser adds to its beacon's request.
FROM_SITE = {"user-agent": FIREFOX, "content-type": "text/plain", "origin": SITE}


@pytest.fixture
async def parts(
    time_skipping_env: WorkflowEnvironment, smtp: SmtpServer, make_settings: Any, database_url: str, sessionmaker: Any
) -> AsyncIterator[dict[str, Any]]:
    settings = make_settings(
        database_url=database_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        public_url="http://t.test",
        site_url=SITE,
        site_keys=[SITE_KEY],
        machine_min_delay=0,
        coalesce_seconds=0.1,
        relay_interval=3600,
    )
    async with sessionmaker() as session:
        await import_roster(session, ROSTER)
        lead = Lead(email="maria@example.gr", first_name="Maria", timezone="Europe/Athens", attributes={})
        session.add(lead)
        await session.commit()
    client = with_pydantic(time_skipping_env.client)
    async with worker_module.build_worker(client, settings):
        await start_lead(
            client,
            lead,
            CADENCE,
            task_queue=settings.task_queue,
            time_scale=1.0,
            source="test",
            # the shipped rules: the click waits for its landing page's word, which the beacon's first view gives
            scoring=load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml"),
        )
        handle = client.get_workflow_handle(workflow_id(lead.id))
        await until(handle, lambda s: s.sends == 1)
        app = create_app(settings, sessionmaker=sessionmaker, client=client)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
                yield {"settings": settings, "lead": lead.id, "handle": handle, "http": http}
        with contextlib.suppress(RPCError):  # a waiting workflow would hold the test server's clock
            await handle.terminate("test over")


async def until(handle: WorkflowHandle[Any, Any], check: Any) -> LeadState:
    for _ in range(300):
        state: LeadState = await handle.query("state", result_type=LeadState)
        if check(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {state}")


async def stored(sessionmaker: Any) -> list[tuple[str, bool, str | None]]:
    async with sessionmaker() as session:
        rows = (await session.execute(select(EngagementEvent).order_by(EngagementEvent.occurred_at))).scalars()
        return [(row.kind, row.human, row.url) for row in rows]


def rep_mail(smtp: SmtpServer) -> list[Any]:
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in smtp.handler.raw]
    return [m for m in parsed if "rep@sales.example" in str(m["To"])]


async def test_a_forged_visit_changes_nothing_and_a_page_counts_once_a_day(parts, sessionmaker, smtp) -> None:
    http, handle, settings = parts["http"], parts["handle"], parts["settings"]
    # the lead clicks the pricing link of its email: the redirect hands the site the visitor id
    click = Token(
        kind="click",
        lead_id=parts["lead"],
        key=f"lead-{parts['lead']}.c0.s1",
        issued_at=int(time.time()),
        url=f"{SITE}/pricing",
    )
    landing = await http.get(f"/c/{Signer(settings.signing_keys()).sign(click)}", headers=NAV)
    visitor = parse_qs(urlsplit(landing.headers["location"]).query)["ll"][0]
    # unconfirmed until the landing page's beacon reports the visitor: 30% of the pricing click's 25
    assert (await until(handle, lambda s: s.engagement.human_clicks == 1)).score.total == 7

    # the attack: the visitor id from the redirect, the public site key, another host's "page", twice
    forged = {"site_key": SITE_KEY, "visitor": visitor, "url": "https://evil.example/pricing/reset-password"}
    for headers in ({"user-agent": FIREFOX}, FROM_SITE, {**FROM_SITE, "origin": "https://evil.example"}):
        for _ in range(2):
            refused = await http.post("/v", json=forged, headers=headers)
            assert refused.status_code == 403 and "not a page of this site key's site" in refused.text
    # a page of the site, but not sent from it: no Origin or Referer, another site's, an opaque one
    page = {**forged, "url": f"{SITE}/pricing"}
    for headers in (
        {"user-agent": FIREFOX},
        {**FROM_SITE, "origin": "https://evil.example"},
        {"user-agent": FIREFOX, "referer": "https://evil.example/pricing"},
        {**FROM_SITE, "referer": "https://evil.example/"},
        {**FROM_SITE, "origin": "null"},
        {**FROM_SITE, "origin": "http://site.example"},
    ):
        refused = await http.post("/v", json=page, headers=headers)
        assert refused.status_code == 403 and "Origin or Referer" in refused.text, headers
    assert await stored(sessionmaker) == [("click", True, f"{SITE}/pricing")]  # nothing of the forgeries

    # a title that is not text is refused, and nothing is stored
    for title in (["Pricing"], {"a": 1}, 7):
        refused = await http.post("/v", json={**page, "title": title}, headers=FROM_SITE)
        assert refused.status_code == 400 and "title must be" in refused.text
    assert await stored(sessionmaker) == [("click", True, f"{SITE}/pricing")]

    # the real reader views pricing, then the same page again by another address (a browser may send Referer only)
    again = {**NAV, "referer": f"{SITE}/pricing"}
    for url, title, headers, answer in (
        (f"{SITE}/pricing", None, FROM_SITE, {"recorded": True, "confirmed": True}),  # it proves the click
        (f"{SITE}/pricing/?plan=pro", "Plans\n &\tpricing", again, {"recorded": True}),
    ):
        taken = await http.post("/v", json={**page, "url": url, "title": title}, headers=headers)
        assert taken.status_code == 202 and taken.json() == answer
    state = await until(handle, lambda s: s.engagement.visits == 2)
    assert state.score.total == 40 and state.stage == "nurturing"  # 25 + the page once (not 25 + 30: escalated)
    assert rep_mail(smtp) == []

    # another page of the site, whose path a mail client would take for a host: the lead reaches 43
    sneaky = f"{SITE}/www.evil.example/login%40bank.example"
    # and a title written to look like a link, with a control character and far too long
    bait = "Log in at https://bank.example/verify\x07 " + "x" * 300
    taken = await http.post("/v", json={**page, "url": sneaky, "title": bait}, headers=FROM_SITE)
    assert taken.json() == {"recorded": True}
    state = await until(handle, lambda s: s.assigned_rep is not None)
    assert state.score.total == 43 and state.stage == "with_sales"
    for _ in range(200):
        if rep_mail(smtp):
            break
        await asyncio.sleep(0.05)
    [note] = rep_mail(smtp)
    text = note.get_body(("plain",)).get_content()
    html = note.get_body(("html",)).get_content()
    # the visits read as paths on the site, as text nothing turns into a link
    # the click once, though its landing page's confirmation is stored beside it
    assert text.count(f"click  {SITE}/pricing\r\n") == 1
    assert "visit  /pricing\r\n" in text and "visit  /www\u2024evil\u2024example/login\uff20bank\u2024example" in text
    assert "/www\u2024evil\u2024example/login\uff20bank\u2024example" in html
    # and a page title beside its path, one line of unlinkable text, cut short
    assert "Plans &amp; pricing" not in text  # text parts are not escaped
    assert "visit  /pricing/ \u2014 \u201cPlans & pricing\u201d\r\n" in text
    assert "\u2014 \u201cPlans &amp; pricing\u201d" in html
    shown_bait = "\u201cLog in at https\ua789//bank\u2024example/verify " + "x" * 41 + "\u2026\u201d"
    assert shown_bait in text and shown_bait in html
    for part in (text, html):
        assert "evil.example" not in part and "bank.example" not in part and "reset-password" not in part
    # the only links: the rep's Accept and Reject (and the click's own sealed URL, which came from our email)
    links = set(re.findall(r'href="([^"]+)"', html))
    assert len(links) == 2 and all(link.startswith("http://t.test/r/") for link in links)
    assert set(re.findall(r"https?://\S+", text)) == {f"{SITE}/pricing", *links}


async def test_a_burst_of_page_views_is_a_machine(make_settings, database_url, sessionmaker) -> None:
    settings = make_settings(
        database_url=database_url,
        public_url="http://t.test",
        site_url=SITE,
        site_keys=[SITE_KEY],
        temporal_address="127.0.0.1:1",
        relay_interval=3600,
    )
    async with sessionmaker() as session:
        leads = [Lead(email=f"{n}@example.com", attributes={}) for n in ("a", "b")]
        session.add_all(leads)
        await session.commit()
    sign = Signer(settings.signing_keys()).sign
    visitors = [sign(Token(kind="visitor", lead_id=lead.id, key="", issued_at=int(time.time()))) for lead in leads]
    app = create_app(settings, sessionmaker=sessionmaker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            for n in range(6):  # a script replaying the visitor id, one page after another
                body = {"site_key": SITE_KEY, "visitor": visitors[0], "url": f"{SITE}/p{n}"}
                assert (await http.post("/v", json=body, headers=FROM_SITE)).json() == {"recorded": True}
            neighbour = {"site_key": SITE_KEY, "visitor": visitors[1], "url": f"{SITE}/pricing"}
            assert (await http.post("/v", json=neighbour, headers=FROM_SITE)).json() == {"recorded": True}
    async with sessionmaker() as session:
        rows = (await session.execute(select(EngagementEvent).order_by(EngagementEvent.occurred_at))).scalars().all()
    first = [row for row in rows if row.lead_id == leads[0].id]
    assert [row.human for row in first] == [True, True, True, False, False, False]
    assert all("page views within 10s" in row.reason for row in first[3:])
    # another lead's page view in the same seconds is its own
    assert [(row.human, row.url) for row in rows if row.lead_id == leads[1].id] == [(True, f"{SITE}/pricing")]


@pytest.fixture
def fresh_settings() -> Any:
    """The CLI reads its settings once per process: read them again from this test's environment."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("hosts", "keys", "named"),
    [
        ('{"site-key": ["site.example"]}', '["site-key"]', "'site.example' (site key 'site-key') is not a site origin"),
        ('{"site-key": ["https://*.site.example"]}', '["site-key"]', "is not a site origin"),
        ('{"site-key": ["https://site.example/pricing"]}', '["site-key"]', "no path"),
        ('{"site-key": []}', '["site-key"]', "site key 'site-key' has no origins"),
        ('{"typo-key": ["https://site.example"]}', '["site-key"]', "'typo-key' that are not in LEADLOOP_SITE_KEYS"),
    ],
)
def test_a_bad_site_host_setting_stops_the_service_at_start(
    fresh_settings, monkeypatch, tmp_path, hosts, keys, named
) -> None:
    import uvicorn

    from starter.cli import app

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda web, **kwargs: started.append(web))
    monkeypatch.chdir(tmp_path)  # no .env here
    env = {
        "LEADLOOP_DEMO": "true",
        "LEADLOOP_SITE_HOSTS": hosts,
        "LEADLOOP_SITE_KEYS": keys,
        "COLUMNS": "300",
        "NO_COLOR": "1",
    }
    refused = CliRunner().invoke(app, ["api"], env=env)
    assert refused.exit_code == 1 and named in refused.output, refused.output
    assert "LEADLOOP_SITE_HOSTS" in refused.output and "Traceback" not in refused.output
    assert started == []
    get_settings.cache_clear()
    fine = CliRunner().invoke(
        app, ["api"], env={**env, "LEADLOOP_SITE_HOSTS": '{"site-key": ["https://Site.example:443/"]}'}
    )
    assert fine.exit_code == 0, fine.output
    assert len(started) == 1
