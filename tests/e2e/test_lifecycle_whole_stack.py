"""The CRM's changes through the whole stack on loopback: dev server, worker process, SMTP catcher and `leadloop api`.

A lead converted through POST /leads/{id}/goals gets no further email (while a lead beside it does); a stopped lead
re-enrolled starts its new cadence as a new run of lead-<id>; a moved lead's next email comes from the new cadence.
Each with its bad input: unknown lead, unknown cadence, a suppressed lead's goal, a key without the scope."""

import asyncio
import os
import random
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.mail import email_hash
from leadloop.infra.db import Lead, Suppression, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from starter.mailbox import serve_mailbox
from tests.conftest import client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import BIN, run, start_worker
from tests.e2e.test_engagement_whole_stack import messages, wait_http
from tests.webhook_receiver import Receiver

WINDOW = 'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}'
ALPHA = f"""\
name: alpha
version: 1
default_locale: en
{WINDOW}
steps:
  - {{id: a1, wait: 0, template: welcome, subject: "Alpha one"}}
  - {{id: a2, wait: 2d, template: tips, subject: "Alpha two"}}
  - {{id: a3, wait: 1d, template: checkin, subject: "Alpha three"}}
"""
BETA = f"""\
name: beta
version: 1
default_locale: en
{WINDOW}
steps:
  - {{id: b1, wait: 0, template: tips, subject: "Beta one"}}
  - {{id: b2, wait: 20d, template: checkin, subject: "Beta two"}}
"""
ADMIN = {"x-api-key": "e2e-admin-key"}


@dataclass
class Whole:
    http: httpx.AsyncClient
    client: Client
    mail: Path
    db_url: str
    env: dict[str, str]

    def subjects(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in messages(self.mail) if address in str(m["To"])]

    async def subjects_when(self, address: str, count: int, within: float = 60) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            if len(found := self.subjects(address)) >= count:
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"{address}: {self.subjects(address)} after {within}s, expected {count}")

    async def enrol(self, name: str, cadence: str = "alpha") -> tuple[int, str]:
        address = f"{name}@example.com"
        made = await self.http.post("/leads", json={"email": address, "cadence": cadence}, headers=ADMIN)
        assert made.status_code == 201 and made.json()["workflow"] == "started", made.text
        return made.json()["lead_id"], address


@pytest.fixture
async def whole(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Whole]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    engine = make_engine(db_url)
    async with make_sessionmaker(engine)() as session:  # lead ids no other test's workflow has on this server
        session.add(Lead(id=random.randrange(10**8, 10**9), email="placeholder@example.com", attributes={}))
        await session.commit()
    await engine.dispose()
    rules = tmp_path / "cadences"
    rules.mkdir()
    (rules / "alpha.yaml").write_text(ALPHA)
    (rules / "beta.yaml").write_text(BETA)
    recycle = (PROJECT_ROOT / "cadences" / "recycle.yaml").read_text()
    (rules / "recycle.yaml").write_text(re.sub(r"cadence: [a-z-]+", "cadence: alpha", recycle))
    mail = tmp_path / "mail"
    smtp_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    mailbox = await serve_mailbox(mail, "127.0.0.1", smtp_port)
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_SMTP_PORT": str(smtp_port),
        "LEADLOOP_CADENCE_DIR": str(rules),
        "LEADLOOP_DEFAULT_CADENCE": "alpha",
        "LEADLOOP_PUBLIC_URL": api,
        "LEADLOOP_API_KEYS": '["e2e-admin-key"]',
        "LEADLOOP_TIME_SCALE": "43200",  # a cadence day lasts two seconds
        "LEADLOOP_DEMO": "true",  # the published secret key: fine here, refused by `leadloop api` otherwise
        "LEADLOOP_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1 (the demo allows it anyway)
        "COLUMNS": "200",
    }
    worker = await start_worker(env, tmp_path / "worker.log")
    with (tmp_path / "api.log").open("ab") as log:
        server = await asyncio.create_subprocess_exec(
            str(BIN / "leadloop"), "api", "--port", str(api_port), env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
        )
    client = with_pydantic(dev_env.client)
    try:
        await wait_http(f"{api}/healthz")
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            yield Whole(http, client, mail, db_url, env)
    finally:
        for process in (server, worker):
            process.terminate()
            await process.wait()
        mailbox.close()
        await mailbox.wait_closed()


async def key_for(whole: Whole, scope: str) -> dict[str, str]:
    code, out, err = await run(str(BIN / "leadloop"), "keys", "add", f"crm-{scope}", "--scope", scope, env=whole.env)
    assert code == 0, err
    return {"x-api-key": next(word for word in out.split() if word.startswith("ll_"))}


@pytest.mark.e2e
async def test_a_lead_converted_through_a_goal_gets_no_further_email(whole: Whole) -> None:
    converted, address = await whole.enrol("goal")
    _, other = await whole.enrol("beside")
    await whole.subjects_when(address, 1)
    marketing = await key_for(whole, "marketing")
    no_scope = await whole.http.post(f"/leads/{converted}/goals", json={"kind": "converted"}, headers=marketing)
    assert no_scope.status_code == 403
    assert (await whole.http.post("/leads/1/goals", json={"kind": "converted"}, headers=ADMIN)).status_code == 404
    sales = await key_for(whole, "sales")
    body = {"kind": "converted", "source": "salesforce", "reference": "OPP-1"}
    done = await whole.http.post(f"/leads/{converted}/goals", json=body, headers=sales)
    assert done.status_code == 200 and done.json()["stage"] == "converted", done.text
    result = await whole.client.get_workflow_handle(f"lead-{converted}").result()
    assert result["stage"] == "converted"
    # three cadence days later the lead beside it has had every step; the converted one only its first
    assert await whole.subjects_when(other, 3, 30) == ["Alpha one", "Alpha two", "Alpha three"]
    assert whole.subjects(address) == ["Alpha one"]
    again = await whole.http.post(f"/leads/{converted}/goals", json=body, headers=sales)
    assert again.status_code == 200 and again.json()["applied"] is False
    # a suppressed lead's goal: refused, its nurture untouched
    suppressed, gone = await whole.enrol("suppressed", "beta")
    engine = make_engine(whole.db_url)
    async with make_sessionmaker(engine)() as session:
        session.add(Suppression(email_hash=email_hash(gone), reason="unsubscribed"))
        await session.commit()
    await engine.dispose()
    refused = await whole.http.post(f"/leads/{suppressed}/goals", json={"kind": "converted"}, headers=sales)
    assert refused.status_code == 409 and "suppressed (unsubscribed)" in refused.json()["detail"]
    described = await whole.client.get_workflow_handle(f"lead-{suppressed}").describe()
    assert described.status == WorkflowExecutionStatus.RUNNING


@pytest.mark.e2e
async def test_a_stopped_lead_re_enrolled_starts_its_new_cadence_as_a_new_run(whole: Whole) -> None:
    lead, address = await whole.enrol("again")
    await whole.subjects_when(address, 1)
    stopped = await whole.http.post(f"/leads/{lead}/stop", json={"reason": "paused by the CRM"}, headers=ADMIN)
    assert stopped.status_code == 200 and stopped.json()["stage"] == "archived", stopped.text
    handle = whole.client.get_workflow_handle(f"lead-{lead}")
    first = await handle.describe()
    await handle.result()
    unknown = await whole.http.post(f"/leads/{lead}/enrolments", json={"cadence": "gamma"}, headers=ADMIN)
    assert unknown.status_code == 422 and "unknown cadence 'gamma'" in unknown.text
    sales = await key_for(whole, "sales")
    no_scope = await whole.http.post(f"/leads/{lead}/enrolments", json={"cadence": "beta"}, headers=sales)
    assert no_scope.status_code == 403
    assert (await handle.describe()).run_id == first.run_id  # none of those started a run
    again = await whole.http.post(f"/leads/{lead}/enrolments", json={"cadence": "beta"}, headers=ADMIN)
    assert again.status_code == 201 and again.json()["workflow"] == "started", again.text
    assert await whole.subjects_when(address, 2) == ["Alpha one", "Beta one"]
    described = await whole.client.get_workflow_handle(f"lead-{lead}").describe()
    assert described.run_id != first.run_id and described.status == WorkflowExecutionStatus.RUNNING
    running = await whole.http.post(f"/leads/{lead}/enrolments", json={"cadence": "alpha"}, headers=ADMIN)
    assert running.status_code == 409 and "use move" in running.json()["detail"]


@pytest.mark.e2e
async def test_a_moved_leads_next_email_comes_from_the_new_cadence(whole: Whole) -> None:
    lead, address = await whole.enrol("moved")
    _, other = await whole.enrol("stays")
    await whole.subjects_when(address, 1)
    unknown = await whole.http.post(f"/leads/{lead}/move", json={"cadence": "gamma"}, headers=ADMIN)
    assert unknown.status_code == 422
    nobody = await whole.http.post("/leads/1/move", json={"cadence": "beta"}, headers=ADMIN)
    assert nobody.status_code == 404
    moved = await whole.http.post(f"/leads/{lead}/move", json={"cadence": "beta"}, headers=ADMIN)
    assert moved.status_code == 200, moved.text
    subjects = await whole.subjects_when(address, 2)
    assert subjects[:2] == ["Alpha one", "Beta one"]
    # once the lead beside it has had all of alpha, the moved one has had nothing more (beta's next waits 20 days)
    assert await whole.subjects_when(other, 3, 30) == ["Alpha one", "Alpha two", "Alpha three"]
    assert whole.subjects(address) == ["Alpha one", "Beta one"]


@pytest.mark.e2e
async def test_a_leads_own_lifecycle_reaches_the_crm_signed_and_in_order(whole: Whole) -> None:
    """The lead's workflow announces what happens to it; the worker delivers each to the CRM's endpoint, signed
    (the receiver verifies with standardwebhooks), once per webhook-id, in order per lead, without personal data."""
    receiver = Receiver()
    await receiver.start()
    try:
        code, out, err = await run(
            str(BIN / "leadloop"), "webhooks", "add", receiver.url, "--name", "crm", env=whole.env
        )
        assert code == 0, err
        receiver.secret = re.search(r"(whsec_\S+)", out)[1]  # type: ignore[index]
        stopped, stopped_address = await whole.enrol("stopped-lead")
        converted, _ = await whole.enrol("converted-lead")
        moved, _ = await whole.enrol("moved-lead")
        await whole.subjects_when(stopped_address, 1)
        sales = {"x-api-key": "e2e-admin-key"}
        answers = [
            await whole.http.post(f"/leads/{stopped}/stop", json={"reason": "account team"}, headers=sales),
            await whole.http.post(f"/leads/{converted}/goals", json={"kind": "meeting_booked"}, headers=sales),
            await whole.http.post(f"/leads/{moved}/move", json={"cadence": "beta"}, headers=sales),
        ]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        await receiver.wait_for(6, seconds=90)
    finally:
        await receiver.stop()
    assert receiver.of_lead(stopped) == ["lead.enrolled", "lead.stopped"]
    assert receiver.of_lead(converted) == ["lead.enrolled", "lead.goal"]
    assert receiver.of_lead(moved) == ["lead.enrolled", "lead.moved"]
    assert len(receiver.ids()) == len(set(receiver.ids())) and receiver.refused == 0
    goal = next(r for r in receiver.received if r.type == "lead.goal")
    assert goal.data["actor"] == "api-key-1" and goal.data["data"]["kind"] == "meeting_booked"
    assert goal.data["stage"] == "converted"
    assert all("@example.com" not in r.body for r in receiver.received)  # this endpoint gets no personal data
