"""Records the webhook delivery histories the replay test runs: `PYTHONPATH=. .venv/bin/python
tests/histories/record_webhooks.py`.

Each is a run of WebhookDeliveryWorkflow on the real dev server with the real activities, an SQLite database and
a real receiver: an outage ridden out, retries running out (dead letter, endpoint disabled), continue-as-new.
Record new ones when the workflow gains a path; never re-record old ones to make a replay failure go away.
"""

import asyncio
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.lifecycle import LifecycleActivities
from activities.webhooks import WebhookActivities
from leadloop.domain.crm_webhooks import delivery_workflow_id
from leadloop.domain.models import LifecycleInput, WebhookDeliveryInput, WebhookRetry
from leadloop.infra.db import Lead, WebhookDelivery, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.process import run_and_exit
from leadloop.infra.temporal import workflow_runner
from leadloop.services.outbound_webhooks import add_endpoint
from tests.webhook_receiver import Receiver
from workflows.webhook_delivery import WebhookDeliveryWorkflow

OUT = Path(__file__).parent / "webhooks"
FAST = WebhookRetry(
    initial_interval=timedelta(milliseconds=200),
    max_interval=timedelta(seconds=1),
    retry_for=timedelta(seconds=3),
    timeout=timedelta(seconds=2),
)


async def scenario(client: Client, name: str, answer: int | None, switch_after: int, per_run: int = 200) -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{folder / 'leadloop.db'}"
    await upgrade_database(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    receiver = Receiver(answer=answer)
    await receiver.start()
    queue = f"record-{uuid.uuid4()}"
    lead_id = 1
    try:
        async with sessions() as session:
            session.add(Lead(id=lead_id, email="ada@example.com", external_id="crm-1", attributes={}))
            await session.commit()
            receiver.secret = (await add_endpoint(session, "crm", receiver.url, allow_private=True)).secret
        lifecycle = LifecycleActivities(sessions, FAST, queue)
        for n, type in enumerate(("lead.enrolled", "lead.escalated", "lead.accepted"), start=1):
            event = LifecycleInput(
                key=f"lead-{lead_id}.r1.{type}.{n}",
                lead_id=lead_id,
                type=type,
                cycle=0,
                stage="nurturing",
                occurred_at=datetime.now(UTC),
            )
            await ActivityEnvironment(client=client).run(lifecycle.announce, event)
        workflow_id = delivery_workflow_id(1, lead_id)
        if per_run != 200:  # the announcements' run replaced by one that continues as new sooner
            async with sessions() as session:
                ids = list(await session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
            await client.get_workflow_handle(workflow_id).terminate("recording continue-as-new")
            await client.start_workflow(
                WebhookDeliveryWorkflow.run,
                WebhookDeliveryInput(endpoint_id=1, lead_id=lead_id, retry=FAST, pending=ids, per_run=per_run),
                id=workflow_id,
                task_queue=queue,
            )
        webhooks = WebhookActivities(sessions, FAST.timeout, allow_private=True)
        async with Worker(
            client,
            task_queue=queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[webhooks.deliver, webhooks.dead_letter],
            workflow_runner=workflow_runner(),
        ):
            if switch_after:  # the receiver comes back after that many requests
                while receiver.requests < switch_after:
                    await asyncio.sleep(0.05)
                receiver.answer = None
            handle = client.get_workflow_handle(workflow_id)
            await handle.result()
            history = await client.get_workflow_handle(
                workflow_id, run_id=(await handle.describe()).run_id
            ).fetch_history()
            if per_run != 200:  # the first run, the one that continued as new
                async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
                    if run.status is not None and run.status.name == "CONTINUED_AS_NEW":
                        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
                        break
    finally:
        await receiver.stop()
        await engine.dispose()
        shutil.rmtree(folder)
    (OUT / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}", file=sys.stderr)


async def main() -> None:
    OUT.mkdir(exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=shutil.which("temporal", path=str(Path(sys.executable).parent)), ui=False
    )
    try:
        config = env.client.config()
        config["data_converter"] = pydantic_data_converter
        client = Client(**config)
        await scenario(client, "outage-then-delivered", 503, switch_after=3)
        await scenario(client, "retries-ran-out-dead-endpoint-disabled", 503, switch_after=0)
        await scenario(client, "continued-as-new", None, switch_after=0, per_run=1)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    run_and_exit(lambda: asyncio.run(main()))  # past the interpreter's teardown (leadloop/infra/process.py)
