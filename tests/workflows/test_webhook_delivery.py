"""Lifecycle webhooks on the time-skipping server, to a real receiver that verifies every delivery with
standardwebhooks: in order per lead, retried through an outage, dead-lettered after three days of failures."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.lifecycle import LifecycleActivities
from activities.webhooks import WebhookActivities
from leadloop.domain.crm_webhooks import delivery_workflow_id
from leadloop.domain.models import (
    LifecycleInput,
    LifecycleResult,
    WebhookDeliveryInput,
    WebhookDeliveryResult,
    WebhookRetry,
)
from leadloop.domain.scoring import Score, ScoreItem
from leadloop.infra.db import Lead, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from leadloop.infra.temporal import workflow_runner
from leadloop.services.outbound_webhooks import add_endpoint, list_deliveries, webhook_health
from starter.api import create_app
from tests.conftest import with_pydantic
from tests.webhook_receiver import Receiver
from workflows.webhook_delivery import WebhookDeliveryWorkflow

LEADS = {
    1: {"email": "ada@example.com", "first_name": "Ada", "external_id": "crm-001", "owner": "rep@example.com"},
    2: {"email": "bob@example.com", "first_name": "Bob", "external_id": "crm-002", "owner": None},
}


@pytest.fixture
async def leads(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, dict[str, Any]]:
    async with sessionmaker() as session:
        for lead_id, fields in LEADS.items():
            session.add(Lead(id=lead_id, attributes={}, **fields))
        await session.commit()
    return LEADS


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.stop()


class Stack:
    """The delivery workflow's worker on its own task queue, and the lifecycle activity called as the lead's
    workflow calls it."""

    def __init__(self, env: WorkflowEnvironment, sessionmaker: Any, retry: WebhookRetry) -> None:
        self.env = env
        self.client: Client = with_pydantic(env.client)
        self.queue = f"webhooks-{uuid.uuid4()}"
        self.sessionmaker = sessionmaker
        self.lifecycle = LifecycleActivities(sessionmaker, retry, self.queue)
        self.webhooks = WebhookActivities(sessionmaker, retry.timeout, allow_private=True)
        self.counts: dict[int, int] = {}

    def worker(self) -> Worker:
        return Worker(
            self.client,
            task_queue=self.queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[self.webhooks.deliver, self.webhooks.dead_letter],
            workflow_runner=workflow_runner(),
        )

    async def announce(self, lead_id: int, type: str, **data: Any) -> LifecycleResult:
        n = self.counts[lead_id] = self.counts.get(lead_id, 0) + 1
        event = LifecycleInput(
            key=f"lead-{lead_id}.r1.{type}.{n}",
            lead_id=lead_id,
            type=type,
            cycle=0,
            stage="with_sales" if type == "lead.escalated" else "nurturing",
            score=Score(total=40 + n),
            cadence="nurture",
            data=data,
            occurred_at=datetime.now(UTC),
        )
        result: LifecycleResult = await ActivityEnvironment(client=self.client).run(self.lifecycle.announce, event)
        return result

    async def finished(self, endpoint_id: int, lead_id: int) -> WebhookDeliveryResult:
        """Once the (endpoint, lead) workflow's runs have ended with nothing pending: its deliveries by outcome
        (a run that empties its queue ends; the next event starts another)."""
        while True:
            handle = self.client.get_workflow_handle(
                delivery_workflow_id(endpoint_id, lead_id), result_type=WebhookDeliveryResult
            )
            # a handle got by id, unlike one from start_workflow, does not let time skip by itself
            async with self.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                await handle.result()
            async with self.sessionmaker() as session:
                statuses = list(
                    await session.scalars(
                        select(WebhookDelivery.status).where(
                            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.lead_id == lead_id
                        )
                    )
                )
            if "pending" not in statuses:
                return WebhookDeliveryResult(delivered=statuses.count("delivered"), dead=statuses.count("dead"))


async def scheduled_priorities(client: Client, workflow_id: str) -> dict[str, set[int]]:
    """The priority key of each activity type the workflow's latest run scheduled, from its history."""
    found: dict[str, set[int]] = {}
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            found.setdefault(scheduled.activity_type.name, set()).add(scheduled.priority.priority_key)
    return found


async def endpoint_id(sessionmaker: Any, name: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(select(WebhookEndpoint.id).where(WebhookEndpoint.name == name))
        assert found is not None
        return int(found)


async def test_events_of_two_leads_arrive_verified_in_order_with_only_the_personal_data_allowed(
    time_skipping_env: WorkflowEnvironment, sessionmaker: Any, leads: Any, receiver: Receiver
) -> None:
    people = Receiver()
    await people.start()
    try:
        async with sessionmaker() as session:
            crm = await add_endpoint(session, "crm", receiver.url, allow_private=True)
            named = await add_endpoint(
                session,
                "crm-people",
                people.url,
                ["lead.escalated"],
                ["email", "first_name", "last_name"],
                allow_private=True,
            )
        receiver.secret, people.secret = crm.secret, named.secret
        stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
        async with stack.worker():
            for lead_id, type in [
                (1, "lead.enrolled"),
                (2, "lead.enrolled"),
                (1, "lead.engaged"),
                (1, "lead.escalated"),
                (2, "lead.engaged"),
                (2, "lead.escalated"),
                (1, "lead.accepted"),
            ]:
                await stack.announce(lead_id, type)
            crm_id, people_id = await endpoint_id(sessionmaker, "crm"), await endpoint_id(sessionmaker, "crm-people")
            for lead_id in (1, 2):
                assert (await stack.finished(crm_id, lead_id)).delivered == (4 if lead_id == 1 else 3)
                assert (await stack.finished(people_id, lead_id)).delivered == 1
    finally:
        await people.stop()
    assert receiver.of_lead(1) == ["lead.enrolled", "lead.engaged", "lead.escalated", "lead.accepted"]
    assert receiver.of_lead(2) == ["lead.enrolled", "lead.engaged", "lead.escalated"]
    assert receiver.duplicates == 0 and receiver.refused == 0
    first = next(r.data for r in receiver.received if r.lead_id == 1)
    assert first["external_id"] == "crm-001" and first["owner"] == "rep@example.com" and first["score"] == 41
    assert first["score_breakdown"]["total"] == 41 and first["cadence"] == "nurture"
    # the endpoint without personal data gets none: not the address, not the name, not even an empty `person`
    for got in receiver.received:
        assert "@example.com" not in got.body.replace("rep@example.com", "") and "Ada" not in got.body
        assert "person" not in got.data
    # the endpoint allowed the address and names gets them, and only for the type it subscribed to
    assert [(r.lead_id, r.type) for r in people.received] == [(1, "lead.escalated"), (2, "lead.escalated")]
    assert people.received[0].data["person"] == {"email": "ada@example.com", "first_name": "Ada"}
    assert people.received[1].data["person"] == {"email": "bob@example.com", "first_name": "Bob"}


async def test_free_text_and_profile_values_in_scores_go_only_to_an_endpoint_allowed_them(
    time_skipping_env: WorkflowEnvironment, sessionmaker: Any, leads: Any, receiver: Receiver
) -> None:
    allowed = Receiver()
    await allowed.start()
    try:
        async with sessionmaker() as session:
            receiver.secret = (await add_endpoint(session, "crm", receiver.url, allow_private=True)).secret
            allowed.secret = (
                await add_endpoint(session, "crm-notes", allowed.url, [], ["notes", "country"], allow_private=True)
            ).secret
        stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
        score = Score(
            total=48,
            profile=35,
            engagement=13,
            items=[
                ScoreItem(rule="country=GR", points=20),
                ScoreItem(rule="title buyer 'procurement'", points=15),
                ScoreItem(rule="budget=yes", points=5),
                ScoreItem(rule="click pricing", points=8),
            ],
        )
        note = "call Ada (ada@example.com) after the fair in Thessaloniki"
        async with stack.worker():
            for n, (type, data) in enumerate(
                [
                    ("lead.escalated", {"why": "score 48 >= 40", "waiting_for": "a rep for Greece", "waiting": 1}),
                    ("lead.rejected", {"reason": "not_ready", "note": note, "recontact_on": "2027-06-01"}),
                ],
                start=1,
            ):
                event = LifecycleInput(
                    key=f"lead-1.r1.{type}.{n}",
                    lead_id=1,
                    type=type,
                    cycle=0,
                    stage="with_sales",
                    score=score,
                    cadence="nurture",
                    rep_id=3,
                    actor="crm-sales",
                    data=data,
                    occurred_at=datetime.now(UTC),
                )
                await ActivityEnvironment(client=stack.client).run(stack.lifecycle.announce, event)
            for name in ("crm", "crm-notes"):
                assert (await stack.finished(await endpoint_id(sessionmaker, name), 1)).delivered == 2
    finally:
        await allowed.stop()
    plain, rich = receiver.received, allowed.received
    # no free text, no address, no country or title value for the endpoint allowed nothing
    for got in plain:
        for secret in ("ada@example.com", "Thessaloniki", "Greece", "GR", "procurement", "score 48", "=yes"):
            assert secret not in got.body, (secret, got.body)
    assert [item["rule"] for item in plain[0].data["score_breakdown"]["items"]] == [
        "country",
        "title",
        "budget",
        "click pricing",
    ]
    # what every receiver gets stays: type, ids, stage, totals and points, rep, actor, codes and dates
    rejected = plain[1].data
    assert rejected["type"] == "lead.rejected" and rejected["lead_id"] == 1 and rejected["stage"] == "with_sales"
    assert rejected["score"] == 48 and rejected["score_breakdown"]["profile"] == 35
    assert [item["points"] for item in rejected["score_breakdown"]["items"]] == [20, 15, 5, 8]
    assert rejected["rep_id"] == 3 and rejected["actor"] == "crm-sales" and rejected["cadence"] == "nurture"
    assert rejected["data"] == {"reason": "not_ready", "recontact_on": "2027-06-01"}
    assert plain[0].data["data"] == {"waiting": 1}
    # the endpoint allowed notes and country gets them (and still not the title or the answer it was not allowed)
    assert rich[1].data["data"]["note"] == note and rich[0].data["data"]["waiting_for"] == "a rep for Greece"
    assert [item["rule"] for item in rich[1].data["score_breakdown"]["items"]] == [
        "country=GR",
        "title",
        "budget",
        "click pricing",
    ]
    assert "person" not in rich[1].data  # notes is no column of the person, and this lead has no country on file


async def test_a_receiver_outage_is_ridden_out_each_event_arrives_once_in_order(
    time_skipping_env: WorkflowEnvironment, sessionmaker: Any, leads: Any, receiver: Receiver
) -> None:
    async with sessionmaker() as session:
        receiver.secret = (await add_endpoint(session, "crm", receiver.url, allow_private=True)).secret
    receiver.answer = 503
    stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
    async with stack.worker():
        for lead_id, type in [(1, "lead.enrolled"), (2, "lead.enrolled"), (1, "lead.escalated"), (2, "lead.dormant")]:
            result = await stack.announce(lead_id, type)
            assert result.recorded and result.deliveries == 1
        # a retried announce (its first try's answer lost) records nothing new and hands the same delivery over
        again = await ActivityEnvironment(client=stack.client).run(
            stack.lifecycle.announce,
            LifecycleInput(
                key="lead-1.r1.lead.escalated.2",
                lead_id=1,
                type="lead.escalated",
                cycle=0,
                stage="with_sales",
                occurred_at=datetime.now(UTC),
            ),
        )
        assert not again.recorded and again.deliveries == 1
        crm = await endpoint_id(sessionmaker, "crm")
        async with sessionmaker() as session:
            while (await session.scalar(select(WebhookAttempt.id).where(WebhookAttempt.attempt == 2))) is None:
                await time_skipping_env.sleep(timedelta(seconds=20))  # the server's clock, not the test's
                session.expire_all()
        receiver.answer = None  # the CRM is back
        assert (await stack.finished(crm, 1)).delivered == 2
        assert (await stack.finished(crm, 2)).delivered == 2
    assert receiver.of_lead(1) == ["lead.enrolled", "lead.escalated"]
    assert receiver.of_lead(2) == ["lead.enrolled", "lead.dormant"]
    assert len(set(receiver.ids())) == 4 and receiver.requests > 4  # retries happened; each id taken once
    async with sessionmaker() as session:
        shown = await list_deliveries(session)
        assert {d.status for d in shown} == {"delivered"}
        assert all(d.tries[-1].status_code == 200 for d in shown)
        # the first of each lead was tried through the outage; the next waited its turn behind it (order per lead)
        for d in shown:
            if d.event_type == "lead.enrolled":
                assert d.tries[0].status_code == 503 and d.attempts >= 2
            else:
                assert d.attempts == 1
        assert (await session.get(WebhookEndpoint, crm)).failing_since is None  # type: ignore[union-attr]


async def test_three_days_of_failures_dead_letter_and_disable_the_endpoint_and_the_operator_sees_it(
    time_skipping_env: WorkflowEnvironment, make_settings: Any, database_url: str, sessionmaker: Any, leads: Any
) -> None:
    down = Receiver(answer=503)
    await down.start()
    try:
        async with sessionmaker() as session:
            down.secret = (await add_endpoint(session, "crm", down.url, allow_private=True)).secret
        stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
        async with stack.worker():
            await stack.announce(1, "lead.enrolled")
            await stack.announce(1, "lead.escalated")
            crm = await endpoint_id(sessionmaker, "crm")
            started = await time_skipping_env.get_current_time()
            assert await stack.finished(crm, 1) == WebhookDeliveryResult(delivered=0, dead=2)
            # retried for three days (the last wait, at most an hour, would have ended past them: no attempt there)
            assert await time_skipping_env.get_current_time() - started >= timedelta(days=3) - timedelta(hours=1)
            # once disabled, new events make no deliveries for it
            assert (await stack.announce(1, "lead.accepted")).deliveries == 0
            # a hanging receiver's deliveries queue behind the nurture worker's sends (priority 3) and the
            # sales path's (1), never ahead of them
            priorities = await scheduled_priorities(stack.client, delivery_workflow_id(crm, 1))
            assert priorities == {"deliver_webhook": {5}, "dead_letter_webhook": {5}}, priorities
    finally:
        await down.stop()
    async with sessionmaker() as session:
        first, second = sorted((await session.scalars(select(WebhookDelivery))).all(), key=lambda d: d.id)
        assert first.status == "dead" and first.attempts > 20 and first.last_status == 503
        assert second.status == "dead" and second.attempts == 0 and "disabled" in (second.last_error or "")
        health = await webhook_health(session)
        assert [e.name for e in health.disabled] == ["crm"] and health.dead == 2
        assert "accepted no delivery since" in (health.disabled[0].disabled_reason or "")
    settings = make_settings(database_url=database_url)
    app = create_app(settings, sessionmaker=sessionmaker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            text = (await http.get("/metrics")).text
    assert 'leadloop_webhook_endpoints{state="disabled"} 1.0' in text
    assert 'leadloop_webhook_deliveries{failing="false",status="dead"} 2.0' in text


async def test_410_gone_disables_the_endpoint_at_once(
    time_skipping_env: WorkflowEnvironment, sessionmaker: Any, leads: Any
) -> None:
    gone = Receiver(answer=410)
    await gone.start()
    try:
        async with sessionmaker() as session:
            gone.secret = (await add_endpoint(session, "old-crm", gone.url, allow_private=True)).secret
        stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
        async with stack.worker():
            await stack.announce(2, "lead.enrolled")
            await stack.announce(2, "lead.engaged")
            result = await stack.finished(await endpoint_id(sessionmaker, "old-crm"), 2)
    finally:
        await gone.stop()
    assert result == WebhookDeliveryResult(delivered=0, dead=2) and gone.requests == 1
    async with sessionmaker() as session:
        endpoint = (await session.scalars(select(WebhookEndpoint))).one()
        assert not endpoint.enabled and endpoint.disabled_reason == "the endpoint answered 410 Gone"
        bodies = [json.loads(d.body) for d in (await session.scalars(select(WebhookDelivery))).all()]
        assert [b["type"] for b in bodies] == ["lead.enrolled", "lead.engaged"]


async def test_a_long_queue_continues_as_new_and_keeps_its_order(
    time_skipping_env: WorkflowEnvironment, sessionmaker: Any, leads: Any, receiver: Receiver
) -> None:
    async with sessionmaker() as session:
        receiver.secret = (await add_endpoint(session, "crm", receiver.url, allow_private=True)).secret
    stack = Stack(time_skipping_env, sessionmaker, WebhookRetry())
    types = ["lead.enrolled", "lead.engaged", "lead.escalated", "lead.rejected", "lead.recycled", "lead.dormant"]
    for type in types:  # no worker yet: the six wait in the workflow the announcements started
        await stack.announce(1, type)
    crm = await endpoint_id(sessionmaker, "crm")
    async with sessionmaker() as session:
        ids = list(await session.scalars(select(WebhookDelivery.id).order_by(WebhookDelivery.id)))
    # that run is replaced by one that continues as new after two deliveries, given the same queue
    await stack.client.get_workflow_handle(delivery_workflow_id(crm, 1)).terminate("two a run, for the test")
    handle = await stack.client.start_workflow(
        WebhookDeliveryWorkflow.run,
        WebhookDeliveryInput(endpoint_id=crm, lead_id=1, pending=ids, per_run=2),
        id=delivery_workflow_id(crm, 1),
        task_queue=stack.queue,
    )
    async with stack.worker():
        last = await handle.result()
        first = await stack.client.get_workflow_handle(handle.id, run_id=handle.result_run_id).describe()
    assert receiver.of_lead(1) == types and receiver.duplicates == 0
    assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert last == WebhookDeliveryResult(delivered=2, dead=0)  # the third run: 2 + 2 + 2


HISTORIES = sorted((Path(__file__).parent.parent / "histories" / "webhooks").glob("*.json"))


def test_there_are_saved_delivery_histories() -> None:
    assert {p.stem for p in HISTORIES} >= {
        "outage-then-delivered",
        "retries-ran-out-dead-endpoint-disabled",
        "continued-as-new",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_saved_delivery_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[WebhookDeliveryWorkflow], workflow_runner=workflow_runner(), data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
