"""Operator commands against the real dev server: `leadloop status` and `leadloop list` (visibility)."""

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.cadence import Cadence, Escalation
from leadloop.db import Lead
from leadloop.enrollment import start_lead, workflow_id
from leadloop.migrate import upgrade_database
from leadloop.models import EngagementEvent, EngagementInput, SendEmailInput, SendEmailResult
from leadloop.scoring import ScoringConfig
from leadloop.temporal import workflow_runner
from tests.conftest import BIN, client_address, with_pydantic
from tests.e2e.test_drip_whole_stack import run
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
    env = {**os.environ, "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
           "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops", "COLUMNS": "200", "NO_COLOR": "1",
           "LEADLOOP_DATABASE_URL": db_url}  # fmt: skip
    async with Worker(client, task_queue=queue, workflows=[LeadNurtureWorkflow], activities=[send_email],
                      workflow_runner=workflow_runner()):  # fmt: skip
        for lead_id, industry in ((8001, "software"), (8002, "retail")):
            lead = Lead(id=lead_id, email="x@example.com", timezone="Europe/Athens", industry=industry)
            await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=1.0, source="test", scoring=SCORING)
        click = EngagementEvent(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/")
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
