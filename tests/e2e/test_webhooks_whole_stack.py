"""Lifecycle webhooks on the real dev server, with the real worker process, the `leadloop` CLI and a real receiver
that verifies every delivery with standardwebhooks: an outage, a worker killed mid-delivery, a wrong secret."""

import asyncio
import os
import random
import re
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.lifecycle import LifecycleActivities
from leadloop.domain.models import LifecycleInput, WebhookRetry
from leadloop.infra.db import Lead, WebhookAttempt, WebhookDelivery, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from tests.conftest import BIN, client_address, with_pydantic
from tests.e2e.test_drip_whole_stack import run, start_worker
from tests.e2e.test_operator_cli import CADENCE, SCORING, send_email
from tests.webhook_receiver import Receiver
from workflows.lead_nurture import LeadNurtureWorkflow

pytestmark = pytest.mark.e2e


class Stack:
    """A database, the worker process, the CLI's environment, and the lifecycle activity called as the lead's
    workflow calls it (here, from the test: the lead's workflow announcing is the lead engineer's part)."""

    def __init__(self, dev_env: WorkflowEnvironment, tmp_path: Path, **settings: str) -> None:
        self.db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
        self.queue = f"e2e-webhooks-{uuid.uuid4()}"
        self.client: Client = with_pydantic(dev_env.client)
        self.log = tmp_path / "worker.log"
        self.env = {
            **os.environ,
            "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
            "LEADLOOP_TASK_QUEUE": self.queue,
            "LEADLOOP_DATABASE_URL": self.db_url,
            "LEADLOOP_SECRET_KEY": "an-e2e-test-secret-of-32-bytes++",
            "LEADLOOP_WORKER_METRICS_ADDRESS": "",
            "LEADLOOP_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver listens on 127.0.0.1
            "COLUMNS": "250",
            "NO_COLOR": "1",
            **{f"LEADLOOP_{name.upper()}": value for name, value in settings.items()},
        }
        self.retry = WebhookRetry(
            initial_interval=timedelta(seconds=float(settings["webhook_retry_initial"].removesuffix("s"))),
            max_interval=timedelta(seconds=float(settings["webhook_retry_max"].removesuffix("s"))),
            retry_for=timedelta(seconds=float(settings["webhook_retry_for"].removesuffix("s"))),
            timeout=timedelta(seconds=float(settings["webhook_timeout"].removesuffix("s"))),
        )
        self.engine = make_engine(self.db_url)
        self.sessionmaker = make_sessionmaker(self.engine)
        self.worker: asyncio.subprocess.Process | None = None
        self.counts: dict[int, int] = {}

    async def start(self, *lead_ids: int) -> None:
        await upgrade_database(self.db_url)
        async with self.sessionmaker() as session:
            for lead_id in lead_ids:
                session.add(Lead(id=lead_id, email=f"l{lead_id}@example.com", external_id=f"x{lead_id}", attributes={}))
            await session.commit()
        self.worker = await start_worker(self.env, self.log)

    async def kill_worker(self) -> None:
        assert self.worker is not None
        self.worker.send_signal(signal.SIGKILL)
        await self.worker.wait()

    async def stop(self) -> None:
        if self.worker is not None and self.worker.returncode is None:
            self.worker.send_signal(signal.SIGTERM)
            await self.worker.wait()
        await self.engine.dispose()

    async def cli(self, *args: str) -> tuple[int, str, str]:
        return await run(str(BIN / "leadloop"), *args, env=self.env)

    async def add_endpoint(self, url: str, *args: str) -> str:
        code, out, err = await self.cli("webhooks", "add", url, "--name", "crm", *args)
        assert code == 0, err
        found = re.search(r"secret \(shown once; give it to the receiver\): (whsec_\S+)", out)
        assert found, out
        return found[1]

    async def announce(self, lead_id: int, type: str) -> None:
        n = self.counts[lead_id] = self.counts.get(lead_id, 0) + 1
        event = LifecycleInput(
            key=f"lead-{lead_id}.r1.{type}.{n}",
            lead_id=lead_id,
            type=type,
            cycle=0,
            stage="nurturing",
            occurred_at=datetime.now(UTC),
        )
        lifecycle = LifecycleActivities(self.sessionmaker, self.retry, self.queue)
        await ActivityEnvironment(client=self.client).run(lifecycle.announce, event)

    async def count(self, *where: Any, table: Any = WebhookDelivery) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)

    async def until(self, check: Any, seconds: float = 60) -> None:
        """Until `check()` (a bool, or an awaitable of one) holds; the worker's log tells why when it never does."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    done = check()
                    if await done if asyncio.iscoroutine(done) else done:
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise AssertionError(self.log.read_text()[-3000:]) from None


def fresh_id() -> int:
    """A lead id no other test's workflows use on the session's dev server (workflow ids carry it)."""
    return random.randrange(10**8, 10**9)


EVENTS = ("lead.enrolled", "lead.engaged", "lead.escalated")


async def test_an_outage_and_a_worker_killed_mid_delivery_lose_nothing(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    stack = Stack(
        dev_env,
        tmp_path,
        webhook_retry_initial="0.2s",
        webhook_retry_max="1s",
        webhook_retry_for="600s",
        webhook_timeout="2s",
    )
    leads = (fresh_id(), fresh_id())
    receiver = Receiver()  # not listening yet: connections are refused
    await stack.start(*leads)
    try:
        receiver.secret = await stack.add_endpoint(receiver.url)
        for type in EVENTS:
            for lead_id in leads:
                await stack.announce(lead_id, type)
        # retried while nothing listens
        await stack.until(lambda: stack.count(WebhookAttempt.error.like("ConnectError%"), table=WebhookAttempt))
        code, out, err = await stack.cli("webhooks", "deliveries", "--failed")
        assert code == 0 and "ConnectError" in out and "pending" in out, err
        # the CRM comes back, but holds the next request while the worker is killed
        receiver.hold = asyncio.Event()
        await receiver.start()
        await stack.until(lambda: receiver.requests > 0)
        await stack.kill_worker()
        receiver.hold.set()  # its answer goes to a dead socket: the delivery is not marked delivered
        stack.worker = await start_worker(stack.env, stack.log)
        await receiver.wait_for(6, seconds=90)
        await stack.until(lambda: _all_delivered(stack))
        code, out, err = await stack.cli("webhooks", "deliveries", "--lead", str(leads[0]))
        assert code == 0 and out.count(" delivered · crm ") == 3, out + err
        code, out, err = await stack.cli("webhooks", "list")
        assert code == 0 and "crm" in out and "enabled" in out, err
    finally:
        await receiver.stop()
        await stack.stop()
    for lead_id in leads:
        assert receiver.of_lead(lead_id) == list(EVENTS)  # in order per lead
    assert len(receiver.ids()) == len(set(receiver.ids())) == 6  # each webhook-id taken once
    # the attempt the kill cut short reached the CRM and was sent again by the next worker: at least once, and
    # the receiver's de-duplication by webhook-id made it once
    assert receiver.duplicates >= 1 and receiver.refused == 0


async def _all_delivered(stack: Stack) -> bool:
    return await stack.count(WebhookDelivery.status == "delivered") == 6


async def test_a_wrong_secret_fails_until_rotated_and_replayed_and_the_operator_is_told(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    stack = Stack(
        dev_env,
        tmp_path,
        webhook_retry_initial="0.2s",
        webhook_retry_max="0.5s",
        webhook_retry_for="3s",
        webhook_timeout="2s",
    )
    lead_id = fresh_id()
    receiver = Receiver(secret="whsec_" + "QUJD" * 11)  # not the endpoint's: every delivery answers 401
    await receiver.start()
    await stack.start(lead_id)
    try:
        await stack.add_endpoint(receiver.url, "--event", "lead.enrolled", "--event", "lead.escalated")
        await stack.announce(lead_id, "lead.enrolled")
        await stack.announce(lead_id, "lead.engaged")  # not subscribed: no delivery
        await stack.announce(lead_id, "lead.escalated")
        await stack.until(lambda: _dead(stack, 2))
        code, out, err = await stack.cli("webhooks", "deliveries", "--failed")
        assert code == 0, err
        failed = [int(n) for n in re.findall(r"^#(\d+) dead", out, re.MULTILINE)]
        assert len(failed) == 2 and "401 answer 401" in out and "lead.engaged" not in out, out
        # the operator sees it in any lead's status
        async with Worker(
            stack.client,
            task_queue=f"{stack.queue}-lead",
            workflows=[LeadNurtureWorkflow],
            activities=[send_email],
            workflow_runner=workflow_runner(),
        ):
            lead = Lead(id=lead_id, email="x@example.com", timezone="Europe/Athens")
            await start_lead(
                stack.client,
                lead,
                CADENCE,
                task_queue=f"{stack.queue}-lead",
                time_scale=1.0,
                source="test",
                scoring=SCORING,
            )
            code, out, err = await stack.cli("status", str(lead_id))
            await stack.client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")
        assert code == 0, err
        assert "webhooks: endpoint 'crm' DISABLED since" in out and "accepted no delivery since" in out, out
        assert "0 delivery(ies) failing, 2 dead" in out
        # the CRM is given the new secret; the dead deliveries are replayed with it, same webhook-ids
        code, out, err = await stack.cli("webhooks", "rotate-secret", "crm")
        assert code == 0, err
        found = re.search(r"(whsec_\S+)", out)
        assert found
        receiver.secret = found[1]
        for delivery_id in sorted(failed):
            code, out, err = await stack.cli("webhooks", "replay", str(delivery_id))
            assert code == 0 and f"delivery {delivery_id} delivered (answered 200" in out, out + err
            assert "endpoint 'crm' is disabled" in err
        assert receiver.of_lead(lead_id) == ["lead.enrolled", "lead.escalated"]
        code, out, err = await stack.cli("webhooks", "deliveries", "--failed")
        assert code == 0 and "0 delivery(ies)" in out, out
        # enabled again, new events flow through the workflow once more, signed with the new secret
        code, out, err = await stack.cli("webhooks", "enable", "crm")
        assert code == 0 and "enabled" in out, err
        await stack.announce(lead_id, "lead.escalated")
        await receiver.wait_for(3, seconds=60)
        # bad input: one clear line each, exit 1, nothing changed
        for args, said in [
            (("webhooks", "add", "ftp://x.example/", "--name", "other"), "must start with http:// or https://"),
            (("webhooks", "add", "https://x.example/", "--name", "o", "--event", "lead.won"), "unknown event type"),
            (("webhooks", "add", "https://x.example/", "--name", "o", "--personal-data", "ssn"), "personal-data"),
            (("webhooks", "remove", "nope"), "no webhook endpoint named 'nope'"),
            (("webhooks", "rotate-secret", "nope"), "no webhook endpoint named 'nope'"),
            (("webhooks", "deliveries", "--endpoint", "nope"), "no webhook endpoint named 'nope'"),
            (("webhooks", "replay", "999999"), "no webhook delivery 999999"),
        ]:
            code, out, err = await stack.cli(*args)
            assert code == 1 and said in err, (args, out, err)
        code, out, err = await stack.cli("webhooks", "list")
        assert code == 0 and out.count("crm") == 1 and "other" not in out and " o " not in out, out
    finally:
        await receiver.stop()
        await stack.stop()
    assert receiver.refused >= 2 and len(set(receiver.ids())) == 3


async def _dead(stack: Stack, n: int) -> bool:
    return await stack.count(WebhookDelivery.status == "dead") == n
