"""LeadNurtureWorkflow on the time-skipping server: a month of cadence in seconds."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.domain.cadence import Cadence, Sender, SendWindow, Step
from leadloop.domain.models import (
    EngagementEvent,
    EngagementInput,
    LeadNurtureResult,
    LeadState,
    LoadCycleInput,
    LoadCycleResult,
    RetrySendInput,
    SendEmailInput,
    SendEmailResult,
)
from leadloop.domain.schedule import in_window
from leadloop.domain.scoring import LeadProfile
from leadloop.infra.db import Lead
from leadloop.infra.temporal import workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from tests.conftest import with_pydantic
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

WINDOW = SendWindow(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")  # type: ignore[arg-type]
# 30 days in five steps
CADENCE = Cadence(
    name="month",
    version=1,
    send_window=WINDOW,
    sender=Sender(name="Test", address="test@leadloop.example"),
    steps=[
        Step(id=f"s{i}", wait=wait, template="welcome", subject="hello")  # type: ignore[arg-type]
        for i, wait in enumerate(["0", "7d", "7d", "8d", "8d"], start=1)
    ],
)


class RecordingSender:
    """Stands in for send_email: records the server time of each send, or fails as told."""

    def __init__(self) -> None:
        self.sends: list[tuple[int, str, datetime]] = []
        self.fail: dict[tuple[int, str], ApplicationError] = {}

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendEmailResult:
        failure = self.fail.pop((input.lead_id, input.step_id), None)
        if failure is not None:
            raise failure
        self.sends.append((input.lead_id, input.step_id, activity.info().current_attempt_scheduled_time))
        key = f"lead-{input.lead_id}.c{input.cycle}.{input.step_id}"
        return SendEmailResult(status="sent", outbox_key=key, message_id=f"<{key}@x>")


def nurture_worker(client: Client, task_queue: str, sender: RecordingSender) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[LeadNurtureWorkflow],
        activities=[sender.send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    )


def lead(lead_id: int, tz: str) -> Lead:
    return Lead(id=lead_id, email=f"l{lead_id}@example.com", timezone=tz, company="Acme")


async def skip_to_before_dst(env: WorkflowEnvironment) -> None:
    """Move the server's clock to the next 5 March: DST starts 14 March (LA) and 28 March (Athens)."""
    now = await env.get_current_time()
    target = datetime(now.year, 3, 5, 6, 0, tzinfo=UTC)
    if target <= now:
        target = target.replace(year=now.year + 1)
    await env.sleep(target - now)


async def finish(env: WorkflowEnvironment, client: Client, lead_id: int) -> LeadNurtureResult:
    """Wait for a lead's workflow to end, letting the test server skip time meanwhile."""
    async with env.time_skipping_unlocked():
        result: LeadNurtureResult = await client.get_workflow_handle(
            workflow_id(lead_id), result_type=LeadNurtureResult
        ).result()
    return result


async def start(client: Client, task_queue: str, lead_row: Lead, cadence: Cadence = CADENCE) -> str:
    return await start_lead(client, lead_row, cadence, task_queue=task_queue, time_scale=1.0, source="test")


async def test_month_cadence_sends_five_emails_inside_each_leads_window(time_skipping_env: WorkflowEnvironment) -> None:
    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue = f"tq-{uuid.uuid4()}"
    sender = RecordingSender()
    await skip_to_before_dst(env)
    async with nurture_worker(client, task_queue, sender):
        athens, la = lead(101, "Europe/Athens"), lead(102, "America/Los_Angeles")
        await start(client, task_queue, athens)
        await start(client, task_queue, la)
        results = [await finish(env, client, i) for i in (101, 102)]
    assert [r.stage for r in results] == ["cadence_complete", "cadence_complete"]
    assert [r.sends for r in results] == [5, 5]
    for lead_id, zone in ((101, "Europe/Athens"), (102, "America/Los_Angeles")):
        times = [t for i, _, t in sender.sends if i == lead_id]
        assert [s for i, s, _ in sender.sends if i == lead_id] == ["s1", "s2", "s3", "s4", "s5"]
        assert len(times) == 5
        for moment in times:
            local = moment.astimezone(ZoneInfo(zone))
            assert in_window(moment, WINDOW, zone), f"{zone}: sent at {local:%a %H:%M}, outside the window"
        offsets = {t.astimezone(ZoneInfo(zone)).utcoffset() for t in times}
        assert len(offsets) == 2, f"{zone}: the cadence should span a DST change, saw offsets {offsets}"
        assert times[-1] - times[0] >= timedelta(days=30)


async def test_enrolling_twice_keeps_one_workflow(time_skipping_env: WorkflowEnvironment) -> None:
    client = with_pydantic(time_skipping_env.client)
    task_queue = f"tq-{uuid.uuid4()}"
    sender = RecordingSender()
    async with nurture_worker(client, task_queue, sender):
        row = lead(201, "Europe/Berlin")
        # (the test server does not say whether signal-with-start started a run; the dev server does)
        await start(client, task_queue, row)
        handle: WorkflowHandle[LeadNurtureWorkflow, LeadNurtureResult] = client.get_workflow_handle(workflow_id(201))
        first_run = (await handle.describe()).run_id
        assert await start(client, task_queue, row) == "already_running"
        assert (await handle.describe()).run_id == first_run
        state = await handle.query("state", result_type=LeadState)
        assert state.enrolments == 2
        result = await finish(time_skipping_env, client, 201)
        # once finished, enrolling again does not restart the cadence
        assert await start(client, task_queue, row) == "finished_earlier"
    assert result.sends == 5
    assert [s for i, s, _ in sender.sends if i == 201] == ["s1", "s2", "s3", "s4", "s5"]


async def test_hard_bounce_ends_in_suppressed(time_skipping_env: WorkflowEnvironment) -> None:
    client = with_pydantic(time_skipping_env.client)
    task_queue = f"tq-{uuid.uuid4()}"
    sender = RecordingSender()
    sender.fail[(301, "s2")] = ApplicationError("550 5.1.1 no such user", type="HardBounce", non_retryable=True)
    async with nurture_worker(client, task_queue, sender):
        await start(client, task_queue, lead(301, "Europe/Athens"))
        handle = client.get_workflow_handle(workflow_id(301), result_type=LeadNurtureResult)
        result = await finish(time_skipping_env, client, 301)
        state = await handle.query("state", result_type=LeadState)
    assert result.stage == "suppressed"
    assert result.sends == 1
    assert [s for i, s, _ in sender.sends if i == 301] == ["s1"]
    assert state.stage == "suppressed"


async def test_policy_refusal_waits_visibly_until_retried(time_skipping_env: WorkflowEnvironment) -> None:
    client = with_pydantic(time_skipping_env.client)
    task_queue = f"tq-{uuid.uuid4()}"
    sender = RecordingSender()
    sender.fail[(401, "s3")] = ApplicationError("550 5.7.1 relaying denied", type="SendRefused", non_retryable=True)
    async with nurture_worker(client, task_queue, sender):
        await start(client, task_queue, lead(401, "Europe/Madrid"))
        handle = client.get_workflow_handle(workflow_id(401), result_type=LeadNurtureResult)
        state = await handle.query("state", result_type=LeadState)
        while state.stage != "send_blocked":
            await time_skipping_env.sleep(timedelta(days=1))
            state = await handle.query("state", result_type=LeadState)
        assert state.current_step == "s3"
        assert state.blocked_reason and "5.7.1" in state.blocked_reason
        # a week later it is still waiting, not retrying in a loop
        await time_skipping_env.sleep(timedelta(days=7))
        assert (await handle.query("state", result_type=LeadState)).stage == "send_blocked"
        assert len([s for i, s, _ in sender.sends if i == 401]) == 2
        await handle.signal("retry_send", RetrySendInput(note="relay fixed"))
        result = await finish(time_skipping_env, client, 401)
    assert result.stage == "cadence_complete"
    assert [s for i, s, _ in sender.sends if i == 401] == ["s1", "s2", "s3", "s4", "s5"]


@pytest.mark.parametrize("scale", [86400.0])
async def test_demo_speed_compresses_the_cadence(time_skipping_env: WorkflowEnvironment, scale: float) -> None:
    """At LEADLOOP_TIME_SCALE=86400 a 30-day cadence takes about 30 s of (server) time."""
    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue = f"tq-{uuid.uuid4()}"
    sender = RecordingSender()
    async with nurture_worker(client, task_queue, sender):
        await start_lead(
            client, lead(501, "Asia/Tokyo"), CADENCE, task_queue=task_queue, time_scale=scale, source="test"
        )
        result = await finish(env, client, 501)
    assert result.sends == 5
    times = [t for i, _, t in sender.sends if i == 501]
    # 30 cadence days (plus weekends skipped by the window) in about as many seconds
    assert timedelta(seconds=29) <= times[-1] - times[0] <= timedelta(seconds=40)


# ---------------------------------------------------------------- the big bang and dormancy

BIG = Cadence.model_validate(
    {
        **CADENCE.model_dump(mode="json", exclude={"steps"}),
        "name": "bigbang",
        "steps": [{"id": f"s{i}", "wait": "2d", "template": "welcome", "subject": "hi"} for i in range(1, 5)],
        "big_bang": {
            "after_unopened": 2,
            "wait": "3d",
            "template": "big-bang",
            "subject": "an offer",
            "response_window": "14d",
        },
    }
)


class CycleStubs(RecordingSender):
    """send_email recorded, and the other activities a recycling lead calls, standing in for the database."""

    @activity.defn(name="load_cycle")
    async def load_cycle(self, input: LoadCycleInput) -> LoadCycleResult:
        from leadloop import PROJECT_ROOT
        from leadloop.domain.cadence import cadence_path, load_cadence

        cadence = load_cadence(cadence_path(PROJECT_ROOT / "cadences", input.cadence))
        return LoadCycleResult(cadence=cadence, profile=LeadProfile(), timezone="Europe/Athens")


def cycle_worker(client: Client, task_queue: str, stubs: CycleStubs) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[LeadNurtureWorkflow],
        activities=[stubs.send_email, stubs.load_cycle, announce_lifecycle],
        workflow_runner=workflow_runner(),
    )


def recycle_policy() -> Any:
    from leadloop import PROJECT_ROOT
    from leadloop.domain.recycle import load_recycle

    return load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml")


async def steps_sent(stubs: CycleStubs, lead_id: int, count: int, env: WorkflowEnvironment) -> list[str]:
    for _ in range(400):
        sent = [s for i, s, _ in stubs.sends if i == lead_id]
        if len(sent) >= count:
            return sent
        await env.sleep(timedelta(hours=12))
    return [s for i, s, _ in stubs.sends if i == lead_id]


async def query(client: Client, lead_id: int) -> LeadState:
    state: LeadState = await client.get_workflow_handle(workflow_id(lead_id)).query("state", result_type=LeadState)
    return state


async def test_unopened_sends_bring_the_big_bang_once_then_dormancy_then_reengagement(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue, stubs = f"tq-{uuid.uuid4()}", CycleStubs()
    async with cycle_worker(client, task_queue, stubs):
        await start_lead(
            client,
            lead(601, "Europe/Athens"),
            BIG,
            task_queue=task_queue,
            time_scale=1.0,
            source="test",
            recycle=recycle_policy(),
        )
        # a machine open (Apple's prefetch) is not an open: the streak keeps counting
        await steps_sent(stubs, 601, 1, env)
        apple = EngagementEvent(id="m1", kind="open", human=False, at=datetime.now(UTC), reason="Apple MPP")
        await client.get_workflow_handle(workflow_id(601)).signal("engagement", EngagementInput(events=[apple]))
        assert await steps_sent(stubs, 601, 3, env) == ["s1", "s2", "big-bang"]
        state = await query(client, 601)
        assert state.stage == "big_bang" and state.big_bang_sent and "response to the big bang" in state.waiting_for
        # fourteen quiet days: dormant, then re-engaged 180 days later with the reengage cadence
        for _ in range(60):
            state = await query(client, 601)
            if state.stage == "dormant":
                break
            await env.sleep(timedelta(days=1))
        assert state.stage == "dormant" and "'reengage'" in state.waiting_for
        assert [s for i, s, _ in stubs.sends if i == 601] == ["s1", "s2", "big-bang"]  # s3, s4 never went out
        await env.sleep(timedelta(days=181))
        state = await query(client, 601)
        assert state.cycle == 1 and state.cadence == "reengage" and state.dormant_cycles == 1
        assert not state.big_bang_sent and state.unopened_streak <= 1


async def test_a_human_open_after_the_big_bang_resumes_the_cadence(time_skipping_env: WorkflowEnvironment) -> None:
    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue, stubs = f"tq-{uuid.uuid4()}", CycleStubs()
    async with cycle_worker(client, task_queue, stubs):
        await start_lead(
            client,
            lead(602, "Europe/Athens"),
            BIG,
            task_queue=task_queue,
            time_scale=1.0,
            source="test",
            recycle=recycle_policy(),
        )
        await steps_sent(stubs, 602, 3, env)
        opened = EngagementEvent(id="h1", kind="open", human=True, at=datetime.now(UTC), reason="Thunderbird")
        await client.get_workflow_handle(workflow_id(602)).signal("engagement", EngagementInput(events=[opened]))
        sent = await steps_sent(stubs, 602, 5, env)
    assert sent == ["s1", "s2", "big-bang", "s3", "s4"]  # the big bang once, then the regular steps


async def test_three_cycles_keep_each_history_small(time_skipping_env: WorkflowEnvironment) -> None:
    """Big bang, dormant, re-engaged twice, then retired: every run's history stays short."""
    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue, stubs = f"tq-{uuid.uuid4()}", CycleStubs()
    async with cycle_worker(client, task_queue, stubs):
        await start_lead(
            client,
            lead(603, "Europe/Athens"),
            BIG,
            task_queue=task_queue,
            time_scale=1.0,
            source="test",
            recycle=recycle_policy(),
        )
        first_run = (await client.get_workflow_handle(workflow_id(603)).describe()).run_id
        result = await finish(env, client, 603)
    assert result.stage == "archived"
    sent = [s for i, s, _ in stubs.sends if i == 603]
    assert sent == ["s1", "s2", "big-bang", "checkin", "tips", "checkin", "tips"]  # reengage twice, then retired
    runs, run_id = [], first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id(603), run_id=run_id).fetch_history()
        runs.append(len(history.events))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else ""
        )
    # measured here: 60, 41 and 30 events
    assert len(runs) == 3, runs  # cycle 0, 1, 2
    assert all(n <= 80 for n in runs), runs


async def test_a_paused_lead_sends_nothing_until_resumed(time_skipping_env: WorkflowEnvironment) -> None:
    from leadloop.domain.models import PauseInput

    env, client = time_skipping_env, with_pydantic(time_skipping_env.client)
    task_queue, sender = f"tq-{uuid.uuid4()}", RecordingSender()
    async with nurture_worker(client, task_queue, sender):
        await start(client, task_queue, lead(701, "Europe/Athens"))
        handle = client.get_workflow_handle(workflow_id(701))
        while len(sender.sends) < 1:
            await env.sleep(timedelta(hours=6))
        await handle.signal("pause", PauseInput(note="customer asked for a break"))
        await env.sleep(timedelta(days=40))  # longer than the whole cadence
        state = await handle.query("state", result_type=LeadState)
        assert state.stage == "paused" and "resume" in state.waiting_for
        assert [s for _, s, _ in sender.sends] == ["s1"]
        await handle.signal("resume", PauseInput())
        result = await finish(env, client, 701)
    assert result.stage == "cadence_complete"
    assert [s for _, s, _ in sender.sends] == ["s1", "s2", "s3", "s4", "s5"]
