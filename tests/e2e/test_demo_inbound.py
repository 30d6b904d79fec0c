"""The demo's leads writing back, on the real dev server with the real worker and the demo's mailbox: Olivia answers
her welcome email "Yes, call me on Tuesday", Lukas's mail server sends a German out-of-office to the send's VERP
address; each message is stored, matched to its send, signalled, and counted in the lead's workflow: at the demo's
speed (a day a second) Olivia goes to sales and Lukas's drip waits his time away, counted in the cadence's days."""

import asyncio
import contextlib
import os
import re
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.intake import LeadIn
from leadloop.domain.models import LeadState
from leadloop.domain.recycle import current_recycle
from leadloop.domain.schedule import DemoClock
from leadloop.domain.scoring import current_scoring
from leadloop.domain.times import as_utc
from leadloop.infra.db import InboundMessage, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import enroll_leads
from leadloop.services.lead_client import LeadClient
from starter.demo import DEMO_BOUNCE_DOMAIN, demo_settings, writers_back
from starter.demo_inbound import AWAY, REPLY_TEXT, DemoLead, play_replies
from starter.mailbox import InboundRoute, serve_mailbox
from tests.conftest import client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import BIN, run

CADENCE = """\
name: hello
version: 1
default_locale: en
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
steps:
  - {id: welcome, wait: 0, template: welcome, subject: "Welcome {{ lead.first_name }}"}
  - {id: tips, wait: 30d, template: tips, subject: "Tips"}
"""
NAMESPACE = "e2e-demo"
OLIVIA = LeadIn(email="olivia.bennett@example.com", first_name="Olivia", last_name="Bennett", locale="en")
#: the demo's speed: a cadence day a second
DEMO_SPEED = 86400.0
LUKAS = LeadIn(email="lukas.mueller@example.de", first_name="Lukas", last_name="Müller", locale="de")


def test_the_demo_picks_olivia_and_lukas_and_sets_a_bounce_domain(make_settings: Any) -> None:
    maria = LeadIn(email="maria@example.gr", first_name="Μαρία")
    pair = writers_back([maria, OLIVIA, LUKAS], {"maria@example.gr", OLIVIA.email, LUKAS.email})
    assert pair == (
        DemoLead("Olivia Bennett", OLIVIA.email, "en"),
        DemoLead("Lukas Müller", LUKAS.email, "de"),
    )
    assert writers_back([maria, OLIVIA, LUKAS], {"maria@example.gr"}) is None  # resumed: nobody writes twice
    assert demo_settings(make_settings()).bounce_domain == DEMO_BOUNCE_DOMAIN
    assert demo_settings(make_settings(bounce_domain="b.example.org")).bounce_domain == "b.example.org"


async def until(check: Any, within: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        found = await check()
        if found or loop.time() > deadline:
            return found
        await asyncio.sleep(0.2)


@pytest.mark.e2e
async def test_the_demo_reply_and_out_of_office_reach_their_leads_workflows(
    dev_env: WorkflowEnvironment, make_settings: Any, tmp_path: Path
) -> None:
    import worker as worker_module

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    rules = tmp_path / "cadences"
    rules.mkdir()
    (rules / "hello.yaml").write_text(CADENCE)
    recycle = (PROJECT_ROOT / "cadences" / "recycle.yaml").read_text()
    (rules / "recycle.yaml").write_text(re.sub(r"cadence: [a-z-]+", "cadence: hello", recycle))
    port = free_port()
    settings = demo_settings(
        make_settings(
            database_url=db_url,
            smtp_port=port,
            cadence_dir=rules,
            temporal_address=client_address(dev_env.client),
            temporal_namespace=NAMESPACE,
            time_scale=DEMO_SPEED,
        )
    )
    # its own namespace: workflow ids are lead-<id>, and other tests' leads 1 and 2 live in the default one
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = NAMESPACE
    client = Client(**config)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    route = InboundRoute.from_settings(settings, sessions, client)
    mailbox = await serve_mailbox(settings.mail_dir, "127.0.0.1", port, inbound=route)
    handles = []
    try:
        async with worker_module.build_worker(client, settings):
            report = await enroll_leads(
                [OLIVIA, LUKAS],
                load_cadence(rules / "hello.yaml"),
                sessionmaker=sessions,
                client=client,
                task_queue=settings.task_queue,
                time_scale=settings.time_scale,
                source="demo",
                scoring=current_scoring(settings.scoring_file),
                recycle=current_recycle(rules),
            )
            ids = {r.email: r.lead_id for r in report.results}
            handles = [client.get_workflow_handle(f"lead-{i}") for i in ids.values()]
            stop = asyncio.Event()
            olivia = DemoLead("Olivia Bennett", OLIVIA.email)
            lukas = DemoLead("Lukas Müller", LUKAS.email, "de")
            sent = await asyncio.wait_for(play_replies(settings.mail_dir, "127.0.0.1", port, olivia, lukas, stop), 90)
            reply_to, away_to = (str(m["To"]) for m in sent)
            assert reply_to == "hello@leadloop.example"  # the welcome's From
            assert away_to.startswith("bounces+") and away_to.endswith(f"@{DEMO_BOUNCE_DOMAIN}")  # its Return-Path

            async def signalled() -> list[InboundMessage]:
                async with sessions() as session:
                    found = list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())
                return found if len(found) == 2 and all(r.status == "signalled" for r in found) else []

            reply_row, away_row = await until(signalled)

            async def with_sales() -> LeadState | None:
                state = await LeadClient(client, ids[OLIVIA.email]).state()
                return state if state.stage == "with_sales" else None

            olivia_state = await until(with_sales, 30)
            states = {email: await LeadClient(client, lead).state() for email, lead in ids.items()}
            lukas_started = (await client.get_workflow_handle(f"lead-{ids[LUKAS.email]}").describe()).start_time
            # where the README says to watch them
            env = {
                **os.environ,
                "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
                "LEADLOOP_TEMPORAL_NAMESPACE": NAMESPACE,
                "LEADLOOP_DATABASE_URL": db_url,
                "COLUMNS": "200",
            }
            status = await run(str(BIN / "leadloop"), "status", str(ids[OLIVIA.email]), env=env)
            listed = await run(str(BIN / "leadloop"), "inbound", "list", env=env)
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):  # ended already
                await handle.terminate("test over")
        mailbox.close()
        await mailbox.wait_closed()
        await engine.dispose()

    assert (reply_row.kind, reply_row.lead_id, reply_row.outbox_key) == (
        "human_reply",
        ids[OLIVIA.email],
        f"lead-{ids[OLIVIA.email]}.c0.welcome",
    )
    assert reply_row.source == "mailbox" and (reply_row.match_reason or "").startswith("In-Reply-To")
    assert REPLY_TEXT in reply_row.evidence["reply_text"] and "wrote:" not in reply_row.evidence["reply_text"]
    assert (away_row.kind, away_row.lead_id, away_row.outbox_key) == (
        "auto_reply",
        ids[LUKAS.email],
        f"lead-{ids[LUKAS.email]}.c0.welcome",
    )
    assert away_row.return_date == date.today() + AWAY
    assert "VERP" in (away_row.match_reason or "").upper()  # it went to the send's bounce address
    # the workflows heard them: the state query counts each once, by kind
    assert states[OLIVIA.email].inbound.human_reply == 1 and states[OLIVIA.email].inbound.auto_reply == 0
    assert states[LUKAS.email].inbound.auto_reply == 1 and states[LUKAS.email].inbound.human_reply == 0
    # her reply took Olivia to sales (whatever her score); Lukas's drip waits until he is back, in cadence days
    assert olivia_state is not None and olivia_state.stage == "with_sales", states[OLIVIA.email]
    lukas = states[LUKAS.email]
    assert lukas.back_at is not None and lukas.stage == "nurturing"
    assert lukas_started is not None
    clock = DemoClock(lukas_started.astimezone(UTC), DEMO_SPEED)  # his cadence clock (it starts with his workflow)
    came = clock.cadence_time(as_utc(away_row.received_at))
    assert AWAY <= lukas.back_at - came <= AWAY + timedelta(days=4), (lukas.back_at, came)
    assert status[0] == 0 and "inbound: human reply 1 (`leadloop inbound list`)" in status[1], status
    assert listed[0] == 0 and listed[1].count("signalled") == 2 and "auto_reply" in listed[1], listed
