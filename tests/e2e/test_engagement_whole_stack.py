"""The whole stack on loopback: dev server, worker process, SMTP catcher and the HTTP service under uvicorn.

A lead enrolled through POST /leads gets its email; the test reads it as a mail client would, fetches the
pixel, clicks a link like a browser, the landing page's beacon reports the visit, the score crosses the
threshold and the chosen rep receives the notification with working Accept / Reject links."""

import asyncio
import email
import email.policy
import json
import os
import re
import signal
import uuid
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.models import LeadState
from leadloop.domain.search import ASSIGNED_REP, LEAD_SCORE, LEAD_STAGE
from leadloop.infra.migrate import upgrade_database
from starter.mailbox import serve_mailbox
from tests.conftest import client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import BIN, run, start_worker

CADENCE = """\
name: hot
version: 1
default_locale: en
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
escalation: {threshold: 50}
steps:
  - {id: welcome, wait: 0, template: welcome, subject: "Welcome {{ lead.first_name }}"}
  - {id: tips, wait: 30d, template: tips, subject: "Tips"}
"""
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
  - {name: greece, when: {country: [GR]}, team: south}
  - {name: rest, team: emea}
"""
REPS = """\
teams:
  - name: south
    sla: 4h
    reps:
      - {email: nikos@sales.example, name: Νίκος Αλεξίου, timezone: Europe/Athens}
  - name: emea
    reps:
      - {email: sam@sales.example, name: Sam Taylor, timezone: Europe/London}
"""
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
NAVIGATE = {
    "user-agent": FIREFOX,
    "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "accept-language": "el-GR,el;q=0.9,en;q=0.8",
    "sec-fetch-mode": "navigate",
    "sec-fetch-dest": "document",
}


def messages(folder: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for p in sorted(folder.glob("*.eml"))
    ]


async def mail_to(folder: Path, address: str, within: float = 60) -> EmailMessage:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for message in messages(folder):
            if address in str(message["To"]):
                return message
        await asyncio.sleep(0.2)
    raise AssertionError(f"no mail to {address} within {within}s; have {[str(m['To']) for m in messages(folder)]}")


async def wait_http(url: str, within: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient() as http:
        while loop.time() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@pytest.mark.e2e
async def test_open_click_and_visit_move_the_lead_to_the_right_rep(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    rules = tmp_path / "cadences"
    rules.mkdir()
    (rules / "hot.yaml").write_text(CADENCE)
    (rules / "scoring.yaml").write_text(SCORING)
    (rules / "routing.yaml").write_text(ROUTING)
    recycle = (PROJECT_ROOT / "cadences" / "recycle.yaml").read_text()
    (rules / "recycle.yaml").write_text(re.sub(r"cadence: [a-z-]+", "cadence: hot", recycle))
    (tmp_path / "reps.yaml").write_text(REPS)
    mail = tmp_path / "mail"
    smtp_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    mailbox = await serve_mailbox(mail, "127.0.0.1", smtp_port)
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-engage",
        "LEADLOOP_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_SMTP_PORT": str(smtp_port),
        "LEADLOOP_CADENCE_DIR": str(rules),
        "LEADLOOP_SCORING_FILE": str(rules / "scoring.yaml"),
        "LEADLOOP_ROUTING_FILE": str(rules / "routing.yaml"),
        "LEADLOOP_DEFAULT_CADENCE": "hot",
        "LEADLOOP_PUBLIC_URL": api,
        "LEADLOOP_SITE_URL": f"{api}/site",
        "LEADLOOP_API_KEYS": '["e2e-intake-key"]',
        "LEADLOOP_SITE_KEYS": '["e2e-site-key"]',
        "LEADLOOP_MACHINE_MIN_DELAY": "0",
        "LEADLOOP_DEMO": "true",  # the published secret key: fine here, refused by `leadloop api` otherwise
        "COLUMNS": "200",
    }
    code, out, err = await run(str(BIN / "leadloop"), "reps", "import", str(tmp_path / "reps.yaml"), env=env)
    assert code == 0, err
    assert "2 rep(s) added" in out
    worker = await start_worker(env, tmp_path / "worker.log")
    with (tmp_path / "api.log").open("ab") as log:
        server = await asyncio.create_subprocess_exec(
            str(BIN / "leadloop"),
            "api",
            "--port",
            str(api_port),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        await wait_http(f"{api}/healthz")
        async with httpx.AsyncClient(base_url=api) as http:
            lead = {
                "email": "Maria@Example.gr",
                "first_name": "Μαρία",
                "company": "Ακρόπολις",
                "country": "GR",
                "industry": "software",
                "timezone": "Europe/Athens",
                "locale": "el",
            }
            created = await http.post("/leads", json=lead, headers={"x-api-key": "e2e-intake-key"})
            assert created.status_code == 201, created.text
            assert created.json()["workflow"] == "started"
            lead_id = created.json()["lead_id"]
            again = await http.post("/leads", json=lead, headers={"x-api-key": "e2e-intake-key"})
            assert again.status_code == 200 and again.json()["lead_id"] == lead_id

            welcome = await mail_to(mail, "maria@example.gr", 60)
            assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert str(welcome["List-Unsubscribe"]).startswith(f"<{api}/u/")
            html = welcome.get_body(("html",)).get_content()  # type: ignore[union-attr]
            text = welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert "Athens, Greece" in text and f"{api}/u/" in text  # postal address and a visible unsubscribe link
            pixel = re.search(r'<img src="([^"]+/o/[^"]+\.gif)"', html)
            links = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+/c/[^"]+)"', html)]
            assert pixel and links
            assert "site.example" not in html and f"{api}/site/pricing" not in html  # every link goes through /c/

            # the reader opens the email: the mail client fetches the pixel
            gif = await http.get(pixel.group(1).replace("&amp;", "&"), headers={"user-agent": THUNDERBIRD})
            assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"
            # ... and clicks "pricing" in a browser: a redirect to the page, carrying the visitor id
            click = await http.get(links[0], headers=NAVIGATE)
            assert click.status_code == 302
            landing = urlsplit(click.headers["location"])
            assert landing.path == "/site/pricing"
            visitor = parse_qs(landing.query)["ll"][0]
            page = await http.get(click.headers["location"], headers=NAVIGATE)
            assert page.status_code == 200 and 'data-site-key="e2e-site-key"' in page.text
            # the page's beacon.js reports the page view (as a browser's sendBeacon does: text/plain)
            beacon = await http.post(
                "/v",
                content=f'{{"site_key": "e2e-site-key", "visitor": "{visitor}", "url": "{api}/site/pricing"}}',
                headers={"content-type": "text/plain", "user-agent": FIREFOX, "origin": api},
            )
            # ... which proves the click: a person arrived on the page it led to (a scanner's click proves nothing)
            assert beacon.status_code == 202 and beacon.json() == {"recorded": True, "confirmed": True}

            # profile 10 + open 5 + pricing click 25 + visit 10 = 50: the lead goes to the Greek team's rep
            note = await mail_to(mail, "nikos@sales.example", 60)
            assert "score 50" in str(note["Subject"]) and "Μαρία" in str(note["Subject"])
            body = note.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert "pricing-click" in body and "rule greece" in body
            accept = re.search(r"Accept: (\S+)", body)
            assert accept
            link = await http.get(accept.group(1))
            assert link.status_code == 200 and "Accept this lead" in link.text and "Μαρία" in link.text

        client = with_pydantic(dev_env.client)
        from temporalio.client import Client

        config = client.config()
        config["namespace"] = "e2e-engage"
        client = Client(**config)
        handle = client.get_workflow_handle(f"lead-{lead_id}")
        state = await handle.query("state", result_type=LeadState)
        assert state.stage == "with_sales" and state.assigned_rep == "Νίκος Αλεξίου"
        assert state.engagement.human_opens == 1 and state.engagement.human_clicks == 1 and state.engagement.visits == 1
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(LEAD_STAGE) == "with_sales" and attributes.get(LEAD_SCORE) == 50
        assert attributes.get(ASSIGNED_REP) == f"rep-{state.assigned_rep_id}"
        assert len(messages(mail)) == 2  # the drip paused: no second nurture email

        # the rep says "not ready": the lead goes back to nurture in a fresh run; the operator reads the story
        code, out, err = await run(
            str(BIN / "leadloop"), "reject", str(lead_id), "--reason", "not_ready", "--note", "next quarter", env=env
        )
        assert code == 0, err
        for _ in range(100):
            code, out, err = await run(str(BIN / "leadloop"), "history", str(lead_id), env=env)
            if "continued in a fresh history" in out:
                break
            await asyncio.sleep(0.2)
        assert code == 0, err
        story = [line for line in out.splitlines() if "│" in line]
        expected = [
            "created (cadence 'hot')",
            "started: cadence 'hot' v1, cycle 0",
            "step 'welcome' sent",
            "open — human",
            "/site/pricing — human",
            "visit",
            "→ 50",
            "stage nurturing → with_sales",
            "assigned to Νίκος Αλεξίου",
            "notify rep-",
            "reject accepted",
            "rejected (not_ready)",
            "next quarter",
            "run ended: continued as new",
            "continued in a fresh history: cadence 'hot' v1, cycle 1",
        ]
        positions = []
        for text in expected:
            found = [i for i, line in enumerate(story) if text in line]
            assert found, f"{text!r} missing from the history:\n{out}"
            positions.append(found[0])
        assert positions == sorted(positions), out  # a story, in the order it happened
        code, out, _ = await run(str(BIN / "leadloop"), "history", str(lead_id), "--json", env=env)
        entries = [json.loads(line) for line in out.splitlines()]
        assert {e["run"] for e in entries} >= {None, 1, 2}
        assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
        code, _, err = await run(str(BIN / "leadloop"), "history", "987654", env=env)
        assert code == 1 and "no lead 987654" in err
    finally:
        for proc in (server, worker):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()
        mailbox.close()
        await mailbox.wait_closed()
