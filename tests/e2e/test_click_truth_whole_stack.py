"""The whole stack on loopback (dev server, worker process, SMTP catcher, `leadloop api` behind a trusted proxy):
a Safe Links-like scanner that clicks every email of a Microsoft 365 lead 20 s after delivery, with a browser's
headers from Microsoft's published range, and detonates the landing page, never hands the lead to sales; the same
kind of lead, once a person clicks from home and the landing page's beacon reports the visit, goes to its rep."""

import asyncio
import json
import os
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.models import LeadNurtureResult, LeadState
from leadloop.infra.db import EngagementEvent, Outbox, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from starter.mailbox import serve_mailbox
from tests.conftest import client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import BIN, run, start_worker
from tests.e2e.test_engagement_whole_stack import FIREFOX, NAVIGATE, messages, wait_http

CADENCE = """\
name: truth
version: 1
default_locale: en
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
escalation: {threshold: 40}
steps:
  - {id: welcome, wait: 0, template: welcome, subject: "Welcome {{ lead.first_name }}"}
  - {id: tips, wait: 1d, template: tips, subject: "Tips"}
  - {id: checkin, wait: 1d, template: checkin, subject: "Checking in"}
"""
# profile 10 + a confirmed pricing click 25 + its page 10 = 45: over the threshold; unconfirmed, the click is 30%
SCORING = """\
version: 1
profile: {industry: {software: 10}}
engagement:
  - {name: pricing-click, kind: click, url: "*/pricing*", points: 25}
  - {name: click, kind: click, points: 10}
  - {name: open, kind: open, points: 5, cap: 10}
  - {name: visit, kind: visit, points: 10}
"""
ROUTING = """\
version: 1
rules:
  - {name: everyone, team: emea}
"""
REPS = """\
teams:
  - name: emea
    reps:
      - {email: sam@sales.example, name: Sam Taylor, timezone: Europe/London}
"""
#: A cadence day lasts ten seconds: the scanner has time to click each email while the lead's workflow runs.
SCALE = 8640
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
#: What Safe Links sends: a real browser's headers, from Microsoft 365's published range (40.92.0.0/15).
SCANNER = {
    "user-agent": CHROME,
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
    "accept-language": "en-US,en;q=0.9",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
    "sec-fetch-user": "?1",
}
HOME = "94.66.1.20"  # a person's broadband line


async def mails_to(folder: Path, address: str, count: int, within: float = 60) -> list[EmailMessage]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        found = [m for m in messages(folder) if address in str(m["To"])]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} mails to {address} within {within}s")


async def until(handle: WorkflowHandle[Any, Any], check: Any, within: float = 30) -> LeadState:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        state: LeadState = await handle.query("state", result_type=LeadState)
        if check(state):
            return state
        if loop.time() > deadline:
            raise AssertionError(f"never reached: {state}")
        await asyncio.sleep(0.1)


class Stack:
    """The running stack as the test's actors reach it."""

    def __init__(self, api: str, mail: Path, sessions: Any, client: Client) -> None:
        self.api, self.mail, self.sessions, self.client = api, mail, sessions, client

    async def delivered_20s_ago(self, message: EmailMessage) -> None:
        """The email reached the mailbox 20 s ago (backdated, not waited for): past every "too soon" rule."""
        async with self.sessions() as session:
            await session.execute(
                update(Outbox)
                .where(Outbox.key == str(message["X-Leadloop-Outbox-Key"]))
                .values(sent_at=datetime.now(UTC) - timedelta(seconds=20))
            )
            await session.commit()

    async def visit(self, http: httpx.AsyncClient, message: EmailMessage, headers: dict[str, str]) -> list[Any]:
        """Follow every tracked link of `message` to its landing page and let the page's beacon report; the
        beacon's answers."""
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        links = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+/c/[^"]+)"', html)]
        answers = []
        for link in links[:1]:  # the email's one visible link, pricing (the hidden honeypot comes last)
            click = await http.get(link, headers=headers)
            assert click.status_code == 302
            landing = click.headers["location"]
            assert urlsplit(landing).path == "/site/pricing"
            page = await http.get(landing, headers=headers)
            assert page.status_code == 200 and 'data-site-key="e2e-site-key"' in page.text
            visitor = parse_qs(urlsplit(landing).query)["ll"][0]
            beacon = await http.post(
                "/v",
                content=f'{{"site_key": "e2e-site-key", "visitor": "{visitor}", "url": "{self.api}/site/pricing"}}',
                headers={"content-type": "text/plain", "user-agent": headers["user-agent"], "origin": self.api},
            )
            assert beacon.status_code == 202
            answers.append(beacon.json())
        return answers

    async def scanned(self, lead_id: int, message: EmailMessage, address: str) -> None:
        """Safe Links checks the email: loads its images and detonates every link, landing page and all."""
        await self.delivered_20s_ago(message)
        as_scanner = {"x-forwarded-for": address}
        async with httpx.AsyncClient(base_url=self.api, headers=as_scanner) as http:
            html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
            pixel = re.search(r'<img src="([^"]+/o/[^"]+\.gif)"', html)
            assert pixel
            assert (await http.get(pixel.group(1).replace("&amp;", "&"), headers=SCANNER)).status_code == 200
            # the sandbox runs the page's script from the same range: a machine's page view, confirming nothing
            assert await self.visit(http, message, SCANNER) == [{"recorded": True}]


@pytest.mark.e2e
async def test_a_safe_links_scanner_never_escalates_and_a_person_confirmed_by_the_landing_page_does(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    rules = tmp_path / "cadences"
    rules.mkdir()
    (rules / "truth.yaml").write_text(CADENCE)
    (rules / "scoring.yaml").write_text(SCORING)
    (rules / "routing.yaml").write_text(ROUTING)
    (tmp_path / "reps.yaml").write_text(REPS)
    mail = tmp_path / "mail"
    smtp_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    mailbox = await serve_mailbox(mail, "127.0.0.1", smtp_port)
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-truth",
        "LEADLOOP_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_SMTP_PORT": str(smtp_port),
        "LEADLOOP_CADENCE_DIR": str(rules),
        "LEADLOOP_SCORING_FILE": str(rules / "scoring.yaml"),
        "LEADLOOP_ROUTING_FILE": str(rules / "routing.yaml"),
        "LEADLOOP_DEFAULT_CADENCE": "truth",
        "LEADLOOP_TIME_SCALE": str(SCALE),
        "LEADLOOP_PUBLIC_URL": api,
        "LEADLOOP_SITE_URL": f"{api}/site",
        "LEADLOOP_API_KEYS": '["e2e-intake-key"]',
        "LEADLOOP_SITE_KEYS": '["e2e-site-key"]',
        # the service sits behind a proxy on the loopback, which names each client in X-Forwarded-For
        "LEADLOOP_TRUSTED_PROXIES": '["127.0.0.1"]',
        "LEADLOOP_DEMO": "true",  # the published secret key: fine here, refused by `leadloop api` otherwise
        "COLUMNS": "200",
    }
    code, out, err = await run(str(BIN / "leadloop"), "reps", "import", str(tmp_path / "reps.yaml"), env=env)
    assert code == 0, err
    worker = await start_worker(env, tmp_path / "worker.log")
    with (tmp_path / "api.log").open("ab") as log:
        server = await asyncio.create_subprocess_exec(
            str(BIN / "leadloop"), "api", "--port", str(api_port), env=env, cwd=PROJECT_ROOT, stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    engine = make_engine(db_url)
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-truth"
    stack = Stack(api, mail, make_sessionmaker(engine), Client(**config))
    try:
        await wait_http(f"{api}/healthz")
        ids = {}
        async with httpx.AsyncClient(base_url=api) as http:
            for email, name in (("anna@contoso.example", "Anna"), ("bruno@contoso.example", "Bruno")):
                lead = {"email": email, "first_name": name, "industry": "software", "timezone": "Europe/London"}
                created = await http.post("/leads", json=lead, headers={"x-api-key": "e2e-intake-key"})
                assert created.status_code == 201, created.text
                ids[name] = created.json()["lead_id"]
        anna = stack.client.get_workflow_handle(f"lead-{ids['Anna']}", result_type=LeadNurtureResult)
        bruno = stack.client.get_workflow_handle(f"lead-{ids['Bruno']}", result_type=LeadNurtureResult)

        async def anna_behind_safe_links() -> LeadNurtureResult:
            """Every email Anna gets is clicked by the scanner, and nothing else happens to it."""
            for n, step in enumerate(("welcome", "tips", "checkin"), start=1):
                message = (await mails_to(mail, "anna@contoso.example", n))[n - 1]
                assert str(message["X-Leadloop-Outbox-Key"]).endswith(f".{step}")
                await stack.scanned(ids["Anna"], message, f"40.92.{n}.17")
                if n < 3:  # the workflow weighs each scan before the next email (the last may find it done)
                    state = await until(anna, lambda s, n=n: s.engagement.machine_clicks == n)
                    assert state.stage == "nurturing" and state.engagement.human_clicks == 0
            return await asyncio.wait_for(anna.result(), 60)

        async def bruno_reads_his_email() -> LeadState:
            [message] = await mails_to(mail, "bruno@contoso.example", 1)
            await stack.scanned(ids["Bruno"], message, "40.93.8.2")  # his company's Safe Links checks it first
            home = {**NAVIGATE, "x-forwarded-for": HOME}
            async with httpx.AsyncClient(base_url=api, headers={"x-forwarded-for": HOME}) as http:
                html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
                link = re.findall(r'href="([^"]+/c/[^"]+)"', html)[0].replace("&amp;", "&")
                click = await http.get(link, headers=home)
                assert click.status_code == 302
                # his click alone: a person's, by every sign, but no landing page has said so yet
                state = await until(bruno, lambda s: s.engagement.unconfirmed_clicks == 1)
                assert state.stage == "nurturing" and state.score.total < 40
                landing = click.headers["location"]
                assert (await http.get(landing, headers=home)).status_code == 200
                beacon = await http.post(
                    "/v",
                    content=f'{{"site_key": "e2e-site-key", "visitor": "{parse_qs(urlsplit(landing).query)["ll"][0]}",'
                    f' "url": "{api}/site/pricing"}}',
                    headers={"content-type": "text/plain", "user-agent": FIREFOX, "origin": api},
                )
                assert beacon.status_code == 202 and beacon.json() == {"recorded": True, "confirmed": True}
            return await until(bruno, lambda s: s.stage == "with_sales" and s.assigned_rep is not None)

        anna_done, bruno_state = await asyncio.gather(anna_behind_safe_links(), bruno_reads_his_email())

        # Anna: three emails, each clicked and detonated by the scanner; never handed to sales
        assert anna_done.stage == "cadence_complete"
        assert not [m for m in messages(mail) if "Anna" in str(m["Subject"]) and "sam@" in str(m["To"])]
        async with stack.sessions() as session:
            rows = list(
                (await session.execute(select(EngagementEvent).where(EngagementEvent.lead_id == ids["Anna"]))).scalars()
            )
        assert sorted(r.kind for r in rows) == ["click"] * 3 + ["open"] * 3 + ["visit"] * 3
        assert all(not r.human and r.machine_class == "gateway" for r in rows), [(r.kind, r.reason) for r in rows]
        assert not [r for r in rows if r.confirms or r.confirmed_at]

        # Bruno: his confirmed click and its page took him to Sam; and he read the email to click in it, so the
        # open that only the gateway's fetch had recorded is his too: 10 + 25 + 10 + 5
        assert bruno_state.assigned_rep == "Sam Taylor" and bruno_state.score.total == 50
        assert bruno_state.engagement.confirmed_clicks == 1 and bruno_state.engagement.machine_clicks == 1
        assert bruno_state.engagement.human_opens == 1
        notes = [str(m["Subject"]) for m in await mails_to(mail, "sam@sales.example", 1)]
        assert "Bruno" in notes[0] and "score 50" in notes[0], notes
        assert not [n for n in notes if "Anna" in n], notes

        # the operator reads both stories: each hit's verdict, and which click a landing page confirmed
        stories = {}
        for name in ("Anna", "Bruno"):
            code, out, err = await run(str(BIN / "leadloop"), "history", str(ids[name]), "--json", env=env)
            assert code == 0, err
            stories[name] = [json.loads(line)["detail"] for line in out.splitlines()]
        assert [d for d in stories["Bruno"] if d.startswith("click") and "confirmed by the landing page" in d]
        assert [d for d in stories["Bruno"] if "confirmation of click" in d]
        assert all("confirmed by the landing page" not in d for d in stories["Anna"])
        assert len([d for d in stories["Anna"] if d.startswith("click") and "[gateway, confidence" in d]) == 3
    finally:
        for proc in (server, worker):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        await engine.dispose()
        mailbox.close()
        await mailbox.wait_closed()
