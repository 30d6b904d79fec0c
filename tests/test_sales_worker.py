"""The sales path on its own task queue (LEADLOOP_SALES_TASK_QUEUE) served by a worker of role `sales`:
the drip's worker never runs the routing or the rep's notification, the sales worker does, and a worker
of role `all` serves both queues. Time-skipping server, the real activities, SQLite, a real SMTP server."""

import asyncio
import contextlib
import email
import email.policy
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence, Escalation, Sender, SendWindow, Step
from leadloop.domain.models import EngagementEvent, EngagementInput, LeadState
from leadloop.domain.routing import Roster
from leadloop.domain.scoring import ScoringConfig
from leadloop.infra.db import Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.roster import import_roster
from tests.conftest import SmtpServer, with_pydantic

ALWAYS = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59")  # type: ignore[arg-type]
CADENCE = Cadence(
    name="hot",
    version=1,
    send_window=ALWAYS,
    sender=Sender(name="Demo", address="demo@leadloop.example"),
    steps=[Step(id=f"s{i}", wait=w, template="welcome", subject="hello") for i, w in enumerate(["0", "2d"], 1)],  # type: ignore[arg-type]
    escalation=Escalation(threshold=10),
)
SCORING = ScoringConfig.model_validate({"version": 1, "engagement": [{"name": "click", "kind": "click", "points": 15}]})
ROSTER = Roster.model_validate(
    {
        "teams": [
            {
                "name": "south",
                "strategy": "round_robin",
                "sla": "4h",
                "reps": [{"email": "rep1@sales.example", "name": "Rep 1", "timezone": "Europe/Athens"}],
            }
        ]
    }
)
SALES_PATH = {"assign_lead", "notify_rep", "close_assignment", "record_disposition", "suppress_lead"}


async def scheduled_activities(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """(activity type, task queue) of every activity the workflow scheduled, in order."""
    return [
        (
            event.activity_task_scheduled_event_attributes.activity_type.name,
            event.activity_task_scheduled_event_attributes.task_queue.name,
        )
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


async def until(check: Any, what: str) -> Any:
    for _ in range(400):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def rep_mail(smtp: SmtpServer) -> list[Any]:
    parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in smtp.handler.raw]
    return [m for m in parsed if "rep1@sales.example" in str(m["To"])]


@pytest.fixture
async def parts(time_skipping_env: WorkflowEnvironment, smtp: SmtpServer, make_settings: Any, tmp_path: Path) -> Any:
    routing = tmp_path / "routing.yaml"
    routing.write_text("version: 1\nretry_unassigned_every: 1h\nrules:\n  - name: all\n    team: south\n")
    sales_queue = f"sales-{uuid.uuid4()}"
    common = {"smtp_host": smtp.host, "smtp_port": smtp.port, "routing_file": routing, "sales_task_queue": sales_queue}
    nurture = make_settings(worker_role="nurture", **common)
    sales = make_settings(worker_role="sales", task_queue=nurture.task_queue, **common)
    await upgrade_database(nurture.database_url)
    engine = make_engine(nurture.database_url)
    maker = make_sessionmaker(engine)
    async with maker() as session:
        await import_roster(session, ROSTER)
        lead = Lead(
            id=uuid.uuid4().int % 10**9,
            email=f"{uuid.uuid4().hex[:8]}@example.com",
            first_name="Ana",
            timezone="Europe/Athens",
            attributes={},
        )
        session.add(lead)
        await session.commit()
    client = with_pydantic(time_skipping_env.client)
    yield client, nurture, sales, lead
    with contextlib.suppress(RPCError):  # a waiting workflow would hold the test server's clock
        await client.get_workflow_handle(workflow_id(lead.id)).terminate("test over")
    await engine.dispose()


async def test_the_sales_worker_alone_routes_and_notifies(parts: Any, smtp: SmtpServer) -> None:
    client, nurture, sales, lead = parts
    nurture_worker = worker_module.build_worker(client, nurture)
    assert nurture_worker.task_queues == [nurture.task_queue]
    async with nurture_worker:
        await start_lead(
            client,
            lead,
            CADENCE,
            task_queue=nurture.task_queue,
            time_scale=1.0,
            source="test",
            scoring=SCORING,
            sales_task_queue=nurture.sales_task_queue,
        )
        handle = client.get_workflow_handle(workflow_id(lead.id))
        await until(lambda: _sends(handle, 1), "the first email sent by the nurture worker")
        click = EngagementEvent(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/p")
        await handle.signal("engagement", EngagementInput(events=[click]))
        # the routing waits on the sales queue: the drip's worker does not take it
        pending = await until(lambda: _pending(handle), "the routing scheduled")
        assert pending == ["assign_lead"]
        state: LeadState = await handle.query("state", result_type=LeadState)
        assert state.stage == "with_sales" and state.assigned_rep is None
        assert rep_mail(smtp) == []
        sales_worker = worker_module.build_worker(client, sales)
        assert sales_worker.task_queues == [sales.sales_task_queue]
        async with sales_worker:
            state = await until(lambda: _assigned(handle), "the rep assigned by the sales worker")
            notes = await until(lambda: _rep_mail(smtp), "the rep's notification")
    assert state.assigned_rep == "Rep 1" and len(notes) == 1 and "score 15" in str(notes[0]["Subject"])
    queues = await scheduled_activities(handle)
    assert ("send_email", nurture.task_queue) in queues
    assert ("announce_lifecycle", nurture.task_queue) in queues  # the CRM's events: on the lead's own queue
    assert {(kind, queue) for kind, queue in queues if kind not in ("send_email", "announce_lifecycle")} == {
        ("assign_lead", sales.sales_task_queue),
        ("notify_rep", sales.sales_task_queue),
    }


async def test_a_worker_of_role_all_serves_both_queues(parts: Any, smtp: SmtpServer) -> None:
    client, nurture, _, lead = parts
    both = nurture.model_copy(update={"worker_role": "all"})
    worker = worker_module.build_worker(client, both)
    assert worker.task_queues == [both.task_queue, both.sales_task_queue]
    async with worker:
        await start_lead(
            client,
            lead,
            CADENCE,
            task_queue=both.task_queue,
            time_scale=1.0,
            source="test",
            scoring=SCORING,
            sales_task_queue=both.sales_task_queue,
        )
        handle = client.get_workflow_handle(workflow_id(lead.id))
        await until(lambda: _sends(handle, 1), "the first email")
        click = EngagementEvent(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/p")
        await handle.signal("engagement", EngagementInput(events=[click]))
        state = await until(lambda: _assigned(handle), "the rep assigned")
        await until(lambda: _rep_mail(smtp), "the rep's notification")
    assert state.assigned_rep == "Rep 1"
    assert {queue for kind, queue in await scheduled_activities(handle) if kind in SALES_PATH} == {
        both.sales_task_queue
    }


async def test_without_a_sales_queue_one_worker_serves_everything_as_before(parts: Any, smtp: SmtpServer) -> None:
    client, nurture, _, lead = parts
    plain = nurture.model_copy(update={"worker_role": "all", "sales_task_queue": ""})
    worker = worker_module.build_worker(client, plain)
    assert worker.task_queues == [plain.task_queue]
    async with worker:
        await start_lead(
            client,
            lead,
            CADENCE,
            task_queue=plain.task_queue,
            time_scale=1.0,
            source="test",
            scoring=SCORING,
            sales_task_queue=plain.sales_task_queue,
        )
        handle = client.get_workflow_handle(workflow_id(lead.id))
        await until(lambda: _sends(handle, 1), "the first email")
        click = EngagementEvent(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/p")
        await handle.signal("engagement", EngagementInput(events=[click]))
        await until(lambda: _assigned(handle), "the rep assigned")
    assert {queue for _, queue in await scheduled_activities(handle)} == {plain.task_queue}


async def _rep_mail(smtp: SmtpServer) -> list[Any]:
    return rep_mail(smtp)


async def _sends(handle: WorkflowHandle[Any, Any], count: int) -> bool:
    state: LeadState = await handle.query("state", result_type=LeadState)
    return state.sends >= count


async def _pending(handle: WorkflowHandle[Any, Any]) -> list[str]:
    description = await handle.describe()
    return [activity.activity_type.name for activity in description.raw_description.pending_activities]


async def _assigned(handle: WorkflowHandle[Any, Any]) -> LeadState | None:
    state: LeadState = await handle.query("state", result_type=LeadState)
    return state if state.assigned_rep else None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEADLOOP_WORKER_ROLE": "sales"}, "LEADLOOP_WORKER_ROLE=sales needs LEADLOOP_SALES_TASK_QUEUE"),
        ({"LEADLOOP_WORKER_ROLE": "drip"}, "LEADLOOP_WORKER_ROLE: Input should be 'all', 'nurture' or 'sales'"),
        ({"LEADLOOP_SALES_TASK_QUEUE": "leadloop"}, "LEADLOOP_SALES_TASK_QUEUE must differ from LEADLOOP_TASK_QUEUE"),
        ({"LEADLOOP_SALES_TASK_QUEUE": "sales\n"}, "LEADLOOP_SALES_TASK_QUEUE: a task queue name without"),
    ],
)
async def test_a_worker_with_bad_role_settings_says_which_and_polls_nothing(env: dict[str, str], message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "worker.py",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:9", **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    assert message in err.decode() and "Traceback" not in err.decode()


def test_settings_refuse_a_sales_role_without_its_queue(make_settings: Any) -> None:
    with pytest.raises(ValidationError, match="needs LEADLOOP_SALES_TASK_QUEUE"):
        make_settings(worker_role="sales")
    with pytest.raises(ValidationError, match="must differ"):
        make_settings(task_queue="q", sales_task_queue="q")
    assert make_settings(worker_role="sales", sales_task_queue="s").sales_task_queue == "s"
