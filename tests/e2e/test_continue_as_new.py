"""Continue-as-new when Temporal suggests it, on the real dev server with a low suggestion threshold, while
signals keep arriving: none is lost, the lead stays on its step, and its counts carry over; a left-company hold noted
while an operator had paused the lead is not dropped by the fresh history."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.domain.cadence import Cadence
from leadloop.domain.models import (
    EngagementEvent,
    EngagementInput,
    InboundInput,
    LeadState,
    PauseInput,
    SendEmailInput,
    SendEmailResult,
)
from leadloop.domain.search import SEARCH_ATTRIBUTES
from leadloop.infra.db import Lead
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from tests.conftest import _which, with_pydantic
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

CADENCE = Cadence.model_validate(
    {
        "name": "long",
        "version": 1,
        "send_window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
        "steps": [
            {"id": "first", "wait": "0", "template": "welcome", "subject": "hi"},
            {"id": "second", "wait": "30d", "template": "tips", "subject": "hi"},
        ],
    }
)
sends: list[str] = []


@activity.defn(name="send_email")
async def send_email(input: SendEmailInput) -> SendEmailResult:
    sends.append(input.step_id)
    key = f"lead-{input.lead_id}.c{input.cycle}.{input.step_id}"
    return SendEmailResult(status="sent", outbox_key=key, message_id=f"<{key}@x>")


@asynccontextmanager
async def short_history_lead(lead_id: int, email: str) -> AsyncIterator[tuple[Client, WorkflowHandle[Any, Any], str]]:
    """A lead on the real dev server that suggests a fresh history after 40 events, its first email sent: the
    client, the lead's handle and its first run's id. The lead is terminated and the server stopped after."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_which("temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_log_level="error",
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
        ui=False,
    )
    sends.clear()
    try:
        client = with_pydantic(env.client)
        queue = f"can-{uuid.uuid4()}"
        async with Worker(
            client,
            task_queue=queue,
            workflows=[LeadNurtureWorkflow],
            activities=[send_email, announce_lifecycle],
            workflow_runner=workflow_runner(),
        ):
            lead = Lead(id=lead_id, email=email, timezone="Europe/Athens")
            await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=1.0, source="test")
            handle = client.get_workflow_handle(workflow_id(lead_id))
            first_run = (await handle.describe()).run_id
            while sends != ["first"]:
                await asyncio.sleep(0.05)
            yield client, handle, first_run
            await handle.terminate("test over")
    finally:
        await env.shutdown()


@pytest.mark.e2e
async def test_suggested_continue_as_new_loses_no_signal(tmp_path: Path) -> None:
    async with short_history_lead(7001, "x@example.com") as (client, handle, first_run):
        total = 120
        for i in range(total):  # one signal each, as fast as they come
            event = EngagementEvent(id=f"o{i}", kind="open", human=True, at=datetime.now(UTC), reason="test")
            await handle.signal("engagement", EngagementInput(events=[event]))
        state: LeadState | None = None
        for _ in range(200):
            state = await handle.query("state", result_type=LeadState)
            if state.engagement.human_opens == total:
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.engagement.human_opens == total  # every signal counted once
        description = await handle.describe()
        assert description.run_id != first_run  # it continued as new, more than once by now
        assert state.cycle == 0 and state.current_step == "second" and state.sends == 1
        assert sends == ["first"]  # nothing re-sent by the fresh runs
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id(7001)}'")]
        assert len(runs) >= 3
        history = await handle.fetch_history()
        assert len(history.events) < 100  # the current run's history stays short


@pytest.mark.e2e
async def test_a_left_company_hold_noted_while_paused_is_kept_when_a_fresh_history_is_suggested() -> None:
    async with short_history_lead(7002, "y@example.com") as (_, handle, first_run):

        async def state() -> LeadState:
            return await handle.query("state", result_type=LeadState)

        await handle.signal("pause", PauseInput(note="asked for a break"))
        while (await state()).stage != "paused":
            await asyncio.sleep(0.05)
        left = InboundInput(
            id="inbound-1",
            kind="auto_reply",
            received_at=datetime.now(UTC),
            left_company=True,
            contact_hint="anna@acme.example",
        )
        await handle.signal("inbound", left)
        current = await state()
        assert current.stage == "paused"  # paused by an operator: it stays so until resumed, or a fresh history
        for i in range(60):  # the history grows until Temporal suggests a fresh one
            if current.stage != "paused":
                break
            event = EngagementEvent(id=f"o{i}", kind="open", human=False, at=datetime.now(UTC), reason="MPP")
            await handle.signal("engagement", EngagementInput(events=[event]))
            current = await state()
        assert current.stage == "held", current  # not dropped by the fresh history: the lead left
        assert "has left the company" in current.waiting_for and "anna@acme.example" in current.waiting_for
        assert (await handle.describe()).run_id == first_run  # held in this run, not continued without it
        assert sends == ["first"]
