"""International addresses from `POST /leads` to the SMTP server: a relay without SMTPUTF8 blocks the send at
once with the reason (`leadloop status` shows it), and intake can be told to refuse such addresses."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop.domain.models import LeadState
from leadloop.infra.db import Lead, Outbox
from leadloop.services.enrollment import workflow_id
from starter.api import create_app
from tests.conftest import BIN, ScriptedHandler, SmtpServer, client_address, free_port, with_pydantic
from tests.e2e.test_drip_whole_stack import run

KEY = {"x-api-key": "intake-key"}


@asynccontextmanager
async def service(settings: Any, sessionmaker: Any, client: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, sessionmaker=sessionmaker, client=client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            yield http


async def test_a_relay_without_smtputf8_blocks_the_send_at_once_with_the_reason(
    time_skipping_env: WorkflowEnvironment, make_settings: Any, database_url: str, sessionmaker: Any
) -> None:
    smtp = SmtpServer("127.0.0.1", free_port(), ScriptedHandler(), smtputf8=False)
    await smtp.start()
    client = with_pydantic(time_skipping_env.client)
    settings = make_settings(
        database_url=database_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        api_keys=["intake-key"],
        relay_interval=3600,
    )
    try:
        async with worker_module.build_worker(client, settings), service(settings, sessionmaker, client) as http:
            accepted = await http.post("/leads", json={"email": "josé@example.com", "first_name": "José"}, headers=KEY)
            assert accepted.status_code == 201, accepted.text
            lead_id = accepted.json()["lead_id"]
            handle = client.get_workflow_handle(workflow_id(lead_id))
            for _ in range(60):  # the welcome cadence's window (weekdays 9-17 Berlin) opens within days
                state: LeadState = await handle.query("state", result_type=LeadState)
                if state.stage == "send_blocked":
                    break
                await time_skipping_env.sleep(timedelta(hours=3))
            assert state.stage == "send_blocked", state
            assert state.blocked_reason and "SendRefused" in state.blocked_reason
            assert "SMTPUTF8" in state.blocked_reason and "josé" not in state.blocked_reason
            assert state.next_send_at is None and state.sends == 0
            env = {
                **os.environ,
                "LEADLOOP_TEMPORAL_ADDRESS": client_address(client),
                "COLUMNS": "250",
                "NO_COLOR": "1",
                "LEADLOOP_DATABASE_URL": database_url,
            }
            code, out, err = await run(str(BIN / "leadloop"), "status", str(lead_id), env=env)
            assert code == 0, err
            assert "send_blocked" in out and "SMTPUTF8" in out and f"leadloop retry {lead_id}" in out
            assert "next email" not in out
            # a week on it still waits: one attempt, no retry loop, nothing reached the server
            await time_skipping_env.sleep(timedelta(days=7))
            assert (await handle.query("state", result_type=LeadState)).stage == "send_blocked"
            async with sessionmaker() as session:
                [row] = (await session.execute(select(Outbox).where(Outbox.lead_id == lead_id))).scalars()
            assert (row.status, row.attempts) == ("refused", 1)
            assert smtp.handler.connections == [] and smtp.handler.raw == []
            await handle.terminate("test over")
    finally:
        await smtp.stop()


async def test_intake_can_refuse_a_non_ascii_local_part_and_stores_nothing(
    make_settings: Any, database_url: str, sessionmaker: Any
) -> None:
    settings = make_settings(
        database_url=database_url,
        api_keys=["intake-key"],
        temporal_address="127.0.0.1:1",
        relay_interval=3600,
        intake_refuse_utf8_local_part=True,
    )
    async with sessionmaker() as session:
        session.add(Lead(email="ana@example.com", attributes={}))
        await session.commit()
        lead_id = (await session.execute(select(Lead.id))).scalar_one()
    async with service(settings, sessionmaker) as http:
        for address in ("josé@example.com", "μαρία@example.gr"):
            refused = await http.post("/leads", json={"email": address}, headers=KEY)
            assert refused.status_code == 422
            [problem] = refused.json()["detail"]
            assert problem["loc"] == ["body", "email"] and "SMTPUTF8" in problem["msg"]
        changed = await http.patch(f"/leads/{lead_id}", json={"email": "josé@example.com"}, headers=KEY)
        assert changed.status_code == 422 and "SMTPUTF8" in changed.text
    async with sessionmaker() as session:
        assert (await session.execute(select(func.count()).select_from(Lead))).scalar() == 1
        assert (await session.get(Lead, lead_id)).email == "ana@example.com"  # type: ignore[union-attr]


async def test_enroll_reports_the_refused_row_and_keeps_the_rest(tmp_path: Any) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name\njosé@example.com,José\nhans@bücher.example,Hans\n", encoding="utf-8")
    env = {
        **os.environ,
        "LEADLOOP_INTAKE_REFUSE_UTF8_LOCAL_PART": "true",
        "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "NO_COLOR": "1",
    }
    code, _, err = await run(str(BIN / "leadloop"), "enroll", str(csv), env=env)
    assert code == 1
    assert "row 2: email:" in err and "SMTPUTF8" in err
    assert "row 3" not in err  # hans@bücher.example: an IDN domain goes out in punycode, no SMTPUTF8 needed
