"""Operator commands against the real dev server: `leadloop status` and `leadloop list` (visibility)."""

import asyncio
import os
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.domain.cadence import Cadence, Escalation
from leadloop.domain.crm_webhooks import delivery_workflow_id
from leadloop.domain.mail import email_hash
from leadloop.domain.models import EngagementEvent as Event
from leadloop.domain.models import EngagementInput, SendEmailInput, SendEmailResult
from leadloop.domain.scoring import ScoringConfig
from leadloop.infra.db import (
    Assignment,
    EngagementEvent,
    Lead,
    Outbox,
    Rep,
    Suppression,
    WebhookDelivery,
    make_engine,
    make_sessionmaker,
)
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from starter.api import create_app
from tests.conftest import BIN, client_address, with_pydantic
from tests.e2e.test_drip_whole_stack import run
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

CADENCE = Cadence.model_validate(
    {
        "name": "ops",
        "version": 1,
        "send_window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
        "steps": [
            {"id": "first", "wait": "0", "template": "welcome", "subject": "hi"},
            {"id": "second", "wait": "30d", "template": "tips", "subject": "hi"},
        ],
        "escalation": Escalation(threshold=500).model_dump(),
    }
)
SCORING = ScoringConfig.model_validate(
    {
        "version": 1,
        "profile": {"industry": {"software": 20}},
        "engagement": [{"name": "click", "kind": "click", "points": 30}],
    }
)


@activity.defn(name="send_email")
async def send_email(input: SendEmailInput) -> SendEmailResult:
    key = f"lead-{input.lead_id}.c{input.cycle}.{input.step_id}"
    return SendEmailResult(status="sent", outbox_key=key, message_id=f"<{key}@x>")


@pytest.mark.e2e
async def test_status_and_list_find_leads_by_stage_score_and_cadence(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-ops"
    client = Client(**config)
    queue = f"ops-{uuid.uuid4()}"
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "LEADLOOP_DATABASE_URL": db_url,
    }
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        for lead_id, industry in ((8001, "software"), (8002, "retail")):
            lead = Lead(id=lead_id, email="x@example.com", timezone="Europe/Athens", industry=industry)
            await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=1.0, source="test", scoring=SCORING)
        click = Event(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/")
        await client.get_workflow_handle(workflow_id(8001)).signal("engagement", EngagementInput(events=[click]))
        for _ in range(100):  # visibility follows within moments
            code, out, err = await run(str(BIN / "leadloop"), "list", "--min-score", "40", env=env)
            if "8001" in out:
                break
            await asyncio.sleep(0.2)
        assert code == 0, err
        assert "8001" in out and "8002" not in out and "50" in out and "second" in out
        code, out, _ = await run(str(BIN / "leadloop"), "list", "--stage", "nurturing", "--cadence", "ops", env=env)
        assert "2 lead(s)" in out
        code, out, err = await run(str(BIN / "leadloop"), "status", "8001", env=env)
        assert code == 0, err
        assert "lead 8001" in out and "nurturing" in out and "score 50 / 500" in out
        assert "industry=software" in out and "+20" in out and "click click" in out and "step 2 of 2" in out
        code, _, err = await run(str(BIN / "leadloop"), "list", "--stage", "sleeping", env=env)
        assert code == 1 and "unknown stage 'sleeping'" in err
        code, _, err = await run(str(BIN / "leadloop"), "list", "--cadence", "x' OR '1'='1", env=env)
        assert code == 1 and "is not a cadence name" in err
        code, _, err = await run(str(BIN / "leadloop"), "status", "9999", env=env)
        assert code == 1 and "lead 9999" in err
        code, out, err = await run(str(BIN / "leadloop"), "pause", "8002", "--note", "asked for a break", env=env)
        assert code == 0 and "paused" in out, err
        for _ in range(50):
            code, out, _ = await run(str(BIN / "leadloop"), "status", "8002", env=env)
            if " paused " in out:
                break
            await asyncio.sleep(0.1)
        assert " paused " in out and "leadloop resume" in out
        code, out, err = await run(str(BIN / "leadloop"), "resume", "8002", env=env)
        assert code == 0 and "resumed" in out, err
        # not in leadloop's database (enrolled by hand here): the story comes from Temporal alone
        code, out, err = await run(str(BIN / "leadloop"), "history", "8002", env=env)
        assert code == 0, err
        assert "signal pause: asked for a break" in out and "signal resume" in out and "stage nurturing" in out
        for lead_id in (8001, 8002):
            await client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")


@pytest.mark.e2e
async def test_forget_erases_the_person_everywhere_and_keeps_them_out(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    async with maker() as session:
        lead = Lead(
            email="maria@example.gr",
            first_name="Μαρία",
            last_name="Παππά",
            company="Ακρόπολις",
            timezone="Europe/Athens",
            attributes={"phone": "+30 210 000"},
        )
        session.add(lead)
        await session.flush()
        lead_id = lead.id
        session.add(
            Outbox(
                key=f"lead-{lead_id}.c0.first",
                lead_id=lead_id,
                cycle=0,
                step_id="first",
                cadence="ops",
                status="sent",
                message_id="<m@x>",
                subject="Γεια σου Μαρία",
            )
        )
        session.add(
            EngagementEvent(
                id="e1",
                lead_id=lead_id,
                kind="click",
                human=True,
                reason="browser",
                url="https://s.example/?who=maria",
                user_agent="Firefox",
                client_ip="10.1.2.3",
            )
        )
        await session.commit()
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-ops"
    client = Client(**config)
    queue = f"ops-{uuid.uuid4()}"
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_TASK_QUEUE": queue,
    }
    leadloop = str(BIN / "leadloop")
    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[LeadNurtureWorkflow],
            activities=[send_email, announce_lifecycle],
            workflow_runner=workflow_runner(),
        ):
            async with maker() as session:
                row = await session.get(Lead, lead_id)
                assert row is not None
                await start_lead(client, row, CADENCE, task_queue=queue, time_scale=1.0, source="test")
            handle = client.get_workflow_handle(workflow_id(lead_id))
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

            # bad input and a change of mind change nothing
            code, _, err = await run(leadloop, "forget", "not-an-address", "--yes", env=env)
            assert code == 1 and "not a valid email address" in err
            code, _, err = await run(leadloop, "forget", "maria@example.gr", env=env)  # no terminal: no consent
            assert code == 1 and "nothing erased" in err
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

            code, out, err = await run(leadloop, "forget", "Maria@Example.GR", "--yes", env=env)
            assert code == 0, err
            assert f"lead {lead_id} erased: workflow ended, 1 Temporal run(s) deleted" in out
        async with maker() as session:
            row = await session.get(Lead, lead_id)
            assert row is not None and row.erased_at is not None
            assert row.email == f"erased-{lead_id}@erased.invalid"
            assert (row.first_name, row.last_name, row.company, row.attributes) == (None, None, None, {})
            sent = await session.get(Outbox, f"lead-{lead_id}.c0.first")
            assert sent is not None and sent.subject is None and sent.status == "sent"  # counts stay, text goes
            click = await session.get(EngagementEvent, "e1")
            assert click is not None and (click.url, click.user_agent, click.client_ip) == (None, None, None)
            assert click.kind == "click" and click.human
            suppressed = await session.get(Suppression, email_hash("maria@example.gr"))
            assert suppressed is not None and suppressed.reason == "erased"
            dump = " ".join(str(v) for v in (row.email, row.attributes, sent.subject, click.url))
            assert "maria" not in dump.lower() and "Μαρία" not in dump
        for _ in range(100):  # the server deletes the run's history shortly after the request
            if not [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id(lead_id)}'")]:
                break
            await asyncio.sleep(0.2)
        with pytest.raises(RPCError):
            await handle.fetch_history()

        # never enrolled again, and the erased row cannot be revived
        code, out, err = await run(leadloop, "enroll", "--email", "maria@example.gr", "--cadence", "welcome", env=env)
        assert code == 0, err
        assert "suppressed" in out
        code, _, err = await run(leadloop, "lead", "update", str(lead_id), "--company", "X", env=env)
        assert code == 1 and "was erased on request" in err
        code, out, err = await run(leadloop, "forget", "nobody@example.org", "--yes", env=env)
        assert code == 0 and "on the suppression list now" in out, err
    finally:
        await engine.dispose()


@pytest.mark.e2e
async def test_lead_commands_print_hostile_text_literally(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """status, state, list, history, pause, resume, accept and reject with markup in names, notes and reasons."""
    from tests.starter.test_cli_markup import END_BOLD, LINK, RED, assert_literal, leadloop

    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-ops"
    client = Client(**config)
    queue = f"ops-{uuid.uuid4()}"
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env |= {
        "FORCE_COLOR": "1",
        "TERM": "xterm-256color",
        "COLUMNS": "600",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops",
    }
    scoring = SCORING.model_copy(update={"profile": SCORING.profile.model_copy(update={"industry": {LINK: 20}})})
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        lead = Lead(
            id=8101, email="x@example.com", first_name=END_BOLD, company=LINK, industry=LINK, timezone="Europe/Oslo"
        )
        await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=1.0, source="test", scoring=scoring)
        handle = client.get_workflow_handle(workflow_id(8101))
        code, raw = await leadloop(env, "pause", "8101", "--note", END_BOLD)
        assert code == 0, raw
        for _ in range(50):
            code, raw = await leadloop(env, "status", "8101")
            if " paused " in raw:
                break
            await asyncio.sleep(0.1)
        assert code == 0, raw
        assert_literal(raw, f"industry={LINK}", "+20", " paused ")
        code, raw = await leadloop(env, "state", "8101")
        assert code == 0, raw
        assert_literal(raw, f"industry={LINK}")
        code, raw = await leadloop(env, "resume", "8101", "--note", RED)
        assert code == 0, raw
        for action in (
            ("accept", "--opportunity", LINK, "--note", END_BOLD),
            ("reject", "--reason", "other", "--note", LINK),
        ):
            code, raw = await leadloop(env, action[0], "8101", *action[1:])
            assert code == 1, raw  # not with a rep: refused, and shown as such
            assert_literal(raw, "error:", "lead 8101")
        for _ in range(100):  # visibility follows within moments
            code, raw = await leadloop(env, "list", "--cadence", "ops", "--min-score", "20")
            if "8101" in raw:
                break
            await asyncio.sleep(0.2)
        assert_literal(raw, "8101", "ops")
        await handle.terminate(reason=f"test over {LINK}")
        code, raw = await leadloop(env, "history", "8101")
        assert code == 0, raw
        assert_literal(
            raw, f"signal pause: {END_BOLD}", f"signal resume: {RED}", f"workflow terminated: test over {LINK}"
        )


@pytest.mark.e2e
async def test_forget_reaches_a_changed_address_a_hand_over_and_the_files(
    dev_env: WorkflowEnvironment, tmp_path: Path, make_settings: Any
) -> None:
    """Issue 16: enrol with an owner at a reserved domain, PATCH the address, forget the old one, while with sales."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    engine = make_engine(db_url)  # held open all along, as the HTTP service's pool is
    maker = make_sessionmaker(engine)
    first = random.randrange(10**8, 10**9)  # lead ids, and so workflow ids, no other test in e2e-ops has
    async with maker() as session:
        session.add(Lead(id=first, email="placeholder@example.com", attributes={}))
        await session.commit()
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-ops"
    client = Client(**config)
    env = {
        **os.environ,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops",
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_TASK_QUEUE": f"ops-{uuid.uuid4()}",
    }
    leadloop = str(BIN / "leadloop")
    roster = tmp_path / "reps.yaml"
    roster.write_text(
        "teams:\n  - name: iberia\n    reps:\n"
        "      - {email: rep.madrid@leadloop.test, name: Marta López, timezone: Europe/Madrid, capacity: 2}\n"
    )
    code, _, err = await run(leadloop, "reps", "import", str(roster), env=env)
    assert code == 0, err
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "email,first_name,last_name,owner\n"
        "zoe.old@example.gr,Ζωή,Παπαδάκη-Quixote,REP.Madrid@leadloop.test\n"
        "kim@example.com,Kim,Other,ghost@leadloop.test\n",
        encoding="utf-8",
    )
    code, out, err = await run(leadloop, "enroll", str(csv), "--cadence", "welcome", env=env)
    assert code == 0, err  # no row dropped over its owner
    assert "row 3: owner: ghost@leadloop.test is not a rep on the roster; enrolled without an owner" in err
    assert "row 2" not in err
    async with maker() as session:
        leads = {row.email: row for row in (await session.execute(select(Lead).where(Lead.id > first))).scalars()}
        zoe, kim = leads["zoe.old@example.gr"].id, leads["kim@example.com"].id
        assert (leads["zoe.old@example.gr"].owner, leads["kim@example.com"].owner) == ("rep.madrid@leadloop.test", None)
        rep = (await session.execute(select(Rep))).scalar_one()
        # Zoë is with sales: her hand-over holds a place in the rep's capacity
        session.add(
            Assignment(
                key=f"lead-{zoe}.c0.a1",
                lead_id=zoe,
                cycle=0,
                rep_id=rep.id,
                team="iberia",
                rule="owner (relationship selling)",
                status="assigned",
                score=80,
            )
        )
        await session.commit()
    code, out, _ = await run(leadloop, "reps", "list", env=env)
    assert "1 / 2" in out

    settings = make_settings(database_url=db_url, api_keys=["k"], temporal_namespace="e2e-ops")
    app = create_app(settings, sessionmaker=maker, client=client)
    key = {"x-api-key": "k"}
    try:
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
                moved = await http.patch(f"/leads/{zoe}", json={"email": "zoe.new@example.gr"}, headers=key)
                assert moved.status_code == 200 and moved.json()["changed"] == ["email"]

                code, _, err = await run(leadloop, "forget", str(first + 999), "--yes", env=env)
                assert code == 1 and f"no lead {first + 999}; nothing was changed" in err
                # a CRM endpoint that may receive the address: erasure's lead.suppressed still carries none of her
                hook = ("webhooks", "add", "http://127.0.0.1:9/hooks", "--name", "crm", "--personal-data", "email")
                # (a CRM on this machine: private addresses allowed for it)
                code, _, err = await run(leadloop, *hook, env={**env, "LEADLOOP_WEBHOOK_ALLOW_PRIVATE": "true"})
                assert code == 0, err
                code, out, err = await run(leadloop, "forget", "zoe.old@example.gr", "--yes", env=env)
                assert code == 0, err
                assert f"lead {zoe} erased: workflow ended, 1 Temporal run(s) deleted" in out
                assert "1 open hand-over(s) closed" in out and "warning" not in err
                assert "the CRM is told: lead.suppressed (erasure), without personal data, to 1 webhook" in out

                # neither address comes back through an edit
                refused = await http.patch(f"/leads/{kim}", json={"email": "zoe.new@example.gr"}, headers=key)
                assert refused.status_code == 409 and "suppression list (erased)" in refused.json()["detail"]
                code, _, err = await run(leadloop, "lead", "update", str(kim), "--email", "Zoe.Old@example.gr", env=env)
                assert code == 1 and "zoe.old@example.gr is on the suppression list (erased)" in err
                # and the database files no longer hold her (the WAL was checkpointed and emptied)
                files = {p.name: p.read_bytes() for p in tmp_path.glob("leadloop.db*")}
                assert "leadloop.db-wal" in files
                for name, data in files.items():
                    for secret in ("zoe.old@example.gr", "zoe.new@example.gr", "Ζωή", "Παπαδάκη", "Quixote"):
                        assert secret.encode() not in data, f"{secret!r} is still in {name}"
        code, out, _ = await run(leadloop, "reps", "list", env=env)
        assert "0 / 2" in out  # the rep's place is free again
        async with maker() as session:
            assert (await session.get(Lead, kim)).email == "kim@example.com"
            assert (await session.get(Assignment, f"lead-{zoe}.c0.a1")).status == "closed"
        code, out, err = await run(leadloop, "forget", str(zoe), "--yes", env=env)
        assert code == 0 and f"lead {zoe} was erased earlier" in out, err
        async with maker() as session:
            told = (await session.execute(select(WebhookDelivery.lead_id, WebhookDelivery.status))).all()
        assert told == [(zoe, "pending")]  # handed to its delivery workflow (no worker runs it here)
    finally:
        await client.get_workflow_handle(workflow_id(kim)).terminate("test over")
        async with maker() as session:
            for endpoint_id, lead_id in (
                await session.execute(select(WebhookDelivery.endpoint_id, WebhookDelivery.lead_id))
            ).all():
                await client.get_workflow_handle(delivery_workflow_id(endpoint_id, lead_id)).terminate("test over")
        await engine.dispose()
