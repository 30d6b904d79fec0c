"""Escalation on the time-skipping server with the real activities, SQLite and a real SMTP server:
reaching the threshold pauses the drip, an SLA lapse re-assigns, a lead with no rep waits and is then assigned."""

import asyncio
import contextlib
import email
import email.policy
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence, Escalation, Sender, SendWindow, Step
from leadloop.domain.models import (
    EngagementEvent,
    EngagementInput,
    LeadNurtureResult,
    LeadState,
    ProfileUpdatedInput,
    RerouteInput,
)
from leadloop.domain.recycle import load_recycle
from leadloop.domain.routing import Roster
from leadloop.domain.scoring import ScoringConfig
from leadloop.infra.db import Assignment, Lead, make_engine, make_sessionmaker
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
    steps=[Step(id=f"s{i}", wait=w, template="welcome", subject="hello") for i, w in enumerate(["0", "2d", "2d"], 1)],  # type: ignore[arg-type]
    escalation=Escalation(threshold=40),
)
SCORING = ScoringConfig.model_validate(
    {
        "version": 1,
        "profile": {"industry": {"software": 10}},
        "engagement": [{"name": "click", "kind": "click", "points": 15}, {"name": "open", "kind": "open", "points": 2}],
    }
)
ROUTING = "version: 1\nretry_unassigned_every: 1h\nrules:\n  - name: all\n    team: south\n"
ROSTER = {
    "teams": [
        {
            "name": "south",
            "strategy": "round_robin",
            "sla": "4h",
            "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
            "manager": {"name": "Eleni Georgiou", "email": "eleni@sales.example"},
            "reps": [
                {"email": f"rep{i}@sales.example", "name": f"Rep {i}", "timezone": "Europe/Athens"} for i in (1, 2, 3)
            ],
        }
    ]
}


@dataclass
class Stack:
    env: WorkflowEnvironment
    client: Client
    smtp: SmtpServer
    sessionmaker: Any
    task_queue: str
    recycle: Any = None
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def lead(self, **fields: Any) -> Lead:
        async with self.sessionmaker() as session:
            # ids unique across tests: the session's test server still runs earlier tests' workflows
            lead = Lead(
                id=uuid.uuid4().int % 10**9,
                email=f"{uuid.uuid4().hex[:8]}@example.com",
                first_name="Μαρία",
                industry="software",
                timezone="Europe/Athens",
                attributes={},
                **fields,
            )
            session.add(lead)
            await session.commit()
            return lead

    async def start(self, lead: Lead, scoring: ScoringConfig = SCORING) -> WorkflowHandle[Any, Any]:
        await start_lead(
            self.client,
            lead,
            CADENCE,
            task_queue=self.task_queue,
            time_scale=1.0,
            source="test",
            scoring=scoring,
            recycle=self.recycle,
        )
        handle = self.client.get_workflow_handle(workflow_id(lead.id), result_type=LeadNurtureResult)
        self.started.append(handle)
        return handle

    async def state(self, handle: WorkflowHandle[Any, Any]) -> LeadState:
        # a query landing while the run continues as new can time out on a loaded machine: ask again
        for attempt in range(3):
            try:
                result: LeadState = await handle.query("state", result_type=LeadState)
                return result
            except RPCError as exc:
                # the server words it "Timeout ..." or "query deadline exceeded" as the run moves on
                if not ("Timeout" in str(exc) or "deadline exceeded" in str(exc)) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

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
    cadences = tmp_path / "cadences"  # the samples, and this test's cadence, for new cycles to load
    shutil.copytree(PROJECT_ROOT / "cadences", cadences)
    (cadences / "hot.yaml").write_text(yaml.safe_dump(CADENCE.model_dump(mode="json"), allow_unicode=True))
    settings = make_settings(smtp_host=smtp.host, smtp_port=smtp.port, routing_file=routing, cadence_dir=cadences)
    await upgrade_database(settings.database_url)
    client = with_pydantic(time_skipping_env.client)
    engine = make_engine(settings.database_url)
    async with worker_module.build_worker(client, settings):
        stack = Stack(
            time_skipping_env,
            client,
            smtp,
            make_sessionmaker(engine),
            settings.task_queue,
            recycle=load_recycle(cadences / "recycle.yaml", cadences),
        )
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

    return EngagementInput(
        events=[
            EngagementEvent(id=f"e{i}", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/p")
            for i in range(first, first + n)
        ]
    )


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


async def test_clicks_no_landing_page_confirmed_never_hand_the_lead_over_and_a_confirmed_one_does(
    stack: Stack,
) -> None:
    await stack.import_roster(ROSTER)
    # the rules as a scoring file that does not say gets them: unconfirmed clicks at 30%, escalate on confirmed
    rules = SCORING.model_copy(
        update={"unconfirmed_click_weight": 0.3, "escalate_on": "confirmed", "escalation_confidence": 0.9}
    )
    handle = await stack.start(await stack.lead(), scoring=rules)
    state = await stack.until(handle, lambda s: s.sends == 1)
    now = state.next_send_at
    # a scanner behind an unpublished address passes for three browser clicks; one from Safe Links' range is machine
    passing = [
        EngagementEvent(
            id=f"u{i}", kind="click", human=True, at=now, url=f"https://s.example/{i}", confidence=0.75, confirmed=False
        )
        for i in range(3)
    ]
    gateway = EngagementEvent(
        id="g",
        kind="click",
        human=False,
        at=now,
        url="https://s.example/3",
        confidence=0.97,
        machine_class="gateway",
        reason="Microsoft 365 (gateway, 40.92.0.0/15)",
    )
    await handle.signal("engagement", EngagementInput(events=[*passing, gateway]))
    state = await stack.until(handle, lambda s: s.engagement.machine_clicks == 1)
    # in full the three would make 55 (over 40): at 30% they make 24, and none of them may escalate
    assert (state.stage, state.score.total, state.engagement.unconfirmed_clicks) == ("nurturing", 24, 3)
    await stack.env.sleep(timedelta(days=2))
    state = await stack.until(handle, lambda s: s.sends == 2)
    assert state.stage == "nurturing" and state.assigned_rep is None
    # the landing page's beacon reports the visitor of u0, then of the gateway's click (a person behind it after all)
    confirmed = [
        EngagementEvent(
            id=f"confirmed-{c.id}",
            kind="click",
            human=True,
            at=now,
            url=c.url,
            confidence=1.0,
            confirmed=True,
            confirms=c.id,
            was_human=c.human,
        )
        for c in (passing[0], gateway)
    ]
    await handle.signal("engagement", EngagementInput(events=confirmed[:1]))
    state = await stack.until(handle, lambda s: s.engagement.confirmed_clicks == 1)
    assert (state.stage, state.score.total) == ("nurturing", 34)  # 10 + 15 + 2 x 4.5: still under 40
    await handle.signal("engagement", EngagementInput(events=confirmed[1:]))
    state = await stack.until(handle, lambda s: s.stage == "with_sales" and s.assigned_rep is not None)
    assert state.score.total == 49 and state.engagement.human_clicks == 4 and state.engagement.machine_clicks == 0
    notes = await stack.mail_to("rep1@sales.example")
    assert len(notes) == 1 and "score 49" in str(notes[0]["Subject"])


async def test_part_points_of_unconfirmed_clicks_never_carry_a_lead_over_the_threshold(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    rules = SCORING.model_copy(
        update={"unconfirmed_click_weight": 0.3, "escalate_on": "confirmed", "escalation_confidence": 0.9}
    )
    handle = await stack.start(await stack.lead(), scoring=rules)
    now = (await stack.until(handle, lambda s: s.sends == 1)).next_send_at
    passing = [
        EngagementEvent(id=f"u{i}", kind="click", human=True, at=now, url=f"https://s.example/{i}", confidence=0.7,
                        confirmed=False)
        for i in range(7)
    ]  # fmt: skip
    await handle.signal("engagement", EngagementInput(events=passing))
    state = await stack.until(handle, lambda s: s.engagement.unconfirmed_clicks == 7)
    assert (state.stage, state.score.total) == ("nurturing", 42)  # 10 + 7 x 4.5: over 40 as shown, not proven
    # an ordinary mail client's open is sure evidence, but of 2 points: 12 proven, not 40
    opened = EngagementEvent(id="o1", kind="open", human=True, at=now, confidence=0.93)
    await handle.signal("engagement", EngagementInput(events=[opened]))
    state = await stack.until(handle, lambda s: s.engagement.human_opens == 1)
    assert (state.stage, state.score.total, state.assigned_rep) == ("nurturing", 44, None)


async def test_sla_lapse_moves_the_lead_on_and_copies_the_manager_after_two(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await handle.signal("engagement", clicks(3))
    chosen = []
    for lapses in range(3):
        state = await stack.until(handle, lambda s, n=lapses: s.assigned_rep is not None and len(s.lapsed_rep_ids) == n)
        chosen.append(state.assigned_rep)
        await stack.mail_to("@sales.example", 2 * lapses + 1)  # notified (each lapsed rep also reminded) first
        if lapses < 2:
            assert state.response_due is not None
            # just past the deadline: 4 business hours in Athens
            await stack.env.sleep(state.response_due - await stack.env.get_current_time() + timedelta(minutes=1))
    assert len(set(chosen)) == 3  # never back to one who lapsed
    mail = await stack.mail_to("@sales.example", 5)
    notes = [m for m in mail if not str(m["Subject"]).startswith("Reminder: ")]
    reminders = [m for m in mail if str(m["Subject"]).startswith("Reminder: ")]
    assert len(notes) == 3 and len(reminders) == 2  # halfway to each deadline that then lapsed
    assert [str(m["To"]) for m in reminders] == [str(m["To"]) for m in notes[:2]]
    assert "still waiting for your answer" in reminders[0].get_body(("plain",)).get_content()
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
    await handle.signal(
        "engagement",
        EngagementInput(events=[EngagementEvent(id="u", kind="unsubscribe", human=True, at=datetime.now(UTC))]),
    )
    async with stack.env.time_skipping_unlocked():
        result = await handle.result()
    assert result.stage == "suppressed" and result.sends == 1


# ---------------------------------------------------------------- rep decisions and the recycle policy


async def with_rep(stack: Stack) -> tuple[Lead, WorkflowHandle[Any, Any], LeadState]:
    """A lead escalated and assigned, its rep notified."""
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await handle.signal("engagement", clicks(3))
    state = await stack.until(handle, awaiting_rep)
    await stack.mail_to("@sales.example")
    return lead, handle, state


def awaiting_rep(state: LeadState) -> bool:
    """Notified, and waiting for the rep's answer: only now do accept and reject apply."""
    return state.assigned_rep_id is not None and "to accept or reject" in state.waiting_for


async def dispositions(stack: Stack, lead_id: int) -> list[Any]:
    from leadloop.infra.db import DispositionRow

    async with stack.sessionmaker() as session:
        query = select(DispositionRow).where(DispositionRow.lead_id == lead_id).order_by(DispositionRow.created_at)
        return list((await session.execute(query)).scalars())


async def recorded_results(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    """What the workflow asked record_disposition to keep as data (`DispositionInput.result`), in its history."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    from leadloop.domain.models import DispositionInput

    history = await handle.fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes for e in history.events]
    converter = pydantic_data_converter.payload_converter
    return [
        converter.from_payload(a.input.payloads[0], DispositionInput).result
        for a in scheduled
        if a.activity_type.name == "record_disposition"
    ]


async def test_accept_converts_and_later_actions_are_refused(stack: Stack) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from leadloop.domain.models import RepActionInput, RepActionResult

    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    with pytest.raises(WorkflowUpdateFailedError) as wrong:
        await handle.execute_update("accept", RepActionInput(rep_id=rep + 1), result_type=RepActionResult)
    assert f"rep-{rep + 1} is not the rep of lead {lead.id}" in str(wrong.value.cause)
    result = await handle.execute_update(
        "accept", RepActionInput(rep_id=rep, opportunity_id="OPP-7", note="call booked"), result_type=RepActionResult
    )
    assert result.stage == "converted" and "OPP-7" in result.outcome
    final = await handle.result()
    assert final.stage == "converted"
    # the workflow has ended: the server refuses any update on it (the CLI and API explain it by the state)
    with pytest.raises(Exception):  # noqa: B017
        await handle.execute_update(
            "reject", RepActionInput(rep_id=rep, reason="no_budget"), result_type=RepActionResult
        )
    assert (await stack.state(handle)).stage == "converted"
    [row] = await dispositions(stack, lead.id)
    assert (row.action, row.rep_id, row.opportunity_id, row.note) == ("accept", rep, "OPP-7", "call booked")
    # refused updates leave no trace in history
    history = await handle.fetch_history()
    accepted = [e for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")]
    assert len(accepted) == 1
    [result] = await recorded_results(handle)
    assert result.model_dump() == {"action": "converted", "cadence": None, "stage": "converted"}


async def test_unknown_reason_and_rejects_before_escalation_are_refused(stack: Stack) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from leadloop.domain.models import RepActionInput

    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    with pytest.raises(WorkflowUpdateFailedError) as early:
        await handle.execute_update("reject", RepActionInput(reason="no_budget"))
    assert "nurturing, not with sales" in str(early.value.cause)
    await handle.signal("engagement", clicks(3))
    state = await stack.until(handle, awaiting_rep)
    with pytest.raises(WorkflowUpdateFailedError) as unknown:
        await handle.execute_update("reject", RepActionInput(rep_id=state.assigned_rep_id, reason="too_expensive"))
    assert "unknown reason 'too_expensive'" in str(unknown.value.cause)
    assert (await stack.state(handle)).stage == "with_sales"


REASON_CASES = [
    # reason, stage right after, cadence of the next cycle (None: no new cycle)
    ("not_ready", "nurturing", "nurture-later"),
    ("no_budget", "nurturing", "nurture-later"),
    ("no_need", "nurturing", "nurture-later"),
    ("other", "nurturing", "nurture-later"),
    ("no_authority", "nurturing", "influencer"),
    ("bad_fit", "archived", None),
    ("not_interested", "suppressed", None),
    ("invalid_data", "held", None),
    ("unreachable", "dormant", None),
    ("wrong_route", "with_sales", None),
]


@pytest.mark.parametrize(("reason", "stage", "cadence"), REASON_CASES, ids=[c[0] for c in REASON_CASES])
async def test_each_reason_does_what_the_policy_says(
    stack: Stack, reason: str, stage: str, cadence: str | None
) -> None:
    from leadloop.domain.models import RepActionInput, RepActionResult

    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    deciding = (await handle.describe()).run_id
    result = await handle.execute_update(
        "reject", RepActionInput(rep_id=rep, reason=reason, note="from the test"), result_type=RepActionResult
    )
    assert result.stage == stage, result
    [row] = await dispositions(stack, lead.id)
    assert (row.action, row.reason, row.rep_id, row.note) == ("reject", reason, rep, "from the test")
    assert row.outcome == result.outcome
    if cadence is not None:
        after = await stack.until(handle, lambda s: s.cycle == 1)
        assert after.cadence == cadence and after.stage == "nurturing" and after.recycles == 1
        # engagement reset, profile fit kept, scored by scoring.yaml as it is now (software: 15, not 10)
        assert after.score.engagement == 0 and after.score.items[0].rule == "industry=software"
        assert after.score.profile == 15
        assert "cool-down" in after.waiting_for and result.back_at is not None
        assert after.history and "cycle 0" in after.history[0]
    elif stage in ("archived", "suppressed"):
        assert (await handle.result()).stage == stage
        if stage == "suppressed":
            from leadloop.domain.mail import email_hash
            from leadloop.infra.db import Suppression

            async with stack.sessionmaker() as session:
                assert (await session.get(Suppression, email_hash(lead.email))).reason == "not_interested"
    elif stage == "held":
        held = await stack.until(handle, lambda s: s.stage == "held")
        assert "data to be fixed" in held.waiting_for
        await handle.signal("profile_updated", ProfileUpdatedInput(fields=["email"]))
        resumed = await stack.until(handle, lambda s: s.cycle == 1)
        assert resumed.stage == "nurturing" and resumed.cadence == "hot"
    elif stage == "dormant":
        dormant = await stack.until(handle, lambda s: s.stage == "dormant")
        assert "re-engagement with 'reengage'" in dormant.waiting_for
        await stack.env.sleep(timedelta(days=181))
        woke = await stack.until(handle, lambda s: s.cycle == 1)
        assert woke.cadence == "reengage" and woke.dormant_cycles == 1
    else:  # wrong_route
        moved = await stack.until(handle, lambda s: awaiting_rep(s) and s.assigned_rep_id != rep)
        assert moved.stage == "with_sales"
        await stack.mail_to("@sales.example", 2)
    # the decision also recorded as data, by the run that applied it
    actions = {"nurturing": "recycled", "with_sales": "re-routed"}
    [recorded] = await recorded_results(stack.client.get_workflow_handle(handle.id, run_id=deciding))
    assert recorded.model_dump() == {"action": actions.get(stage, stage), "cadence": cadence, "stage": stage}


async def test_recycle_cap_sends_the_lead_to_dormancy(stack: Stack) -> None:
    from leadloop.domain.models import RepActionInput, RepActionResult

    stack.recycle = stack.recycle.model_copy(update={"max_recycles": 0})
    _lead, handle, state = await with_rep(stack)
    result = await handle.execute_update(
        "reject", RepActionInput(rep_id=state.assigned_rep_id, reason="not_ready"), result_type=RepActionResult
    )
    assert result.stage == "dormant" and "dormant" in result.outcome


async def test_two_reps_rejecting_at_once_one_wins(stack: Stack) -> None:
    from leadloop.domain.models import RepActionInput, RepActionResult

    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    outcomes = await asyncio.gather(
        handle.execute_update("reject", RepActionInput(rep_id=rep, reason="bad_fit"), result_type=RepActionResult),
        handle.execute_update("accept", RepActionInput(rep_id=rep), result_type=RepActionResult),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, RepActionResult)]
    assert len(won) == 1, outcomes
    assert len(await dispositions(stack, lead.id)) == 1


async def test_crm_endpoints_accept_reject_and_fix_data(stack: Stack, make_settings: Any) -> None:
    import httpx

    from starter.api import create_app

    settings = make_settings(api_keys=["crm-key"])
    app = create_app(settings, sessionmaker=stack.sessionmaker, client=stack.client)
    key = {"x-api-key": "crm-key"}
    lead, handle, state = await with_rep(stack)
    rep_email = f"rep{state.assigned_rep_id}@sales.example"
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            url = f"/leads/{lead.id}/reject"
            assert (await http.post(url, json={"rep": rep_email, "reason": "invalid_data"})).status_code == 401
            nobody = await http.post(url, json={"rep": "who@x.example", "reason": "invalid_data"}, headers=key)
            assert nobody.status_code == 403
            other = "rep9@sales.example" if state.assigned_rep_id != 9 else "rep1@sales.example"
            await stack.import_roster(
                {
                    "teams": [
                        {**ROSTER["teams"][0], "reps": [*ROSTER["teams"][0]["reps"], {"email": other, "name": "Other"}]}
                    ]
                }
            )
            wrong = await http.post(url, json={"rep": other, "reason": "invalid_data"}, headers=key)
            assert wrong.status_code == 409 and "is not the rep of lead" in wrong.json()["detail"]
            bad = await http.post(url, json={"rep": rep_email, "reason": "meh"}, headers=key)
            assert bad.status_code == 422
            held = await http.post(
                url, json={"rep": rep_email, "reason": "invalid_data", "note": "bounced"}, headers=key
            )
            assert held.status_code == 200 and held.json()["stage"] == "held"
            again = await http.post(url, json={"rep": rep_email, "reason": "invalid_data"}, headers=key)
            assert again.status_code == 409 and "not with sales" in again.json()["detail"]
            # fixing the data: refused when invalid, then the held lead resumes nurture
            bad_patch = await http.patch(f"/leads/{lead.id}", json={"email": "not an address"}, headers=key)
            assert bad_patch.status_code == 422
            assert (await http.patch("/leads/999999999", json={"title": "x"}, headers=key)).status_code == 404
            fixed = await http.patch(f"/leads/{lead.id}", json={"email": "fixed@example.com"}, headers=key)
            assert fixed.status_code == 200 and fixed.json() == {
                "lead_id": lead.id,
                "changed": ["email"],
                "workflow_told": True,
            }
            resumed = await stack.until(handle, lambda s: s.cycle == 1)
            assert resumed.stage == "nurturing"
            assert (await http.get(f"/leads/{lead.id}/dispositions")).status_code == 401
            [record] = (await http.get(f"/leads/{lead.id}/dispositions", headers=key)).json()
            assert (record["action"], record["reason"], record["note"], record["rep"]) == (
                "reject",
                "invalid_data",
                "bounced",
                state.assigned_rep,
            )


async def test_rep_pages_from_the_notification_email(stack: Stack, make_settings: Any) -> None:
    import re
    import time

    import httpx

    from leadloop.domain.tokens import Signer, Token
    from starter.api import create_app

    settings = make_settings(public_url="http://t.test")
    app = create_app(settings, sessionmaker=stack.sessionmaker, client=stack.client)
    lead, handle, state = await with_rep(stack)
    [note] = await stack.mail_to(f"rep{state.assigned_rep_id}@sales.example")
    body = note.get_body(("plain",)).get_content()
    reject_url = re.search(r"Reject: (\S+)", body).group(1)
    accept_url = re.search(r"Accept: (\S+)", body).group(1)
    token = reject_url.rsplit("/", 1)[1]
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            page = await http.get(f"/r/{token}")
            assert page.status_code == 200 and "Why are you giving this lead back?" in page.text
            assert "No budget" in page.text and "Μαρία" in page.text and 'type="radio"' in page.text
            accept_page = await http.get(f"/r/{accept_url.rsplit('/', 1)[1]}")
            assert "Accept this lead" in accept_page.text
            missing = await http.post(f"/r/{token}", data={"note": "no reason"})
            assert missing.status_code == 422 and "Pick one of the reasons" in missing.text
            done = await http.post(f"/r/{token}", data={"reason": "no_budget", "note": "next year"})
            assert done.status_code == 200 and "Lead given back" in done.text
            assert "back to nurture with" in done.text and "Back in nurture around" in done.text
            twice = await http.post(f"/r/{token}", data={"reason": "no_budget"})
            assert twice.status_code == 409 and "Nothing changed" in twice.text and "already rejected" in twice.text
            stale = await http.get(f"/r/{token}")
            assert "This hand-over is rejected" in stale.text
            signer = Signer(settings.signing_keys())
            month_ago = int(time.time()) - 30 * 86400
            old = Token(
                kind="rep", lead_id=lead.id, key=state.assignment_key or "", issued_at=month_ago, extra="reject"
            )
            expired = await http.get(f"/r/{signer.sign(old)}")
            assert expired.status_code == 410 and "expired" in expired.text
            assert (await http.get(f"/r/{token[:-4]}")).status_code == 404
    assert len(await dispositions(stack, lead.id)) == 1
    after = await stack.until(handle, lambda s: s.cycle == 1)
    assert after.cadence == "nurture-later"


@pytest.mark.e2e
async def test_a_rep_rejects_in_a_real_browser_and_the_lead_is_back_in_nurture(
    stack: Stack, make_settings: Any
) -> None:
    """Headless Chromium (Debian's) opens the Reject link of a real notification email, picks "no budget"."""
    import re

    import uvicorn
    from playwright.async_api import async_playwright

    from starter.api import create_app
    from tests.conftest import free_port

    port = free_port()
    settings = make_settings(public_url=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, sessionmaker=stack.sessionmaker, client=stack.client),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        lead, handle, state = await with_rep(stack)
        [note] = await stack.mail_to(f"rep{state.assigned_rep_id}@sales.example")
        html = note.get_body(("html",)).get_content()
        reject = re.search(r'href="([^"]+/r/[^"]+)"[^>]*>Reject<', html).group(1).replace("&amp;", "&")
        # the worker signs links for its own LEADLOOP_PUBLIC_URL; this test serves the app on a free port
        reject = f"http://127.0.0.1:{port}/r/{reject.rsplit('/r/', 1)[1]}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = await browser.new_page()
            await page.goto(reject)
            assert "Why are you giving this lead back?" in await page.content()
            await page.get_by_label("No budget").check()
            await page.get_by_label("Note (optional)").fill("Budget frozen until Q3")
            await page.get_by_role("button", name="Reject this lead").click()
            await page.wait_for_selector("#outcome")
            outcome = await page.inner_text("#outcome")
            await page.screenshot(path=str(Path(settings.state_dir) / "rep-reject.png"))
            await browser.close()
        assert "back to nurture with 'nurture-later'" in outcome
        after = await stack.until(handle, lambda s: s.cycle == 1)
        assert after.stage == "nurturing" and after.cadence == "nurture-later"
        [row] = await dispositions(stack, lead.id)
        assert (row.reason, row.note, row.source) == ("no_budget", "Budget frozen until Q3", "page")
    finally:
        server.should_exit = True
        await serving


async def test_a_reject_arriving_while_the_lead_continues_as_new_is_refused(stack: Stack) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    from leadloop.domain.models import RepActionInput, RepActionResult

    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    first = asyncio.create_task(
        handle.execute_update("reject", RepActionInput(rep_id=rep, reason="not_ready"), result_type=RepActionResult)
    )
    await asyncio.sleep(0)  # the second one lands while the first recycles the lead into a new run
    second = asyncio.create_task(
        handle.execute_update("reject", RepActionInput(rep_id=rep, reason="no_budget"), result_type=RepActionResult)
    )
    results = await asyncio.gather(first, second, return_exceptions=True)
    won = [r for r in results if isinstance(r, RepActionResult)]
    refused = [r for r in results if isinstance(r, WorkflowUpdateFailedError)]
    assert len(won) == 1 and len(refused) == 1, results
    assert "not with sales" in str(refused[0].cause) or "being applied" in str(refused[0].cause)
    after = await stack.until(handle, lambda s: s.cycle == 1)
    assert after.stage == "nurturing" and after.recycles == 1
    [row] = await dispositions(stack, lead.id)  # only the winner's decision is recorded
    assert row.reason in ("not_ready", "no_budget") and row.outcome == won[0].outcome


async def test_at_demo_speed_the_rep_still_has_real_hours_to_answer(stack: Stack, make_settings: Any) -> None:
    """`make demo` runs a cadence day a second, but the rep's four business hours stay hours: half an hour after
    the notification (years of cadence time) the lead still waits for the first rep, and the Reject link in that
    email gives it back to nurture."""
    import re

    import httpx

    from starter.api import create_app
    from starter.demo import demo_settings

    settings = demo_settings(make_settings(time_scale=86400, public_url="http://t.test"))
    assert (settings.time_scale, settings.rep_time_scale) == (86400, 1)
    assert demo_settings(make_settings(time_scale=86400, rep_time_scale=60)).rep_time_scale == 60
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    await start_lead(
        stack.client,
        lead,
        CADENCE,
        task_queue=stack.task_queue,
        time_scale=settings.time_scale,
        rep_time_scale=settings.rep_time_scale,
        source="demo",
        scoring=SCORING,
        recycle=stack.recycle,
    )
    handle = stack.client.get_workflow_handle(workflow_id(lead.id), result_type=LeadNurtureResult)
    stack.started.append(handle)
    await handle.signal("engagement", clicks(3))
    state = await stack.until(handle, awaiting_rep)
    handed_over = await stack.env.get_current_time()
    # real hours, not 4 h / 86400: the server's clock may have moved on a little since the hand-over
    assert state.response_due is not None and state.response_due - handed_over >= timedelta(hours=3, minutes=59)
    [note] = await stack.mail_to("rep1@sales.example")
    body = note.get_body(("plain",)).get_content()
    due = state.response_due.astimezone(ZoneInfo("Europe/Athens"))
    assert f"{due:%a %d %b %H:%M} (Europe/Athens)" in body  # the deadline the rep reads is the one that holds

    await stack.env.sleep(timedelta(minutes=30))  # 30 real minutes: 1,800 cadence days at demo speed
    later = await stack.state(handle)
    assert later.stage == "with_sales" and later.assigned_rep == "Rep 1" and later.lapsed_rep_ids == []
    assert not [m for m in stack.smtp.handler.messages if "rep2@" in str(m["To"])]

    token = re.search(r"Reject: \S+/r/(\S+)", body).group(1)
    app = create_app(settings, sessionmaker=stack.sessionmaker, client=stack.client)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            page = await http.get(f"/r/{token}")
            assert page.status_code == 200 and "Why are you giving this lead back?" in page.text
            done = await http.post(f"/r/{token}", data={"reason": "not_ready"})
            assert done.status_code == 200 and "Lead given back" in done.text
    back = await stack.until(handle, lambda s: s.cycle == 1 and s.stage == "nurturing", skip=timedelta(seconds=10))
    assert back.cadence == "nurture-later"
