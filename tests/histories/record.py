"""Records the saved histories the replay test runs: `PYTHONPATH=. .venv/bin/python tests/histories/record.py`.

Each history is a representative run of LeadNurtureWorkflow on the real dev server (activities
stand in for SMTP: the workflow's own decisions are what replay checks). Record new ones when the
workflow gains a path; never re-record old ones to make a replay failure go away.
"""

import asyncio
import json
import uuid
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.cadence import Cadence
from leadloop.db import Lead
from leadloop.enrollment import start_lead, workflow_id
from leadloop.models import RetrySendInput, SendEmailInput, SendEmailResult
from leadloop.temporal import SEARCH_ATTRIBUTES, workflow_runner
from starter.devserver import temporal_cli
from workflows.lead_nurture import LeadNurtureWorkflow

HERE = Path(__file__).parent
CADENCE = Cadence.model_validate(
    {
        "name": "replay",
        "version": 1,
        "send_window": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
        "steps": [
            {"id": "one", "wait": "0", "template": "welcome", "subject": "One"},
            {"id": "two", "wait": "1d", "template": "tips", "subject": "Two"},
            {"id": "three", "wait": "1d", "template": "checkin", "subject": "Three"},
        ],
    }
)
failures: dict[tuple[int, str], ApplicationError] = {
    (2, "two"): ApplicationError("550 5.1.1 no such user", type="HardBounce", non_retryable=True),
    (3, "two"): ApplicationError("550 5.7.1 policy", type="SendRefused", non_retryable=True),
}


@activity.defn(name="send_email")
async def send_email(input: SendEmailInput) -> SendEmailResult:
    failure = failures.pop((input.lead_id, input.step_id), None)
    if failure:
        raise failure
    key = f"lead-{input.lead_id}.c{input.cycle}.{input.step_id}"
    status = "uncertain" if (input.lead_id, input.step_id) == (4, "three") else "sent"
    return SendEmailResult(status=status, outbox_key=key, message_id=f"<{key}@leadloop.example>")


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(), search_attributes=list(SEARCH_ATTRIBUTES)
    )
    config = env.client.config()
    config["data_converter"] = pydantic_data_converter
    client = Client(**config)
    queue = f"record-{uuid.uuid4()}"
    runs = {
        1: "drip-complete",
        2: "hard-bounce-suppressed",
        3: "policy-refusal-blocked-then-retried",
        4: "uncertain-send",
    }
    async with Worker(client, task_queue=queue, workflows=[LeadNurtureWorkflow], activities=[send_email],
                      workflow_runner=workflow_runner()):  # fmt: skip
        for lead_id in runs:
            lead = Lead(id=lead_id, email="x@example.com", timezone="Europe/Athens", company="Acme")
            await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=86400 * 2, source="record")
            await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=86400 * 2, source="record")
        handle = client.get_workflow_handle(workflow_id(3))
        while (await handle.describe()).search_attributes.get("LeadStage") != ["send_blocked"]:
            await asyncio.sleep(0.2)
        await handle.signal("retry_send", RetrySendInput(note="fixed"))
        for lead_id, name in runs.items():
            handle = client.get_workflow_handle(workflow_id(lead_id))
            await handle.result()
            history = await handle.fetch_history()
            (HERE / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
            print("recorded", name)
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
