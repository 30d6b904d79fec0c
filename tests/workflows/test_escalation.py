"""Escalation on the time-skipping server with the real activities, SQLite and a real SMTP server:
reaching the threshold pauses the drip, an SLA lapse re-assigns, a lead with no rep waits and is then assigned."""

import asyncio
import contextlib
import email
import email.policy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop.cadence import Cadence, Escalation, Sender, SendWindow, Step
from leadloop.db import Assignment, Lead, make_engine, make_sessionmaker
from leadloop.enrollment import start_lead, workflow_id
from leadloop.migrate import upgrade_database
from leadloop.models import EngagementEvent, EngagementInput, LeadNurtureResult, LeadState, RerouteInput
from leadloop.roster import import_roster
from leadloop.routing import Roster
from leadloop.scoring import ScoringConfig
from tests.conftest import SmtpServer, with_pydantic

ALWAYS = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59")  # type: ignore[arg-type]
CADENCE = Cadence(
    name="hot", version=1, send_window=ALWAYS, sender=Sender(name="Demo", address="demo@leadloop.example"),
    steps=[Step(id=f"s{i}", wait=w, template="welcome", subject="hello") for i, w in enumerate(["0", "2d", "2d"], 1)],  # type: ignore[arg-type]
    escalation=Escalation(threshold=40),
)  # fmt: skip
SCORING = ScoringConfig.model_validate(
    {"version": 1, "profile": {"industry": {"software": 10}},
     "engagement": [{"name": "click", "kind": "click", "points": 15}, {"name": "open", "kind": "open", "points": 2}]}
)  # fmt: skip
ROUTING = "version: 1\nretry_unassigned_every: 1h\nrules:\n  - name: all\n    team: south\n"
ROSTER = {
    "teams": [{
        "name": "south", "strategy": "round_robin", "sla": "4h",
        "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
        "manager": {"name": "Eleni Georgiou", "email": "eleni@sales.example"},
        "reps": [{"email": f"rep{i}@sales.example", "name": f"Rep {i}", "timezone": "Europe/Athens"}
                 for i in (1, 2, 3)],
    }]
}  # fmt: skip


@dataclass
class Stack:
    env: WorkflowEnvironment
    client: Client
    smtp: SmtpServer
    sessionmaker: Any
    task_queue: str
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def lead(self, **fields: Any) -> Lead:
        async with self.sessionmaker() as session:
            # ids unique across tests: the session's test server still runs earlier tests' workflows
            lead = Lead(id=uuid.uuid4().int % 10**9, email=f"{uuid.uuid4().hex[:8]}@example.com", first_name="Μαρία",
                        industry="software",
                        timezone="Europe/Athens", attributes={}, **fields)  # fmt: skip
            session.add(lead)
            await session.commit()
            return lead

    async def start(self, lead: Lead) -> WorkflowHandle[Any, Any]:
        await start_lead(self.client, lead, CADENCE, task_queue=self.task_queue, time_scale=1.0, source="test",
                         scoring=SCORING)  # fmt: skip
        handle = self.client.get_workflow_handle(workflow_id(lead.id), result_type=LeadNurtureResult)
        self.started.append(handle)
        return handle

    async def state(self, handle: WorkflowHandle[Any, Any]) -> LeadState:
        result: LeadState = await handle.query("state", result_type=LeadState)
        return result

    async def until(self, handle: WorkflowHandle[Any, Any], check: Any, skip: timedelta = timedelta(0)) -> LeadState:
        """Query until `check(state)` holds, letting the server skip `skip` of time each round."""
        import asyncio

        for _ in range(200):
            current = await self.state(handle)
            if check(current):
                return current
            if skip:
                await self.env.sleep(skip)
            else:
                await asyncio.sleep(0.05)
        raise AssertionError(f"never reached; last state {current}")

    async def mail_to(self, address: str, count: int = 1) -> list[Any]:
        """Messages to an address, once `count` of them have arrived (activities run in real time)."""
        import asyncio

        for _ in range(200):
            parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in self.smtp.handler.raw]
            found = [m for m in parsed if address in str(m["To"]) + str(m["Cc"] or "")]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        return found

    async def import_roster(self, data: dict[str, Any]) -> None:
        async with self.sessionmaker() as session:
            await import_roster(session, Roster.model_validate(data))
            await session.commit()


@pytest.fixture
async def stack(time_skipping_env, smtp, make_settings, tmp_path: Path) -> AsyncIterator[Stack]:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    settings = make_settings(smtp_host=smtp.host, smtp_port=smtp.port, routing_file=routing)
    await upgrade_database(settings.database_url)
    client = with_pydantic(time_skipping_env.client)
    engine = make_engine(settings.database_url)
    async with worker_module.build_worker(client, settings):
        stack = Stack(time_skipping_env, client, smtp, make_sessionmaker(engine), settings.task_queue)
        yield stack
        # a workflow left waiting would hold the shared test server's clock for the next test
        # (so does terminating one with an activity still in flight: let those finish first)
        for handle in stack.started:
            for _ in range(100):
                description = await handle.describe()
                if not description.raw_description.pending_activities:
                    break
                await asyncio.sleep(0.05)
            with contextlib.suppress(RPCError):  # already completed
                await handle.terminate("test over")
    await engine.dispose()


def clicks(n: int, first: int = 0) -> EngagementInput:
    from datetime import UTC, datetime

    return EngagementInput(events=[
        EngagementEvent(id=f"e{i}", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/p")
        for i in range(first, first + n)
    ])  # fmt: skip


async def test_threshold_pauses_the_drip_and_notifies_the_chosen_rep(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    await handle.signal("engagement", clicks(1))
    state = await stack.until(handle, lambda s: s.score.total == 25)
    assert state.stage == "nurturing"
    # the same event id again changes nothing; a machine click adds no score
    await handle.signal("engagement", clicks(1))
    machine = EngagementEvent(id="m1", kind="click", human=False, at=state.next_send_at, url="x", reason="scanner")
    await handle.signal("engagement", EngagementInput(events=[machine]))
    state = await stack.until(handle, lambda s: s.engagement.machine_clicks == 1)
    assert state.score.total == 25 and state.engagement.human_clicks == 1
    await handle.signal("engagement", clicks(1, first=1))
    state = await stack.until(handle, lambda s: s.stage == "with_sales" and s.assigned_rep is not None)
    assert state.score.total == 40 and {i.rule for i in state.score.items} == {"industry=software", "click click"}
    assert state.assigned_rep == "Rep 1" and state.team == "south" and state.response_due is not None
    notes = await stack.mail_to("rep1@sales.example")
    assert len(notes) == 1 and "score 40" in str(notes[0]["Subject"])
    body = notes[0].get_body(("plain",)).get_content()
    assert "Accept: http" in body and "Reject: http" in body and "industry=software" in body
    # the drip is paused: days pass, no nurture email goes out
    await stack.env.sleep(timedelta(days=6))
    assert [m for m in stack.smtp.handler.messages if lead.email in str(m["To"])].__len__() == 1
    assert (await stack.state(handle)).sends == 1


async def test_sla_lapse_moves_the_lead_on_and_copies_the_manager_after_two(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await handle.signal("engagement", clicks(3))
    chosen = []
    for lapses in range(3):
        state = await stack.until(handle, lambda s, n=lapses: s.assigned_rep is not None and len(s.lapsed_rep_ids) == n)
        chosen.append(state.assigned_rep)
        await stack.mail_to("@sales.example", lapses + 1)  # notified before the clock moves on
        if lapses < 2:
            assert state.response_due is not None
            # just past the deadline: 4 business hours in Athens
            await stack.env.sleep(state.response_due - await stack.env.get_current_time() + timedelta(minutes=1))
    assert len(set(chosen)) == 3  # never back to one who lapsed
    notes = await stack.mail_to("@sales.example", 3)
    assert [("eleni@sales.example" in str(m["Cc"] or "")) for m in notes] == [False, False, True]
    assert "lapsed 2 time(s)" in notes[2].get_body(("plain",)).get_content()
    async with stack.sessionmaker() as session:
        rows = (
            (
                await session.execute(
                    select(Assignment).where(Assignment.lead_id == lead.id).order_by(Assignment.assigned_at)
                )
            )
            .scalars()
            .all()
        )
    assert [r.status for r in rows] == ["lapsed", "lapsed", "assigned"]
    assert all(r.rule.startswith("rule all") for r in rows)


async def test_without_a_rep_the_lead_waits_visibly_then_is_assigned(stack: Stack) -> None:
    lead = await stack.lead()
    handle = await stack.start(lead)
    await handle.signal("engagement", clicks(3))
    waiting = await stack.until(handle, lambda s: s.stage == "with_sales" and "a rep" in s.waiting_for)
    assert waiting.assigned_rep is None and "no reps imported" in waiting.waiting_for
    await stack.import_roster(ROSTER)
    await handle.signal("reroute", RerouteInput())
    assigned = await stack.until(handle, lambda s: s.assigned_rep is not None)
    assert assigned.stage == "with_sales" and assigned.team == "south"
    assert await stack.mail_to("rep1@sales.example")


async def test_owner_keeps_the_lead(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead(owner="rep3@sales.example")
    handle = await stack.start(lead)
    await handle.signal("engagement", clicks(3))
    state = await stack.until(handle, lambda s: s.assigned_rep is not None)
    assert state.assigned_rep == "Rep 3"
    assert await stack.mail_to("rep3@sales.example")
    async with stack.sessionmaker() as session:
        row = (await session.execute(select(Assignment).where(Assignment.lead_id == lead.id))).scalar_one()
    assert row.rule.startswith("owner")


async def test_unsubscribe_ends_the_lead(stack: Stack) -> None:
    from datetime import UTC, datetime

    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    await handle.signal("engagement", EngagementInput(events=[
        EngagementEvent(id="u", kind="unsubscribe", human=True, at=datetime.now(UTC))]))  # fmt: skip
    async with stack.env.time_skipping_unlocked():
        result = await handle.result()
    assert result.stage == "suppressed" and result.sends == 1
