"""What mail read back from a lead does, on the time-skipping server with the real activities, SQLite and a real SMTP
server: a reply hands the lead to a rep with her words, an out-of-office pauses the drip, bounces and complaints
suppress, each message applied once, and a signal with a kind leadloop does not know is refused; mail that comes while
the lead's next cycle loads is not lost, and an out-of-office at demo speed pauses for its time away in cadence time."""

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import WorkflowHandle

from activities.leads import LeadActivities
from leadloop.domain.cadence import Cadence, Escalation
from leadloop.domain.inbound_effects import pause_until
from leadloop.domain.mail import email_hash
from leadloop.domain.models import (
    InboundInput,
    LeadNurtureResult,
    LoadCycleInput,
    LoadCycleResult,
    ProfileUpdatedInput,
)
from leadloop.infra.db import Lead, Outbox, Suppression
from leadloop.services.enrollment import start_lead, workflow_id
from tests.workflows import test_escalation as escalation
from tests.workflows.test_escalation import CADENCE, ROSTER, SCORING, Stack

stack = escalation.stack  # the escalation tests' stack: real activities, SQLite, SMTP, time-skipping server
#: A cadence no score reaches: only a reply takes its leads to sales.
COLD = CADENCE.model_copy(update={"name": "cold", "escalation": Escalation(threshold=500)})


async def start(stack: Stack, lead: Lead, cadence: Cadence = COLD, time_scale: float = 1.0) -> WorkflowHandle[Any, Any]:
    await start_lead(
        stack.client, lead, cadence, task_queue=stack.task_queue, time_scale=time_scale, source="test",
        scoring=SCORING, recycle=stack.recycle,
    )  # fmt: skip
    handle = stack.client.get_workflow_handle(workflow_id(lead.id), result_type=LeadNurtureResult)
    stack.started.append(handle)
    return handle


async def welcomed(stack: Stack) -> tuple[Lead, WorkflowHandle[Any, Any], str]:
    """A lead whose welcome email went out, and that email's outbox key."""
    lead = await stack.lead()
    handle = await start(stack, lead)
    await stack.until(handle, lambda s: s.sends == 1)
    return lead, handle, f"lead-{lead.id}.c0.s1"


def inbound(kind: str, number: int = 1, **fields: Any) -> InboundInput:
    fields.setdefault("received_at", datetime.now(UTC))
    return InboundInput(id=f"inbound-{number}", kind=kind, **fields)


def mails_to(stack: Stack, address: str) -> list[Any]:
    return [m for m in stack.smtp.handler.messages if address in str(m["To"])]


async def finished(stack: Stack, handle: WorkflowHandle[Any, Any]) -> LeadNurtureResult:
    async with stack.env.time_skipping_unlocked():
        result: LeadNurtureResult = await asyncio.wait_for(handle.result(), 30)
    return result


async def suppression_of(stack: Stack, address: str) -> Suppression | None:
    async with stack.sessionmaker() as session:
        return await session.get(Suppression, email_hash(address))


async def test_a_reply_stops_the_drip_and_hands_the_lead_to_a_rep_with_her_words(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    lead, handle, key = await welcomed(stack)
    async with stack.sessionmaker() as session:
        welcome = await session.get(Outbox, key)
    assert welcome is not None
    reply = inbound(
        "human_reply",
        outbox_key=key,
        message_id="<r1@acme.example>",
        subject="Re: hello",
        reply_text="Yes, call me on Tuesday.\nΜαρία",
    )
    await handle.signal("inbound", reply)
    state = await stack.until(handle, lambda s: s.assigned_rep is not None)
    assert state.stage == "with_sales" and state.score.total < 500  # whatever the score
    assert ("reply", 30) in [(i.rule, i.points) for i in state.score.items]
    assert state.inbound.human_reply == 1
    [note] = await stack.mail_to("rep1@sales.example")
    assert "(replied)" in str(note["Subject"])
    body = note.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "  | Yes, call me on Tuesday.\n  | Μαρία" in body
    assert 'subject "Re: hello"' in body and "<r1@acme.example>" in body
    assert f"step 's1', {welcome.message_id}" in body  # the thread: which email of ours it answers
    html = note.get_body(("html",)).get_content()
    assert "Yes, call me on Tuesday." in html
    # the same message again (a re-signal after a crash) changes nothing
    await handle.signal("inbound", reply)
    # a second reply while the rep has the lead: the rep hears it, in a note of its own
    await handle.signal("inbound", inbound("human_reply", 2, subject="Re: hello", reply_text="Or Wednesday."))
    notes = await stack.mail_to("rep1@sales.example", 2)
    assert len(notes) == 2 and str(notes[1]["Subject"]).endswith("replied: Re: hello")
    assert "  | Or Wednesday." in notes[1].get_body(("plain",)).get_content()
    state = await stack.until(handle, lambda s: s.inbound.human_reply == 2)
    assert state.assigned_rep == "Rep 1"  # no new hand-over
    # days pass: no further nurture email and no big bang
    await stack.env.sleep(timedelta(days=6))
    assert len(mails_to(stack, lead.email)) == 1
    assert (await stack.state(handle)).sends == 1
    told = [m for m in await stack.mail_to("rep1@sales.example") if not str(m["Subject"]).startswith("Reminder: ")]
    assert len(told) == 2  # the repeated message told nobody again (the rep was reminded halfway, as ever)
    # rep 1 let the lead lapse: rep 2 is handed it with the reply (the latest) in the notification
    handed, *_ = await stack.mail_to("rep2@sales.example")  # (then reminded, as rep 1 was)
    assert "(replied)" in str(handed["Subject"]) and "  | Or Wednesday." in handed.get_body(("plain",)).get_content()


async def test_an_out_of_office_pauses_the_drip_until_the_business_day_after_its_return_date(stack: Stack) -> None:
    lead, handle, key = await welcomed(stack)
    before = await stack.state(handle)
    now = await stack.env.get_current_time()
    back = (now + timedelta(days=10)).date()
    await handle.signal("inbound", inbound("auto_reply", outbox_key=key, return_date=back))
    state = await stack.until(handle, lambda s: s.back_at is not None)
    assert state.stage == "nurturing" and state.inbound.auto_reply == 1
    assert state.score == before.score  # not engagement
    assert state.next_send_at is not None and before.next_send_at is not None
    local = state.next_send_at.astimezone(ZoneInfo(lead.timezone))
    assert local.date() > back and local.weekday() < 5 and local.hour == 0
    assert "out of office" in state.waiting_for
    await stack.env.sleep(timedelta(days=9))
    assert (await stack.state(handle)).sends == 1  # the step was due after 2 days: it waits for her return
    state = await stack.until(handle, lambda s: s.sends == 2, skip=timedelta(days=1))
    assert state.current_step == "s3"  # the drip went on from the same step (s2 went out)
    assert [str(m["X-Leadloop-Outbox-Key"]).rsplit(".", 1)[-1] for m in mails_to(stack, lead.email)] == ["s1", "s2"]


async def test_an_out_of_office_without_a_date_pauses_for_the_cadences_default(stack: Stack) -> None:
    _, handle, key = await welcomed(stack)
    now = await stack.env.get_current_time()
    await handle.signal("inbound", inbound("auto_reply", outbox_key=key))
    state = await stack.until(handle, lambda s: s.back_at is not None)
    assert state.back_at is not None
    assert timedelta(days=7) <= state.back_at - now < timedelta(days=7, minutes=5)  # COLD keeps the 7d default


async def test_a_challenge_changes_nothing_and_left_the_company_holds_with_the_contact(stack: Stack) -> None:
    lead, handle, _ = await welcomed(stack)
    before = await stack.state(handle)
    await handle.signal("inbound", inbound("auto_reply", 1, challenge=True))
    state = await stack.until(handle, lambda s: s.inbound.auto_reply == 1)
    assert state.stage == "nurturing" and state.next_send_at == before.next_send_at and state.back_at is None
    left = inbound("auto_reply", 2, left_company=True, contact_hint="anna@acme.example")
    await handle.signal("inbound", left)
    state = await stack.until(handle, lambda s: s.stage == "held")
    assert "has left the company" in state.waiting_for and "anna@acme.example" in state.waiting_for
    await stack.env.sleep(timedelta(days=5))
    assert len(mails_to(stack, lead.email)) == 1


@pytest.mark.parametrize("kind", ["hard_bounce", "complaint", "unsubscribe_request"])
async def test_a_hard_bounce_a_complaint_or_a_remove_me_suppresses(stack: Stack, kind: str) -> None:
    lead, handle, key = await welcomed(stack)
    await handle.signal("inbound", inbound(kind, outbox_key=key, status="5.1.1" if kind == "hard_bounce" else None))
    result = await finished(stack, handle)
    assert result.stage == "suppressed" and result.sends == 1
    described = await handle.describe()
    assert described.search_attributes.get("LeadStage") == ["suppressed"]
    state = await stack.state(handle)
    assert getattr(state.inbound, kind) == 1
    assert len(mails_to(stack, lead.email)) == 1


async def test_soft_bounces_suppress_the_address_after_three_and_policy_blocks_only_count(stack: Stack) -> None:
    lead, handle, _ = await welcomed(stack)
    await handle.signal("inbound", inbound("policy_block", 1, status="5.7.1"))
    for n in (2, 3):
        await handle.signal("inbound", inbound("soft_bounce", n, status="4.2.2"))
    state = await stack.until(handle, lambda s: s.inbound.soft_bounce == 2)
    assert state.stage == "nurturing" and state.inbound.policy_block == 1
    assert await suppression_of(stack, lead.email) is None  # a policy block is the sender's problem
    await handle.signal("inbound", inbound("soft_bounce", 3, status="4.2.2"))  # a repeat: applied once
    await handle.signal("inbound", inbound("soft_bounce", 4, status="4.2.2"))
    result = await finished(stack, handle)
    assert result.stage == "suppressed"
    row = await suppression_of(stack, lead.email)
    assert row is not None and row.reason == "soft_bounce" and "3 soft bounces within 30d" in (row.detail or "")


async def test_an_unknown_kind_is_refused_before_it_is_sent_and_dropped_by_the_workflow(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    _, handle, _ = await welcomed(stack)
    with pytest.raises(ValidationError, match="kind"):
        inbound("forwarded")
    # a client that sends the raw payload anyway: the worker cannot decode it and drops the signal
    raw = {"id": "inbound-9", "kind": "forwarded", "received_at": datetime.now(UTC).isoformat()}
    with caplog.at_level(logging.WARNING):
        await handle.signal("inbound", raw)
        await handle.signal("inbound", inbound("policy_block", 10))  # a good one after it still applies
        state = await stack.until(handle, lambda s: s.inbound.policy_block == 1)
    assert state.stage == "nurturing" and sum(state.inbound.model_dump().values()) == 1
    assert state.sends == 1
    assert "Failed deserializing signal input for inbound" in caplog.text  # the worker says why it dropped it


async def test_a_dormant_lead_that_left_is_held_and_a_dormant_lead_that_replies_goes_to_sales(stack: Stack) -> None:
    await stack.import_roster(ROSTER)
    left, replied = [await welcomed(stack) for _ in range(2)]
    for _, handle, _ in (left, replied):
        await stack.until(handle, lambda s: s.stage == "dormant", skip=timedelta(days=1))
    await left[1].signal("inbound", inbound("auto_reply", left_company=True, contact_hint="the new buyer, Jo"))
    state = await stack.until(left[1], lambda s: s.stage == "held")
    assert "it says to contact the new buyer, Jo" in state.waiting_for
    await replied[1].signal("inbound", inbound("human_reply", reply_text="Sorry for the silence: interested now"))
    state = await stack.until(replied[1], lambda s: s.assigned_rep is not None)
    assert state.stage == "with_sales"
    [note] = await stack.mail_to(str(state.assigned_rep).replace("Rep ", "rep") + "@sales.example")
    assert "Sorry for the silence: interested now" in note.get_body(("plain",)).get_content()


#: COLD, then the "hot" cadence (in the stack's cadence folder) as its next cycle
CHAINED = COLD.model_copy(update={"name": "chained", "next_cadence": "hot"})


class LoadGate:
    """Holds every `load_cycle` until the test opens it: the moment a lead's next cycle loads, made to last."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.opened = asyncio.Event()


@pytest.fixture
def load_gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadGate]:
    """Asked for before `stack`, so the stack's worker registers the held `load_cycle` (the real one, held)."""
    gate = LoadGate()
    load = LeadActivities.load_cycle

    @activity.defn(name="load_cycle")
    async def held(self, input: LoadCycleInput) -> LoadCycleResult:  # type: ignore[no-untyped-def]  # self unannotated: the SDK then skips it
        gate.entered.set()
        await gate.opened.wait()
        return await load(self, input)

    monkeypatch.setattr(LeadActivities, "load_cycle", held)
    yield gate
    gate.opened.set()


async def next_cycle_loading(stack: Stack, gate: LoadGate) -> None:
    """Let the server's time run (skipping) until a lead's next cycle starts loading, and hold it there."""
    async with stack.env.time_skipping_unlocked():
        await asyncio.wait_for(gate.entered.wait(), 30)


async def test_a_reply_as_the_cadence_chains_to_the_next_hands_her_over_and_the_next_cadence_never_starts(
    load_gate: LoadGate, stack: Stack
) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await start(stack, lead, CHAINED)
    await stack.until(handle, lambda s: s.sends == 2, skip=timedelta(days=1))
    await next_cycle_loading(stack, load_gate)  # the third email went out: 'hot' is loading
    assert len(mails_to(stack, lead.email)) == 3
    await handle.signal("inbound", inbound("human_reply", subject="Re: hello", reply_text="Yes, call me on Tuesday."))
    await stack.until(handle, lambda s: s.inbound.human_reply == 1)
    load_gate.opened.set()
    state = await stack.until(handle, lambda s: s.assigned_rep is not None)
    assert (state.stage, state.cycle, state.cadence) == ("with_sales", 0, "chained")  # not continued into 'hot'
    assert ("reply", 30) in [(i.rule, i.points) for i in state.score.items]
    [note] = await stack.mail_to("rep1@sales.example")
    assert "(replied)" in str(note["Subject"]) and "Yes, call me on Tuesday." in note.get_body(("plain",)).get_content()
    await stack.env.sleep(timedelta(days=3))
    assert len(mails_to(stack, lead.email)) == 3  # no welcome of 'hot'


async def dormant_and_waking(stack: Stack, gate: LoadGate, lead: Lead) -> WorkflowHandle[Any, Any]:
    """A lead that went quiet, slept, and whose re-engagement cadence is loading (held) now."""
    handle = await start(stack, lead)
    await stack.until(handle, lambda s: s.stage == "dormant", skip=timedelta(days=1))
    await stack.env.sleep(timedelta(days=170))  # recycle.yaml: re-engaged after 180 days
    await next_cycle_loading(stack, gate)
    return handle


async def test_an_out_of_office_as_a_dormant_lead_wakes_up_pauses_her_next_cycle(
    load_gate: LoadGate, stack: Stack
) -> None:
    lead = await stack.lead()
    handle = await dormant_and_waking(stack, load_gate, lead)
    now = await stack.env.get_current_time()
    back = (now + timedelta(days=10)).date()
    await handle.signal(
        "inbound", inbound("auto_reply", received_at=now, return_date=back)
    )  # the server's months later
    away = await stack.until(handle, lambda s: s.back_at is not None)
    load_gate.opened.set()
    state = await stack.until(handle, lambda s: s.cycle == 1)
    assert state.cadence == "reengage" and state.stage == "nurturing" and state.sends == 0
    assert state.back_at == away.back_at  # carried into the new cycle
    assert state.next_send_at is not None and "out of office" in state.waiting_for
    assert state.next_send_at.astimezone(ZoneInfo(lead.timezone)).date() > back
    await stack.env.sleep(timedelta(days=9))
    assert (await stack.state(handle)).sends == 0 and len(mails_to(stack, lead.email)) == 3  # COLD's three only
    await stack.until(handle, lambda s: s.sends == 1, skip=timedelta(days=1))  # after her return


@pytest.mark.parametrize("left", [False, True], ids=["reply", "left-company"])
async def test_a_reply_or_a_left_company_as_a_dormant_lead_wakes_up_is_acted_on(
    load_gate: LoadGate, stack: Stack, left: bool, tmp_path: Path
) -> None:
    await stack.import_roster(ROSTER)
    lead = await stack.lead()
    handle = await dormant_and_waking(stack, load_gate, lead)
    if left:
        message = inbound("auto_reply", left_company=True, contact_hint="the new buyer, Jo")
    else:
        message = inbound("human_reply", reply_text="Sorry for the silence: interested now")
    await handle.signal("inbound", message)
    await stack.until(handle, lambda s: sum(s.inbound.model_dump().values()) == 1)
    load_gate.opened.set()
    if left:
        state = await stack.until(handle, lambda s: s.stage == "held")
        assert "it says to contact the new buyer, Jo" in state.waiting_for
        assert state.cycle == 0  # acted on in this run, not dropped by a new one
        cold = yaml.safe_dump(COLD.model_dump(mode="json"), allow_unicode=True)
        (tmp_path / "cadences" / "cold.yaml").write_text(cold)  # the stack's cadence folder: the cycle reloads it
        await handle.signal("profile_updated", ProfileUpdatedInput(fields=["email"]))  # the new buyer's address
        state = await stack.until(handle, lambda s: s.cycle == 1)
        assert state.stage == "nurturing" and state.cadence == "cold"  # the next cycle, as after any hold
    else:
        state = await stack.until(handle, lambda s: s.assigned_rep is not None)
        assert state.stage == "with_sales"
        [note] = await stack.mail_to(str(state.assigned_rep).replace("Rep ", "rep") + "@sales.example")
        assert "Sorry for the silence: interested now" in note.get_body(("plain",)).get_content()
        assert state.cycle == 0  # acted on in this run, not dropped by a new one
        await stack.env.sleep(timedelta(days=3))
        assert len(mails_to(stack, lead.email)) == 3  # no re-engagement email


#: a day a second, as the demo runs; the second email 25 cadence days after the first
SLOW = COLD.model_copy(
    update={"name": "slow", "steps": [COLD.steps[0], COLD.steps[1].model_copy(update={"wait": timedelta(days=25)})]}
)
DEMO_SPEED = 86400


async def test_at_demo_speed_an_out_of_office_pauses_for_its_time_away_counted_from_when_it_came(stack: Stack) -> None:
    lead = await stack.lead()
    handle = await start(stack, lead, SLOW, time_scale=DEMO_SPEED)
    await stack.until(handle, lambda s: s.sends == 1)
    await stack.env.sleep(timedelta(seconds=20))  # 20 cadence days: the real return date is long past in cadence time
    now = await stack.env.get_current_time()
    received = now - timedelta(seconds=2)  # read from the mailbox two cadence days before it was signalled
    back = (received + timedelta(days=10)).date()
    await handle.signal("inbound", inbound("auto_reply", received_at=received, return_date=back))
    state = await stack.until(handle, lambda s: s.back_at is not None)
    away = pause_until(back, received, lead.timezone, SLOW.auto_reply_pause) - received  # 10-13 days
    assert timedelta(days=10) < away < timedelta(days=14)
    assert state.next_send_at is not None and "out of office" in state.waiting_for
    # the next email waits her time away, on the cadence's clock, from when her message came
    assert abs(state.next_send_at - (received + away / DEMO_SPEED)) < timedelta(seconds=1)
    await stack.env.sleep(state.next_send_at - timedelta(seconds=1) - await stack.env.get_current_time())
    assert (await stack.state(handle)).sends == 1  # day 25 of the cadence has passed: step 2 waited for her
    await stack.until(handle, lambda s: s.sends == 2, skip=timedelta(seconds=0.5))
    assert len(mails_to(stack, lead.email)) == 2
