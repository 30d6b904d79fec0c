"""Records the saved histories the replay test runs: `PYTHONPATH=. .venv/bin/python tests/histories/record.py`.

Each history is a representative run of LeadNurtureWorkflow on the real dev server (activities
stand in for SMTP: the workflow's own decisions are what replay checks). Record new ones when the
workflow gains a path; never re-record old ones to make a replay failure go away.
"""

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import BigBang, Cadence, Escalation, SendWindow
from leadloop.domain.models import (
    AssignLeadInput,
    AssignLeadResult,
    CloseAssignmentInput,
    DispositionInput,
    EngagementEvent,
    EngagementInput,
    GoalInput,
    InboundInput,
    LeadState,
    LoadCycleInput,
    LoadCycleResult,
    MoveInput,
    NotifyRepInput,
    NotifyRepResult,
    OwnerInput,
    PauseInput,
    ProfileUpdatedInput,
    RecordGoalInput,
    RepActionInput,
    RetrySendInput,
    SendEmailInput,
    SendEmailResult,
    StopInput,
    SuppressAddressInput,
    TagsInput,
)
from leadloop.domain.recycle import Dormancy, load_recycle
from leadloop.domain.scoring import LeadProfile, ScoringConfig
from leadloop.domain.search import SEARCH_ATTRIBUTES
from leadloop.infra.db import Lead
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from starter.devserver import temporal_cli
from tests.lifecycle_log import announce_lifecycle
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


ALWAYS = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"}
RECYCLE = load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml")
HOT = CADENCE.model_copy(update={"name": "replay-hot", "escalation": Escalation(threshold=30)})
BIG = CADENCE.model_copy(
    update={
        "name": "replay-big",
        "big_bang": BigBang(
            after_unopened=3,
            wait=timedelta(days=1),
            template="big-bang",
            subject="Last one",
            response_window=timedelta(days=1),
        ),
    }
)
FAST_DORMANCY = RECYCLE.model_copy(update={"dormant": Dormancy(reengage_after=timedelta(days=2), cadence="reengage")})
LONG = CADENCE.model_copy(
    update={
        "name": "replay-long",
        "steps": [CADENCE.steps[0], CADENCE.steps[1].model_copy(update={"wait": timedelta(days=30)})],
    }
)
#: an out-of-office's pause longer than the step's wait: the drip waits for the lead's return
AWAY = CADENCE.model_copy(
    update={
        "name": "replay-ooo",
        "steps": [CADENCE.steps[0], CADENCE.steps[1].model_copy(update={"wait": timedelta(days=2)})],
    }
)
#: a cadence that chains to the next (HOT, from load_cycle) when it is complete
CHAINED = CADENCE.model_copy(update={"name": "replay-chained", "next_cadence": "replay-hot"})
#: leads whose next cycle's load is held until the recorder lets it go: their mail comes while it loads
loading: dict[int, asyncio.Event] = {}
released: dict[int, asyncio.Event] = {}
SCORING = ScoringConfig.model_validate(
    {
        "version": 1,
        "profile": {"industry": {"software": 10}},
        "engagement": [{"name": "click", "kind": "click", "points": 15}, {"name": "open", "kind": "open", "points": 2}],
    }
)
#: with the marketer's categories
CATEGORIZED = ScoringConfig.model_validate(
    {**SCORING.model_dump(), "categories": [{"name": "likely-buyer", "min_engagement": 20}, {"name": "educable"}]}
)
#: the rules as a scoring file that says nothing of clicks' evidence gets them
CONFIRMING = SCORING.model_copy(
    update={"unconfirmed_click_weight": 0.3, "escalate_on": "confirmed", "escalation_confidence": 0.9}
)


@activity.defn(name="assign_lead")
async def assign_lead(input: AssignLeadInput) -> AssignLeadResult:
    rep = 1 + len(input.exclude_rep_ids)
    return AssignLeadResult(
        assigned=True,
        key=input.key,
        rule="rule all → team south (round_robin)",
        team="south",
        rep_id=rep,
        rep_name=f"Rep {rep}",
        rep_timezone="Europe/Athens",
        sla=timedelta(hours=2),
        business_hours=SendWindow.model_validate(ALWAYS),
        has_manager=True,
    )


@activity.defn(name="notify_rep")
async def notify_rep(input: NotifyRepInput) -> NotifyRepResult:
    return NotifyRepResult(status="sent", outbox_key=f"{input.assignment_key}.notify")


@activity.defn(name="suppress_address")
async def suppress_address(input: SuppressAddressInput) -> None:
    return None


@activity.defn(name="close_assignment")
async def close_assignment(input: CloseAssignmentInput) -> None:
    return None


@activity.defn(name="load_cycle")
async def load_cycle(input: LoadCycleInput) -> LoadCycleResult:
    if input.lead_id in released:
        loading[input.lead_id].set()
        await released[input.lead_id].wait()
    return LoadCycleResult(
        cadence=HOT,
        scoring=SCORING,
        recycle=RECYCLE,
        profile=LeadProfile(industry="software"),
        timezone="Europe/Athens",
    )


@activity.defn(name="record_goal")
async def record_goal(input: RecordGoalInput) -> bool:
    return True


@activity.defn(name="record_disposition")
async def record_disposition(input: DispositionInput) -> None:
    return None


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
        5: "escalation-lapse-reassign-unsubscribe",
        6: "reject-not-ready-recycled",
        7: "big-bang-unanswered-dormant",
        8: "paused-then-resumed",
        9: "continue-as-new-suggested",
        10: "escalation-reminder-lapse-unsubscribe",
        11: "rep-clock-reject-recycled",  # the demo's: a day a second, the rep's deadline in real time
        # recorded after the workflow became a state machine (leadloop/domain/lifecycle.py, workflows/sales.py)
        12: "state-machine-drip-complete",
        13: "state-machine-reject-recycled",
        14: "state-machine-accept-converted",
        15: "state-machine-held-then-fixed",
        # recorded after inbound mail acted on the lead (workflow.patched "inbound-effects")
        16: "inbound-reply-handover-accepted",
        17: "inbound-auto-reply-paused",
        18: "inbound-hard-bounce-suppressed",
        19: "inbound-soft-bounces-suppressed",
        # recorded after mail that comes while the next cycle loads is acted on (workflow.patched
        # "inbound-pending-before-new-run") and an out-of-office pauses in cadence time ("out-of-office-cadence-time")
        20: "inbound-reply-while-next-cycle-loads",
        21: "inbound-out-of-office-demo-speed-while-next-cycle-loads",
        # recorded after clicks needed their landing page's word (scoring.yaml escalate_on, unconfirmed_click_weight)
        23: "unconfirmed-clicks-wait-confirmed-click-escalates-accepted",
        # recorded after the CRM's side (workflow.patched "crm-lifecycle"): lifecycle events announced, keep in touch,
        # goals, tags and categories, owner changes, moves and stops
        24: "crm-reject-not-ready-with-recontact-date",
        25: "crm-tags-category-owner-moved",
    }
    #: the second run of a lead whose first run is saved under its name above
    second_runs = {24: "crm-keep-in-touch-back-to-rep-goal-converted", 25: "crm-moved-lead-stopped"}
    # only what is asked for (default: what is missing); saved histories are never re-recorded
    wanted = {
        i: n for i, n in runs.items() if n in sys.argv[1:] or (len(sys.argv) == 1 and not (HERE / f"{n}.json").exists())
    }
    for lead_id in (20, 21):
        if lead_id in wanted:
            loading[lead_id], released[lead_id] = asyncio.Event(), asyncio.Event()
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[
            send_email,
            assign_lead,
            notify_rep,
            close_assignment,
            load_cycle,
            record_disposition,
            suppress_address,
            announce_lifecycle,
            record_goal,
        ],
        workflow_runner=workflow_runner(),
    ):
        for lead_id in wanted:
            lead = Lead(
                id=lead_id, email="x@example.com", timezone="Europe/Athens", company="Acme", industry="software"
            )
            if lead_id == 9:
                continue  # on its own server, below
            cadence, scoring = (
                (HOT, SCORING)
                if lead_id == 24
                else (CADENCE, CATEGORIZED)
                if lead_id == 25
                else (HOT, CONFIRMING)
                if lead_id == 23
                else (HOT, SCORING)
                if lead_id in (5, 6, 10, 11, 13, 14, 15)
                else (BIG, None)
                if lead_id == 7
                else (LONG, SCORING)
                if lead_id in (16, 18, 19)
                else (AWAY, None)
                if lead_id == 17
                else (CHAINED, SCORING)
                if lead_id in (20, 21)
                else (CADENCE, None)
            )
            recycled = (6, 11, 13, 14, 15, 16, 19, 20, 21, 24)
            recycle = RECYCLE if lead_id in recycled else FAST_DORMANCY if lead_id == 7 else None
            for _ in range(2):
                await start_lead(
                    client,
                    lead,
                    cadence,
                    task_queue=queue,
                    source="record",
                    # 10: a 2 h SLA lasts 2 s; 17: a day a second, the out-of-office's week a few seconds
                    time_scale=3600 if lead_id in (10, 25) else 86400 if lead_id in (17, 21) else 86400 * 2,
                    rep_time_scale=1.0 if lead_id in (11, 16, 20) else None,
                    scoring=scoring,
                    recycle=recycle,
                )
        if 8 in wanted:
            handle = client.get_workflow_handle(workflow_id(8))
            await handle.signal("pause", PauseInput(note="asked for a break"))
            while (await handle.describe()).search_attributes.get("LeadStage") != ["paused"]:
                await asyncio.sleep(0.1)
            await handle.signal("resume", PauseInput(note="back"))
        if 3 in wanted:
            handle = client.get_workflow_handle(workflow_id(3))
            while (await handle.describe()).search_attributes.get("LeadStage") != ["send_blocked"]:
                await asyncio.sleep(0.2)
            await handle.signal("retry_send", RetrySendInput(note="fixed"))
        if 5 in wanted:
            handle = client.get_workflow_handle(workflow_id(5))
            now = datetime.now(UTC)
            clicks = [
                EngagementEvent(id=f"c{i}", kind="click", human=True, at=now, url="https://s.example/p")
                for i in range(2)
            ]
            machine = EngagementEvent(id="m", kind="open", human=False, at=now, reason="Apple MPP")
            await handle.signal("engagement", EngagementInput(events=[clicks[0], machine]))
            await handle.signal("engagement", EngagementInput(events=[clicks[0], clicks[1]]))  # c0 repeated
            while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-2"]:
                await asyncio.sleep(0.1)
            unsubscribe = EngagementEvent(id="u", kind="unsubscribe", human=True, at=datetime.now(UTC))
            await handle.signal("engagement", EngagementInput(events=[unsubscribe]))
        if 10 in wanted:  # the rep is reminded halfway (workflow.patched "rep-reminder-halfway"), lets it lapse
            handle = client.get_workflow_handle(workflow_id(10))
            clicks = [
                EngagementEvent(id=f"c{i}", kind="click", human=True, at=datetime.now(UTC), url="x") for i in range(2)
            ]
            await handle.signal("engagement", EngagementInput(events=clicks))
            while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-2"]:
                await asyncio.sleep(0.05)
            unsubscribe = EngagementEvent(id="u", kind="unsubscribe", human=True, at=datetime.now(UTC))
            await handle.signal("engagement", EngagementInput(events=[unsubscribe]))
        for lead_id in [i for i in (16, 17, 18, 19) if i in wanted]:
            await record_inbound(client, lead_id)
        for lead_id in [i for i in (20, 21) if i in wanted]:
            first_run = (await client.get_workflow_handle(workflow_id(lead_id)).describe()).run_id
            await record_while_loading(client, lead_id)
            if lead_id == 21:  # the next cycle, the return carried into it: the first run is what replays
                handle = client.get_workflow_handle(workflow_id(21))
                while (await handle.describe()).run_id == first_run:
                    await asyncio.sleep(0.1)
                await save(client, 21, first_run, runs[21])
                await handle.terminate("recorded")
                del wanted[21]
        if 14 in wanted:  # the rep accepts: converted, the decision recorded as data
            handle = client.get_workflow_handle(workflow_id(14))
            await handover(client, 14)
            await handle.execute_update("accept", RepActionInput(rep_id=1, opportunity_id="OPP-14", note="call Tue"))
        if 23 in wanted:  # clicks no landing page confirmed wait; confirmations hand the lead over; accepted
            handle = client.get_workflow_handle(workflow_id(23))
            now = datetime.now(UTC)
            unconfirmed = [
                EngagementEvent(
                    id=f"u{i}", kind="click", human=True, at=now, url=f"x{i}", confidence=0.75, confirmed=False
                )
                for i in range(3)
            ]
            gateway = EngagementEvent(
                id="g", kind="click", human=False, at=now, url="x3", confidence=0.97, machine_class="gateway"
            )
            await handle.signal("engagement", EngagementInput(events=[*unconfirmed, gateway]))
            while (await handle.query("state", result_type=LeadState)).engagement.machine_clicks != 1:
                await asyncio.sleep(0.1)
            for clicked in (unconfirmed[0], gateway):
                confirmation = EngagementEvent(
                    id=f"confirmed-{clicked.id}",
                    kind="click",
                    human=True,
                    at=now,
                    url=clicked.url,
                    confidence=1.0,
                    confirmed=True,
                    confirms=clicked.id,
                    was_human=clicked.human,
                )
                await handle.signal("engagement", EngagementInput(events=[confirmation]))
            while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-1"]:
                await asyncio.sleep(0.1)
            await handle.execute_update("accept", RepActionInput(rep_id=1, opportunity_id="OPP-23", note="demo"))
        if 24 in wanted:  # not_ready with a re-contact date; on that day back to rep-1; the CRM records a goal
            handle = client.get_workflow_handle(workflow_id(24))
            await handover(client, 24)
            first_run = (await handle.describe()).run_id
            day = datetime.now(UTC).date() + timedelta(days=30)  # 15 s on at two days a second, inside the cool-down
            await handle.execute_update(
                "reject", RepActionInput(rep_id=1, reason="not_ready", recontact_on=day, note="after the budget round")
            )
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)
            await save(client, 24, first_run, runs[24])
            while not awaiting_rep(await handle.query("state", result_type=LeadState)):  # on the re-contact day
                await asyncio.sleep(0.1)
            await handle.execute_update(
                "goal", GoalInput(kind="converted", source="crm", reference="DEAL-24", actor="crm-sync")
            )
            wanted[24] = second_runs[24]
        if 25 in wanted:  # tagged, a category, a new owner; moved to another cadence; then stopped
            handle = client.get_workflow_handle(workflow_id(25))
            while (await handle.describe()).search_attributes.get("CadenceStep") != ["two"]:
                await asyncio.sleep(0.05)
            await handle.signal("tags", TagsInput(tags=["trade-show", "vip"], actor="crm"))
            await handle.execute_update("change_owner", OwnerInput(owner="rep2@example.com", actor="crm"))
            first_run = (await handle.describe()).run_id
            await handle.execute_update("move", MoveInput(cadence="replay-hot", actor="marketing"))
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)
            await save(client, 25, first_run, runs[25])
            await handle.execute_update("stop", StopInput(reason="the account team took over", actor="crm"))
            wanted[25] = second_runs[25]
        if 15 in wanted:  # the rep says the data is wrong: held until an operator fixes it, then a new cycle
            handle = client.get_workflow_handle(workflow_id(15))
            await handover(client, 15)
            first_run = (await handle.describe()).run_id
            await handle.execute_update("reject", RepActionInput(rep_id=1, reason="invalid_data", note="bounced"))
            while (await handle.describe()).search_attributes.get("LeadStage") != ["held"]:
                await asyncio.sleep(0.1)
            await handle.signal("profile_updated", ProfileUpdatedInput(fields=["email"]))
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)
            await save(client, 15, first_run, runs[15])
            await handle.terminate("recorded")
            del wanted[15]
        for rejected in [i for i in (6, 11, 13) if i in wanted]:
            handle = client.get_workflow_handle(workflow_id(rejected))
            clicks = [
                EngagementEvent(id=f"c{i}", kind="click", human=True, at=datetime.now(UTC), url="x") for i in range(2)
            ]
            await handle.signal("engagement", EngagementInput(events=clicks))
            while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-1"]:
                await asyncio.sleep(0.1)
            first_run = (await handle.describe()).run_id
            await handle.execute_update("reject", RepActionInput(rep_id=1, reason="not_ready", note="next quarter"))
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.1)
            await save(client, rejected, first_run, runs[rejected])
            await handle.terminate("recorded")
            del wanted[rejected]
        if 7 in wanted:  # unopened x3 -> big bang -> no answer -> dormant -> re-engaged in a fresh run
            handle = client.get_workflow_handle(workflow_id(7))
            first_run = (await handle.describe()).run_id
            while (await handle.describe()).run_id == first_run:
                await asyncio.sleep(0.2)
            await save(client, 7, first_run, runs[7])
            await handle.terminate("recorded")
            del wanted[7]
        wanted.pop(9, None)
        for lead_id, name in wanted.items():
            handle = client.get_workflow_handle(workflow_id(lead_id))
            await handle.result()
            history = await handle.fetch_history()
            (HERE / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
            print("recorded", name)
    await env.shutdown()
    if "continue-as-new-suggested" in sys.argv[1:] or (
        len(sys.argv) == 1 and not (HERE / "continue-as-new-suggested.json").exists()
    ):
        await record_suggested_continue_as_new()
    if PAUSED_HOLD in sys.argv[1:] or (len(sys.argv) == 1 and not (HERE / f"{PAUSED_HOLD}.json").exists()):
        await record_paused_hold_fresh_history()


def inbound(kind: str, number: int, **fields: object) -> InboundInput:
    return InboundInput(id=f"inbound-{number}", kind=kind, received_at=datetime.now(UTC), **fields)  # type: ignore[arg-type]


async def record_inbound(client: Client, lead_id: int) -> None:
    """Mail read back after the first send: a reply (then another, then the rep accepts), an out-of-office with a
    return date, a hard bounce, three soft bounces."""
    handle = client.get_workflow_handle(workflow_id(lead_id))
    while (await handle.describe()).search_attributes.get("CadenceStep") != ["two"]:
        await asyncio.sleep(0.05)
    key = f"lead-{lead_id}.c0.one"
    if lead_id == 16:
        reply = inbound("human_reply", 1, outbox_key=key, subject="Re: One", reply_text="yes, call me on Tuesday")
        await handle.signal("inbound", reply)
        await handle.signal("inbound", reply)  # a repeat: applied once
        while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-1"]:
            await asyncio.sleep(0.1)
        await handle.signal("inbound", inbound("human_reply", 2, subject="Re: One", reply_text="or Wednesday"))
        await asyncio.sleep(1)
        await handle.execute_update("accept", RepActionInput(rep_id=1, opportunity_id="OPP-16"))
    elif lead_id == 17:
        back = datetime.now(UTC).date() + timedelta(days=4)
        await handle.signal("inbound", inbound("auto_reply", 1, outbox_key=key, return_date=back))
    elif lead_id == 18:
        await handle.signal("inbound", inbound("hard_bounce", 1, outbox_key=key, status="5.1.1"))
    else:
        await handle.signal("inbound", inbound("policy_block", 1, status="5.7.1"))
        for n in (2, 3, 4):
            await handle.signal("inbound", inbound("soft_bounce", n, status="4.2.2"))


async def record_while_loading(client: Client, lead_id: int) -> None:
    """Mail that comes as the cadence is complete and the next one loads: a reply (then the rep accepts), or an
    out-of-office at demo speed with a return date."""
    handle = client.get_workflow_handle(workflow_id(lead_id))
    await asyncio.wait_for(loading[lead_id].wait(), 60)
    if lead_id == 20:
        await handle.signal("inbound", inbound("human_reply", 1, subject="Re: Three", reply_text="yes, call me"))
    else:
        back = datetime.now(UTC).date() + timedelta(days=4)
        await handle.signal("inbound", inbound("auto_reply", 1, return_date=back))
    while sum((await handle.query("state", result_type=LeadState)).inbound.model_dump().values()) < 1:
        await asyncio.sleep(0.05)
    released[lead_id].set()
    if lead_id == 20:
        while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-1"]:
            await asyncio.sleep(0.1)
        await handle.execute_update("accept", RepActionInput(rep_id=1, opportunity_id="OPP-20"))


async def handover(client: Client, lead_id: int) -> None:
    """Two human clicks take the lead over the threshold; wait until rep-1 has it."""
    handle = client.get_workflow_handle(workflow_id(lead_id))
    clicks = [EngagementEvent(id=f"c{i}", kind="click", human=True, at=datetime.now(UTC), url="x") for i in range(2)]
    await handle.signal("engagement", EngagementInput(events=clicks))
    while (await handle.describe()).search_attributes.get("AssignedRep") != ["rep-1"]:
        await asyncio.sleep(0.1)


def awaiting_rep(state: LeadState) -> bool:
    return state.stage == "with_sales" and "to accept or reject" in state.waiting_for


async def save(client: Client, lead_id: int, run_id: str, name: str) -> None:
    history = await client.get_workflow_handle(workflow_id(lead_id), run_id=run_id).fetch_history()
    (HERE / f"{name}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
    print("recorded", name)


async def record_suggested_continue_as_new() -> None:
    """Signals keep a lead's history growing until Temporal suggests a fresh one (threshold lowered to 40)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    config = env.client.config()
    config["data_converter"] = pydantic_data_converter
    client = Client(**config)
    queue = f"record-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        lead = Lead(id=9, email="x@example.com", timezone="Europe/Athens", company="Acme", industry="software")
        await start_lead(client, lead, LONG, task_queue=queue, time_scale=1.0, source="record")
        handle = client.get_workflow_handle(workflow_id(9))
        first_run = (await handle.describe()).run_id
        for i in range(60):
            if (await handle.describe()).run_id != first_run:
                break
            event = EngagementEvent(id=f"o{i}", kind="open", human=False, at=datetime.now(UTC), reason="Apple MPP")
            await handle.signal("engagement", EngagementInput(events=[event]))
        while (await handle.describe()).run_id == first_run:
            await asyncio.sleep(0.1)
        await save(client, 9, first_run, "continue-as-new-suggested")
        await handle.terminate("recorded")
    await env.shutdown()


#: recorded on a server that suggests a fresh history early (patch "inbound-pending-before-new-run")
PAUSED_HOLD = "inbound-left-company-paused-fresh-history"


async def record_paused_hold_fresh_history() -> None:
    """An operator pauses a lead, its out-of-office says it left the company, signals grow the history until
    Temporal suggests a fresh one: the lead is held in this run; its data fixed, the next cycle."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    config = env.client.config()
    config["data_converter"] = pydantic_data_converter
    client = Client(**config)
    queue = f"record-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, load_cycle, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        lead = Lead(id=22, email="x@example.com", timezone="Europe/Athens", company="Acme", industry="software")
        await start_lead(client, lead, LONG, task_queue=queue, time_scale=1.0, source="record")
        handle = client.get_workflow_handle(workflow_id(22))
        first_run = (await handle.describe()).run_id
        while (await handle.describe()).search_attributes.get("CadenceStep") != ["two"]:
            await asyncio.sleep(0.05)
        await handle.signal("pause", PauseInput(note="asked for a break"))
        while (await handle.describe()).search_attributes.get("LeadStage") != ["paused"]:
            await asyncio.sleep(0.05)
        await handle.signal("inbound", inbound("auto_reply", 1, left_company=True, contact_hint="anna@acme.example"))
        for i in range(60):
            if (await handle.describe()).search_attributes.get("LeadStage") == ["held"]:
                break
            event = EngagementEvent(id=f"o{i}", kind="open", human=False, at=datetime.now(UTC), reason="Apple MPP")
            await handle.signal("engagement", EngagementInput(events=[event]))
        while (await handle.describe()).search_attributes.get("LeadStage") != ["held"]:
            await asyncio.sleep(0.1)
        await handle.signal("profile_updated", ProfileUpdatedInput(fields=["email"]))
        while (await handle.describe()).run_id == first_run:
            await asyncio.sleep(0.1)
        await save(client, 22, first_run, PAUSED_HOLD)
        await handle.terminate("recorded")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
