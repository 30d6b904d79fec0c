# ruff: noqa: F811 (each test takes the imported `stack` fixture by its name)
"""The CRM's changes to a running lead on the time-skipping server with the real activities: lifecycle events
recorded in order, a goal ends nurture as an accept does, a stop with its reason, an owner change, a move to another
cadence at the next step boundary, tags and categories as search attributes, and keep in touch (a `not_ready` with a
re-contact date comes back to the same rep on that day)."""

import asyncio
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from leadloop.domain.models import (
    ChangeResult,
    GoalInput,
    LeadState,
    MoveInput,
    OwnerInput,
    RepActionInput,
    RepActionResult,
    StopInput,
    TagsInput,
)
from leadloop.domain.schedule import local_date
from leadloop.domain.search import LEAD_CATEGORY, LEAD_TAGS
from leadloop.infra.db import Assignment, Goal, LifecycleEventRow
from tests.workflows.test_escalation import (
    ROSTER,
    SCORING,
    Stack,
    awaiting_rep,
    clicks,
    dispositions,
    stack,  # noqa: F401 (the fixture the tests take)
    with_rep,
)


async def lifecycle(stack: Stack, lead_id: int, count: int = 0) -> list[LifecycleEventRow]:
    """The lead's recorded lifecycle events in order (waiting until `count` are there: activities run in real time)."""
    for _ in range(200):
        async with stack.sessionmaker() as session:
            query = select(LifecycleEventRow).where(LifecycleEventRow.lead_id == lead_id).order_by(LifecycleEventRow.id)
            rows = list((await session.execute(query)).scalars())
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    return rows


async def update(handle: WorkflowHandle[Any, Any], name: str, arg: Any, result: type = ChangeResult) -> Any:
    return await handle.execute_update(name, arg, result_type=result)


async def emails_to(stack: Stack, address: str) -> list[Any]:
    return [m for m in stack.smtp.handler.messages if address in str(m["To"])]


async def test_each_step_of_a_leads_life_is_recorded_once_in_order(stack: Stack) -> None:
    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    await update(handle, "accept", RepActionInput(rep_id=rep, opportunity_id="OPP-1", actor="crm"), RepActionResult)
    assert (await handle.result()).stage == "converted"
    rows = await lifecycle(stack, lead.id, 4)
    assert [r.type for r in rows] == ["lead.enrolled", "lead.engaged", "lead.escalated", "lead.accepted"]
    escalated, accepted = rows[2], rows[3]
    assert escalated.payload["rep_id"] == rep and escalated.stage == "with_sales"
    assert escalated.payload["score"] == 55 and escalated.payload["score_breakdown"]["total"] == 55
    assert accepted.actor == "crm" and accepted.payload["data"]["opportunity_id"] == "OPP-1"
    assert len({r.key for r in rows}) == 4
    assert all(lead.email not in str(r.payload) for r in rows)  # no personal data in what every receiver gets


async def test_a_goal_ends_nurture_as_an_accept_does_and_is_recorded(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    result = await update(
        handle, "goal", GoalInput(kind="meeting_booked", source="hubspot", reference="MTG-9", actor="crm-sync")
    )
    assert result.stage == "converted" and "meeting_booked" in result.outcome and "MTG-9" in result.outcome
    assert (await handle.result()).stage == "converted"
    await stack.env.sleep(timedelta(days=10))
    assert len(await emails_to(stack, lead.email)) == 1  # no further email
    async with stack.sessionmaker() as session:
        [goal] = (await session.execute(select(Goal).where(Goal.lead_id == lead.id))).scalars()
    assert (goal.kind, goal.source, goal.reference, goal.actor, goal.stage_before) == (
        "meeting_booked",
        "hubspot",
        "MTG-9",
        "crm-sync",
        "nurturing",
    )
    types = [r.type for r in await lifecycle(stack, lead.id, 2)]
    assert types == ["lead.enrolled", "lead.goal"]
    # the workflow has ended: a second goal cannot apply
    with pytest.raises(Exception):  # noqa: B017
        await update(handle, "goal", GoalInput(kind="converted"))


async def test_a_goal_while_a_rep_holds_the_lead_closes_the_assignment(stack: Stack) -> None:
    lead, handle, _ = await with_rep(stack)
    await update(handle, "goal", GoalInput(kind="opportunity_created", actor="crm"))
    assert (await handle.result()).stage == "converted"
    async with stack.sessionmaker() as session:
        [row] = (await session.execute(select(Assignment).where(Assignment.lead_id == lead.id))).scalars()
    assert row.status == "closed"


async def test_a_stop_needs_a_reason_and_archives_the_lead(stack: Stack) -> None:
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    with pytest.raises(WorkflowUpdateFailedError) as empty:
        await update(handle, "stop", StopInput(reason="  ", actor="ops"))
    assert "give a reason" in str(empty.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as bad_actor:
        await update(handle, "stop", StopInput(reason="x", actor="<script>"))
    assert "is not a name" in str(bad_actor.value.cause)
    assert (await stack.state(handle)).stage == "nurturing"  # refused: nothing changed
    result = await update(handle, "stop", StopInput(reason="customer asked the account team", actor="ops"))
    assert result.stage == "archived"
    assert (await handle.result()).stage == "archived"
    rows = await lifecycle(stack, lead.id, 2)
    assert [r.type for r in rows] == ["lead.enrolled", "lead.stopped"]
    assert "customer asked the account team" in rows[1].payload["data"]["why"]


async def test_a_new_owner_gets_the_next_hand_over(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    result = await update(handle, "change_owner", OwnerInput(owner="Rep2@Sales.example", actor="crm"))
    assert result.applied and (await stack.state(handle)).owner == "rep2@sales.example"
    again = await update(handle, "change_owner", OwnerInput(owner="rep2@sales.example", actor="crm"))
    assert not again.applied  # the same owner twice changes nothing more
    await handle.signal("engagement", clicks(3))
    state = await stack.until(handle, awaiting_rep)
    assert state.assigned_rep == "Rep 2"
    types = [r.type for r in await lifecycle(stack, lead.id, 4)]
    assert types[:2] == ["lead.enrolled", "lead.owner_changed"] and types.count("lead.owner_changed") == 1


async def test_a_moved_lead_gets_its_next_email_from_the_new_cadence(stack: Stack) -> None:
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    with pytest.raises(WorkflowUpdateFailedError) as same:
        await update(handle, "move", MoveInput(cadence="hot", actor="marketing"))
    assert "on cadence 'hot' already" in str(same.value.cause)
    result = await update(handle, "move", MoveInput(cadence="welcome", actor="marketing"))
    assert "next step boundary" in result.outcome
    state = await stack.until(handle, lambda s: s.cadence == "welcome" and s.sends >= 1, skip=timedelta(hours=12))
    assert state.cycle == 1 and "moved to 'welcome' by marketing" in state.history[-1]
    mails = await emails_to(stack, lead.email)
    assert len(mails) == 2 and mails[1]["Subject"] != mails[0]["Subject"]  # the welcome cadence's first email
    assert [r.type for r in await lifecycle(stack, lead.id, 2)][:2] == ["lead.enrolled", "lead.moved"]


async def test_a_lead_with_sales_cannot_move(stack: Stack) -> None:
    _, handle, _ = await with_rep(stack)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(handle, "move", MoveInput(cadence="welcome"))
    assert "is with sales: only a lead in nurturing" in str(refused.value.cause)
    assert (await stack.state(handle)).stage == "with_sales"


async def test_tags_and_the_category_are_search_attributes(stack: Stack) -> None:
    rules = type(SCORING).model_validate(
        {
            **SCORING.model_dump(),
            "categories": [
                {"name": "likely-buyer", "min_fit": 10, "min_engagement": 20},
                {"name": "educable", "min_fit": 10},
            ],
        }
    )
    handle = await stack.start(await stack.lead(), scoring=rules)
    state = await stack.until(handle, lambda s: s.sends == 1)
    assert state.category == "educable"
    await handle.signal("tags", TagsInput(tags=["Trade-Show", "vip", "vip"], actor="crm"))
    state = await stack.until(handle, lambda s: s.tags == ["trade-show", "vip"])
    await handle.signal("engagement", clicks(2))
    state = await stack.until(handle, lambda s: s.category == "likely-buyer")
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(LEAD_TAGS) == ["trade-show", "vip"] and attributes.get(LEAD_CATEGORY) == "likely-buyer"
    await handle.signal("tags", TagsInput(tags=[]))
    await stack.until(handle, lambda s: s.tags == [])
    for _ in range(100):
        if (await handle.describe()).typed_search_attributes.get(LEAD_TAGS) in (None, []):
            break
        await asyncio.sleep(0.05)
    assert (await handle.describe()).typed_search_attributes.get(LEAD_TAGS) in (None, [])


async def test_not_ready_with_a_recontact_date_comes_back_to_the_same_rep_on_that_day(stack: Stack) -> None:
    lead, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    today = local_date(await stack.env.get_current_time(), "Europe/Athens")
    # bad input: a date in the past, or with another reason: refused, nothing changed
    for bad, why in (
        (RepActionInput(rep_id=rep, reason="not_ready", recontact_on=today - timedelta(days=1)), "not in the future"),
        (RepActionInput(rep_id=rep, reason="no_budget", recontact_on=today + timedelta(days=9)), "not_ready"),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await update(handle, "reject", bad, RepActionResult)
        assert why in str(refused.value.cause)
    assert (await stack.state(handle)).stage == "with_sales"
    day = today + timedelta(days=12)  # inside the 30-day cool-down of not_ready
    await update(
        handle,
        "reject",
        RepActionInput(rep_id=rep, reason="not_ready", recontact_on=day, note="call back after the budget round"),
        RepActionResult,
    )
    state = await stack.until(handle, lambda s: s.recontact_on == day and s.cycle == 1)
    assert state.recontact_rep_id == rep and state.stage == "nurturing"
    [row] = await dispositions(stack, lead.id)
    assert row.recontact_on == day
    before = len(await stack.mail_to("@sales.example"))
    await stack.env.sleep(timedelta(days=11))
    assert (await stack.state(handle)).stage == "nurturing"  # not yet
    await stack.env.sleep(timedelta(days=1, hours=12))
    state = await stack.until(handle, awaiting_rep)
    assert state.assigned_rep_id == rep and state.recontact_on is None
    notes = await stack.mail_to("@sales.example", before + 1)
    body = notes[-1].get_body(("plain",)).get_content()
    assert f"call this lead back on {day}" in body and "after the budget round" in body
    rows = await lifecycle(stack, lead.id, 6)
    types = [r.type for r in rows]
    assert types == [
        "lead.enrolled",
        "lead.engaged",
        "lead.escalated",
        "lead.rejected",
        "lead.recycled",
        "lead.escalated",
    ]
    assert rows[-1].payload["data"]["recontact_on"] == str(day)
    async with stack.sessionmaker() as session:
        keys = (await session.execute(select(Assignment.rule).where(Assignment.lead_id == lead.id))).scalars().all()
    assert any(rule.startswith("keep in touch") for rule in keys)


def test_a_lead_state_from_before_the_crm_fields_still_decodes() -> None:
    old = {
        "lead_id": 1,
        "stage": "nurturing",
        "cadence": "welcome",
        "cadence_version": 1,
        "cycle": 0,
        "step_index": 0,
        "steps_total": 3,
        "current_step": "s1",
        "next_send_at": None,
        "sends": 0,
        "uncertain_sends": 0,
    }
    state = LeadState.model_validate(old)
    assert state.tags == [] and state.category is None and state.recontact_on is None


async def test_a_not_ready_that_sends_the_lead_to_sleep_still_brings_it_back_on_the_day(stack: Stack) -> None:
    from leadloop.domain.recycle import Disposition

    # recycled often enough already: this policy lets a not_ready lead sleep (re-engaged only after 180 days)
    stack.recycle = stack.recycle.model_copy(
        update={"reasons": {**stack.recycle.reasons, "not_ready": Disposition(action="dormant")}}
    )
    _, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    day = local_date(await stack.env.get_current_time(), "Europe/Athens") + timedelta(days=10)
    result = await update(
        handle, "reject", RepActionInput(rep_id=rep, reason="not_ready", recontact_on=day), RepActionResult
    )
    assert result.stage == "dormant"
    assert (await stack.state(handle)).recontact_on == day
    # to an hour after nine on that day (the rep's 4 h to answer not yet gone)
    ten = datetime.combine(day, time(10), ZoneInfo("Europe/Athens"))
    await stack.env.sleep(ten - await stack.env.get_current_time())
    state = await stack.until(handle, awaiting_rep)
    assert state.assigned_rep_id == rep and state.recontact_on is None


async def test_a_later_reject_without_a_day_replaces_the_earlier_call_back(stack: Stack) -> None:
    _, handle, state = await with_rep(stack)
    rep = state.assigned_rep_id
    day = local_date(await stack.env.get_current_time(), "Europe/Athens") + timedelta(days=40)
    await update(handle, "reject", RepActionInput(rep_id=rep, reason="not_ready", recontact_on=day), RepActionResult)
    state = await stack.until(handle, lambda s: s.cycle == 1)
    assert state.recontact_on == day
    await handle.signal("engagement", clicks(6, first=10))  # hot again before the day: with a rep again
    state = await stack.until(handle, awaiting_rep, skip=timedelta(days=1))
    await update(handle, "reject", RepActionInput(rep_id=state.assigned_rep_id, reason="no_budget"), RepActionResult)
    state = await stack.until(handle, lambda s: s.cycle == 2)
    assert state.recontact_on is None and state.recontact_rep_id is None


async def test_the_same_goal_sent_twice_at_once_is_applied_once(stack: Stack) -> None:
    lead = await stack.lead()
    handle = await stack.start(lead)
    await stack.until(handle, lambda s: s.sends == 1)
    goal = GoalInput(kind="converted", source="salesforce", reference="OPP-2", actor="crm")
    first, second = await asyncio.gather(update(handle, "goal", goal), update(handle, "goal", goal))
    assert sorted([first.applied, second.applied]) == [False, True]
    assert (await handle.result()).stage == "converted"
    async with stack.sessionmaker() as session:
        goals = (await session.execute(select(Goal).where(Goal.lead_id == lead.id))).scalars().all()
    assert len(goals) == 1
    assert [r.type for r in await lifecycle(stack, lead.id, 2)].count("lead.goal") == 1


async def test_a_rep_cannot_decide_once_the_crm_stopped_the_lead(stack: Stack) -> None:
    lead, handle, state = await with_rep(stack)
    await update(handle, "stop", StopInput(reason="account team", actor="crm"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await update(handle, "accept", RepActionInput(rep_id=state.assigned_rep_id), RepActionResult)
    assert "leaving nurture (stopped by crm: account team)" in str(refused.value.cause)
    assert (await handle.result()).stage == "archived"
    assert await dispositions(stack, lead.id) == []  # no decision recorded beside the stop


async def test_a_stop_and_an_accept_at_once_one_wins_and_the_other_is_told(stack: Stack) -> None:
    _, handle, state = await with_rep(stack)
    stop = update(handle, "stop", StopInput(reason="account team", actor="crm"))
    accept = update(handle, "accept", RepActionInput(rep_id=state.assigned_rep_id), RepActionResult)
    results = await asyncio.gather(stop, accept, return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    assert len(failed) == 1 and isinstance(failed[0], WorkflowUpdateFailedError), results
    final = (await handle.result()).stage
    if isinstance(results[0], ChangeResult):  # the stop won: the rep hears the lead is leaving
        assert final == "archived" and "leaving nurture" in str(failed[0].cause)
    else:  # the rep's accept won: the stop is told a decision is under way
        assert final == "converted" and "being applied" in str(failed[0].cause)
