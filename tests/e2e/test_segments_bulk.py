"""Segments and bulk actions on the real dev server (custom search attributes, eventually consistent visibility):
`leadloop segment` and `leadloop bulk` pause, tag and stop exactly the matching leads, once; the HTTP API does the
same under the marketing scope; bad segments and bad actions are refused with nothing changed."""

import asyncio
import os
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import Cadence, Escalation
from leadloop.domain.mail import email_hash
from leadloop.domain.models import EngagementEvent as Event
from leadloop.domain.models import (
    EngagementInput,
    LeadState,
    LoadCycleInput,
    LoadCycleResult,
    SendEmailInput,
    SendEmailResult,
    StopInput,
)
from leadloop.domain.scoring import LeadProfile, ScoringConfig
from leadloop.infra.db import Lead, LeadTag, Segment, Suppression, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.temporal import workflow_runner
from leadloop.services.api_keys import create_key
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.lead_client import LeadClient
from starter.api import create_app
from tests.conftest import BIN, client_address, with_pydantic
from tests.e2e.test_drip_whole_stack import run
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

SCORING = ScoringConfig.model_validate(
    {
        "version": 1,
        "profile": {"industry": {"software": 20}},
        "engagement": [{"name": "click", "kind": "click", "points": 30}],
        "categories": [{"name": "likely-buyer", "min_fit": 20}, {"name": "no-prospect", "max_fit": 19}],
    }
)


def cadence(name: str) -> Cadence:
    return Cadence.model_validate(
        {
            "name": name,
            "version": 1,
            "send_window": {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "00:00",
                "end": "23:59",
            },
            "steps": [
                {"id": "first", "wait": "0", "template": "welcome", "subject": "hi"},
                {"id": "second", "wait": "30d", "template": "tips", "subject": "hi"},
            ],
            "escalation": Escalation(threshold=500).model_dump(),
        }
    )


@activity.defn(name="send_email")
async def send_email(input: SendEmailInput) -> SendEmailResult:
    key = f"lead-{input.lead_id}.c{input.cycle}.{input.step_id}"
    return SendEmailResult(status="sent", outbox_key=key, message_id=f"<{key}@x>")


@activity.defn(name="load_cycle")
async def load_cycle(input: LoadCycleInput) -> LoadCycleResult:
    """The next cycle's snapshots, as the real activity loads them (here: the test's cadence under that name)."""
    return LoadCycleResult(cadence=cadence(input.cadence), scoring=SCORING, profile=LeadProfile(), timezone="UTC")


@dataclass
class Stack:
    """Five leads on a cadence of this test's own (so other tests' leads never match): two in software that
    clicked (score 50, likely-buyer), three in retail (score 0, no-prospect)."""

    client: Client
    sessions: async_sessionmaker[AsyncSession]
    queue: str
    env: dict[str, str]
    db_url: str
    cadence: str
    hot: list[int]
    cold: list[int]

    @property
    def all(self) -> list[int]:
        return self.hot + self.cold

    async def cli(self, *args: str) -> tuple[int, str, str]:
        return await run(str(BIN / "leadloop"), *args, env=self.env)

    async def state(self, lead_id: int) -> LeadState:
        return await self.client.get_workflow_handle(workflow_id(lead_id)).query(
            LeadNurtureWorkflow.state, result_type=LeadState
        )

    async def stages(self) -> dict[int, str]:
        return {lead_id: (await self.state(lead_id)).stage for lead_id in self.all}

    async def until(self, check: Callable[[], Any], what: str) -> None:
        """Poll (visibility and workflow state follow within moments) until `check()` holds."""
        for _ in range(150):
            if await check():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"never: {what}")

    async def count(self, query: str) -> int:
        return (await self.client.count_workflows(query)).count

    async def db_tags(self, lead_id: int) -> set[str]:
        async with self.sessions() as session:
            return set(await session.scalars(select(LeadTag.tag).where(LeadTag.lead_id == lead_id)))


@pytest.fixture
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(db_url)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    config = with_pydantic(dev_env.client).config()
    config["namespace"] = "e2e-ops"
    client = Client(**config)
    queue = f"segments-{uuid.uuid4()}"
    name = f"seg-{uuid.uuid4().hex[:10]}"
    base = random.randrange(10_000_000, 2_000_000_000)  # workflow ids of their own in the shared namespace
    hot, cold = [base + 1, base + 2], [base + 3, base + 4, base + 5]
    async with sessions() as session:
        for lead_id in hot + cold:
            industry = "software" if lead_id in hot else "retail"
            session.add(Lead(id=lead_id, email=f"l{lead_id}@example.com", timezone="UTC", industry=industry))
        await session.commit()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(dev_env.client),
        "LEADLOOP_TEMPORAL_NAMESPACE": "e2e-ops",
        "LEADLOOP_DATABASE_URL": db_url,
        "LEADLOOP_TASK_QUEUE": queue,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle, load_cycle],
        workflow_runner=workflow_runner(),
    ):
        async with sessions() as session:
            leads = [await session.get(Lead, lead_id) for lead_id in hot + cold]
        for lead in leads:
            assert lead is not None
            await start_lead(
                client, lead, cadence(name), task_queue=queue, time_scale=1.0, source="test", scoring=SCORING
            )
        click = Event(id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://s.example/")
        for lead_id in hot:
            await client.get_workflow_handle(workflow_id(lead_id)).signal("engagement", EngagementInput(events=[click]))
        s = Stack(client, sessions, queue, env, db_url, name, hot, cold)
        ours = f"CadenceName = '{name}' AND ExecutionStatus = 'Running'"
        await s.until(lambda: _equal(s.count(ours + " AND LeadScore >= 40"), 2), "the clicks show in visibility")
        await s.until(lambda: _equal(s.count(ours), 5), "five leads running")
        try:
            yield s
        finally:
            for lead_id in hot + cold:
                handle = client.get_workflow_handle(workflow_id(lead_id))
                if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                    await handle.terminate("test over")
    await engine.dispose()


async def _equal(value: Any, expected: Any) -> bool:
    return await value == expected


@pytest.mark.e2e
async def test_bulk_pause_pauses_exactly_the_segments_leads_once(stack: Stack) -> None:
    code, out, err = await stack.cli(
        "segment", "add", "hot", "--cadence", stack.cadence, "--min-score", "40", "--stage", "nurturing",
        "--description", "clicked software leads",
    )  # fmt: skip
    assert code == 0, err
    assert f"segment 'hot' saved: stage=nurturing; min_score=40; cadence={stack.cadence}" in out
    code, out, err = await stack.cli("segment", "count", "hot")
    assert code == 0 and "segment 'hot': 2 running lead(s)" in out, err
    code, out, _ = await stack.cli("segment", "list")
    assert "hot" in out and "clicked software leads" in out and "min_score=40" in out

    code, out, err = await stack.cli("bulk", "pause", "hot", "--dry-run")
    assert code == 0 and "dry run: pause would reach 2 running lead(s) of 'hot'" in out, err
    code, _, err = await stack.cli("bulk", "pause", "hot")  # not at a terminal, no --yes
    assert code == 1 and "pass --yes" in err
    assert set((await stack.stages()).values()) == {"nurturing"}  # neither changed anything

    code, out, err = await stack.cli("bulk", "pause", "hot", "--reason", "trade show week", "--yes")
    assert code == 0, err
    assert "pause over 'hot': 2 lead(s); 2 changed, 0 already so, 0 failed" in out
    await stack.until(
        lambda: _equal(
            stack.stages(), {**dict.fromkeys(stack.hot, "paused"), **dict.fromkeys(stack.cold, "nurturing")}
        ),
        "the segment's two leads paused, the other three not",
    )
    # a second run changes nothing more; the segment (stage nurturing) no longer matches the paused leads, so a
    # segment over the cadence alone shows it: every one of its leads is either paused already or changed now
    code, out, err = await stack.cli("bulk", "pause", "hot", "--yes")
    assert code == 0 and "2 changed" not in out, err
    await stack.cli("segment", "add", "hot-any-stage", "--cadence", stack.cadence, "--min-score", "40")
    code, out, err = await stack.cli("bulk", "pause", "hot-any-stage", "--yes")
    assert code == 0 and "pause over 'hot-any-stage': 2 lead(s); 0 changed, 2 already so, 0 failed" in out, err
    history = await stack.client.get_workflow_handle(workflow_id(stack.hot[0])).fetch_history()
    pauses = [e for e in history.events if e.workflow_execution_signaled_event_attributes.signal_name == "pause"]
    assert len(pauses) == 1  # signalled once, whatever the runs after

    code, out, err = await stack.cli("bulk", "resume", "hot-any-stage", "--yes")
    assert code == 0 and "2 changed, 0 already so" in out, err
    await stack.until(lambda: _equal(stack.stages(), dict.fromkeys(stack.all, "nurturing")), "the two leads resumed")


@pytest.mark.e2e
async def test_bulk_tag_then_stop_over_a_tag_segment(stack: Stack) -> None:
    ours = f"CadenceName = '{stack.cadence}' AND ExecutionStatus = 'Running'"
    code, _, err = await stack.cli("segment", "add", "ours", "--cadence", stack.cadence)
    assert code == 0, err
    code, out, err = await stack.cli("bulk", "tag", "ours", "--add", "VIP", "--add", "emea", "--yes", "--rate", "50")
    assert code == 0 and "tag over 'ours': 5 lead(s); 5 changed, 0 already so, 0 failed" in out, err
    assert all([await stack.db_tags(lead_id) == {"vip", "emea"} for lead_id in stack.all])
    await stack.until(lambda: _equal(stack.count(ours + " AND LeadTags = 'vip' AND LeadTags = 'emea'"), 5), "tagged")
    code, out, err = await stack.cli("bulk", "tag", "ours", "--add", "vip", "--add", "emea", "--yes")
    assert code == 0 and "5 lead(s); 0 changed, 5 already so, 0 failed" in out, err

    # the cold leads lose a tag; a segment over tags and category then finds them
    await stack.cli("segment", "add", "cold", "--cadence", stack.cadence, "--category", "no-prospect")
    code, out, err = await stack.cli("bulk", "tag", "cold", "--remove", "emea", "--yes")
    assert code == 0 and "3 lead(s); 3 changed" in out, err
    assert [await stack.db_tags(lead_id) for lead_id in stack.all] == [{"vip", "emea"}] * 2 + [{"vip"}] * 3
    code, _, err = await stack.cli("segment", "add", "vip-only", "--cadence", stack.cadence, "--tag", "vip",
                                   "--max-score", "10", "--engaged-before", "1d")  # fmt: skip
    assert code == 0, err
    code, _, err = await stack.cli("segment", "add", "emea", "--cadence", stack.cadence, "--any-tag", "emea",
                                   "--any-tag", "apac")  # fmt: skip
    assert code == 0, err
    await stack.until(lambda: _equal(stack.count(ours + " AND LeadTags = 'emea'"), 2), "emea removed from three")
    code, out, _ = await stack.cli("segment", "count", "vip-only")
    assert "3 running lead(s)" in out  # never engaged counts as engaged before a day ago
    code, out, _ = await stack.cli("segment", "count", "emea")
    assert "2 running lead(s)" in out
    code, out, err = await stack.cli("list", "--tag", "vip", "--category", "no-prospect", "--cadence", stack.cadence)
    assert code == 0 and "3 lead(s)" in out and "no-prospect" in out, err
    code, out, err = await stack.cli("status", str(stack.cold[0]))
    assert code == 0 and "category: no-prospect" in out and "tags: vip" in out, err
    # over every running lead of the namespace (other tests' too): at least these three
    counted = re.search(r"running leads by category: likely-buyer (\d+), educable (\d+), no-prospect (\d+)", out)
    assert counted is not None and int(counted[3]) >= 3, out

    code, _, err = await stack.cli("bulk", "stop", "vip-only", "--yes")
    assert code == 1 and "stop needs a reason" in err
    code, out, err = await stack.cli(
        "bulk", "stop", "vip-only", "--reason", "bought elsewhere", "--actor", "ops", "--yes"
    )
    assert code == 0 and "stop over 'vip-only': 3 lead(s); 3 changed, 0 already so, 0 failed" in out, err
    for lead_id in stack.cold:
        result = await stack.client.get_workflow_handle_for(LeadNurtureWorkflow.run, workflow_id(lead_id)).result()
        assert result.stage == "archived"
    assert {(await stack.state(lead_id)).stage for lead_id in stack.hot} == {"nurturing"}  # untouched
    await stack.until(lambda: _equal(stack.count(ours), 2), "three ended")
    # again: the ended leads are counted as stopped already (their last attributes still match)
    ended = f"CadenceName = '{stack.cadence}' AND ExecutionStatus = 'Completed'"
    await stack.until(lambda: _equal(stack.count(ended), 3), "the ended runs show in visibility")
    code, out, err = await stack.cli("bulk", "stop", "vip-only", "--reason", "again", "--yes")
    assert code == 0 and "3 lead(s); 0 changed, 3 already so, 0 failed" in out, err


@pytest.mark.e2e
async def test_bulk_move_moves_the_segments_leads_to_another_cadence_once(stack: Stack) -> None:
    code, _, err = await stack.cli("segment", "add", "cold", "--cadence", stack.cadence, "--max-score", "10")
    assert code == 0, err
    code, out, err = await stack.cli("bulk", "move", "cold", "--cadence", "nurture-later", "--actor", "ops", "--yes")
    assert code == 0 and "move over 'cold': 3 lead(s); 3 changed, 0 already so, 0 failed" in out, err

    async def cadences() -> dict[int, str]:
        return {lead_id: (await stack.state(lead_id)).cadence for lead_id in stack.all}

    want = {**dict.fromkeys(stack.hot, stack.cadence), **dict.fromkeys(stack.cold, "nurture-later")}
    await stack.until(lambda: _equal(cadences(), want), "the three moved, the two others not")
    # the segment (its cadence) no longer matches them; one over the new cadence finds them moved already
    await stack.cli("segment", "add", "moved", "--cadence", "nurture-later", "--max-score", "10")
    ours = "CadenceName = 'nurture-later' AND ExecutionStatus = 'Running' AND LeadTags IS NULL AND LeadScore <= 10"
    await stack.until(lambda: _moved(stack, ours), "the moved leads show under their new cadence")
    code, out, err = await stack.cli("bulk", "move", "moved", "--cadence", "nurture-later", "--yes")
    assert code == 0 and "0 changed" in out and "0 failed" in out, err


async def _moved(stack: Stack, query: str) -> bool:
    ids = {int(e.id.removeprefix("lead-")) async for e in stack.client.list_workflows(query)}
    return set(stack.cold) <= ids


@pytest.mark.e2e
async def test_a_lead_that_fails_is_named_with_why_and_the_others_go_on(stack: Stack) -> None:
    stranger = stack.cold[-1] + 1  # a workflow of a lead leadloop's database does not hold: its tags have no row
    lead = Lead(id=stranger, email="s@example.com", timezone="UTC", industry="retail")
    await start_lead(
        stack.client, lead, cadence(stack.cadence), task_queue=stack.queue, time_scale=1.0, source="t", scoring=SCORING
    )
    ours = f"CadenceName = '{stack.cadence}' AND ExecutionStatus = 'Running'"
    await stack.until(lambda: _equal(stack.count(ours), 6), "six leads running")
    await stack.cli("segment", "add", "ours", "--cadence", stack.cadence)
    code, out, err = await stack.cli("bulk", "tag", "ours", "--add", "webinar", "--yes")
    assert code == 0, err
    assert "tag over 'ours': 6 lead(s); 5 changed, 0 already so, 1 failed" in out
    assert f"failed (1): not in leadloop's database: lead {stranger}" in out
    assert all([await stack.db_tags(lead_id) == {"webinar"} for lead_id in stack.all])
    await stack.client.get_workflow_handle(workflow_id(stranger)).terminate("test over")


@pytest.mark.e2e
async def test_bad_segments_and_bad_actions_change_nothing(stack: Stack) -> None:
    refusals = {
        ("--stage", "sleeping"): "'sleeping' is not a stage",
        ("--min-score", "-5"): "min_score: Input should be greater than or equal to 0",
        ("--tag", "bad tag"): "tag 'bad tag' is not allowed",
        ("--category", "maybe"): "category: 'maybe' is not in scoring.yaml; one of: likely-buyer, educable",
        ("--engaged-after", "last week"): "neither a date (YYYY-MM-DD) nor a duration ago",
    }
    for args, says in refusals.items():
        code, _, err = await stack.cli("segment", "add", "bad", *args)
        assert code == 1 and says in err and "nothing was saved" in err, (args, err)
    code, _, err = await stack.cli("segment", "add", "Bad Name")
    assert code == 1 and "segment name 'Bad Name' is not allowed" in err
    async with stack.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Segment)) == 0

    await stack.cli("segment", "add", "ours", "--cadence", stack.cadence)
    code, _, err = await stack.cli("segment", "add", "ours", "--cadence", stack.cadence)
    assert code == 1 and "a segment named 'ours' exists" in err
    bad_actions = {
        ("bulk", "explode", "ours", "--yes"): "unknown action 'explode'; one of: pause, resume, stop, move, tag",
        ("bulk", "move", "ours", "--yes"): "move needs the cadence",
        ("bulk", "move", "ours", "--cadence", "nowhere", "--yes"): "no cadence named 'nowhere'",
        ("bulk", "tag", "ours", "--add", "no way", "--yes"): "tag 'no way' is not allowed",
        ("bulk", "tag", "ours", "--add", "x", "--remove", "x", "--yes"): "'x' is both added and removed",
        ("bulk", "pause", "ours", "--rate", "0", "--yes"): "rate must be above 0",
        ("bulk", "pause", "nobody", "--yes"): "no segment named 'nobody'",
        ("bulk", "enrol", "ours", "--yes"): "enrol needs the cadence",
        ("bulk", "enrol", "ours", "--cadence", "nowhere", "--yes"): "no cadence named 'nowhere'",
        ("segment", "count", "nobody"): "no segment named 'nobody'",
        ("segment", "remove", "nobody"): "no segment named 'nobody'",
    }
    for args, says in bad_actions.items():
        code, _, err = await stack.cli(*args)
        assert code == 1 and says in err, (args, err)
    assert set((await stack.stages()).values()) == {"nurturing"}
    assert all([await stack.db_tags(lead_id) == set() for lead_id in stack.all])
    code, out, err = await stack.cli("segment", "remove", "ours")
    assert code == 0 and "segment 'ours' removed" in out, err


@pytest.mark.e2e
async def test_the_api_saves_counts_and_acts_under_the_marketing_scope(stack: Stack, make_settings: Any) -> None:
    async with stack.sessions() as session:
        keys = {scope: (await create_key(session, f"crm-{scope}", [scope])).key for scope in ("marketing", "sales")}
        await session.commit()
    settings = make_settings(database_url=stack.db_url, demo=False, secret_key="s" * 40, api_keys=[])
    app = create_app(settings, sessionmaker=stack.sessions, client=stack.client)
    marketing, sales = {"X-API-Key": keys["marketing"]}, {"X-API-Key": keys["sales"]}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http,
    ):
        body = {"name": "hot", "filter": {"cadence": stack.cadence, "min_score": 40}, "description": "clicked"}
        refused = await http.post("/segments", json=body, headers=sales)
        assert refused.status_code == 403 and "lacks the 'marketing' scope" in refused.json()["detail"]
        unknown = await http.post("/segments", json={**body, "filter": {"colour": "red"}}, headers=marketing)
        assert unknown.status_code == 422
        assert "unknown field 'colour'; a segment filters on: stage, min_score" in unknown.json()["detail"][0]["msg"]
        bad = await http.post("/segments", json={**body, "filter": {"min_score": -3}}, headers=marketing)
        assert bad.status_code == 422 and "min_score" in bad.json()["detail"][0]["msg"]
        assert (await http.get("/segments", headers=marketing)).json() == []  # nothing stored

        made = await http.post("/segments", json=body, headers=marketing)
        assert made.status_code == 201, made.text
        assert made.json()["created_by"] == "crm-marketing" and made.json()["filter"]["min_score"] == 40
        assert (await http.post("/segments", json=body, headers=marketing)).status_code == 409
        count = await http.get("/segments/hot/count", headers=marketing)
        assert count.json() == {"name": "hot", "running": 2}
        assert (await http.get("/segments/nobody/count", headers=marketing)).status_code == 404

        action = {"action": "tag", "add": ["webinar"]}
        assert (await http.post("/segments/hot/actions", json=action, headers=sales)).status_code == 403
        dry = await http.post("/segments/hot/actions", json={**action, "dry_run": True}, headers=marketing)
        assert dry.json()["matched"] == 2 and dry.json()["changed"] == 0
        assert all([await stack.db_tags(lead_id) == set() for lead_id in stack.all])
        bad_move = await http.post("/segments/hot/actions", json={"action": "move"}, headers=marketing)
        assert bad_move.status_code == 422 and "move needs the cadence" in bad_move.json()["detail"][0]["msg"]
        enrol = {"action": "enrol", "cadence": "nowhere"}
        bad_enrol = await http.post("/segments/hot/actions", json=enrol, headers=marketing)
        assert bad_enrol.status_code == 422 and "no cadence named 'nowhere'" in bad_enrol.json()["detail"][0]["msg"]
        enrol = {"action": "enrol", "cadence": "nurture-later", "dry_run": True}
        assert (await http.post("/segments/hot/actions", json=enrol, headers=sales)).status_code == 403
        none_ended = await http.post("/segments/hot/actions", json=enrol, headers=marketing)
        assert none_ended.status_code == 200 and none_ended.json()["matched"] == 0  # its two leads still run
        done = await http.post("/segments/hot/actions", json=action, headers=marketing)
        assert done.status_code == 200, done.text
        assert (done.json()["matched"], done.json()["changed"], done.json()["already"]) == (2, 2, 0)
        assert [await stack.db_tags(lead_id) for lead_id in stack.all] == [{"webinar"}] * 2 + [set()] * 3
        again = await http.post("/segments/hot/actions", json=action, headers=marketing)
        assert (again.json()["changed"], again.json()["already"]) == (0, 2)


@pytest.mark.e2e
async def test_bulk_enrol_re_enrols_the_segments_ended_leads_once_and_keeps_suppressed_ones_out(stack: Stack) -> None:
    mark = f"t{uuid.uuid4().hex[:8]}"  # this test's own tag: a segment over it matches no other test's leads
    await stack.cli("segment", "add", "ours", "--cadence", stack.cadence)
    code, _, err = await stack.cli("bulk", "tag", "ours", "--add", mark, "--yes")
    assert code == 0, err
    await stack.until(lambda: _equal(stack.count(f"LeadTags = '{mark}' AND ExecutionStatus = 'Running'"), 5), "tagged")
    await stack.cli("segment", "add", "cold", "--cadence", stack.cadence, "--max-score", "10")
    code, out, err = await stack.cli("bulk", "stop", "cold", "--reason", "season over", "--yes")
    assert code == 0 and "3 changed" in out, err
    kept_out = stack.cold[2]
    async with stack.sessions() as session:
        session.add(Suppression(email_hash=email_hash(f"l{kept_out}@example.com"), reason="unsubscribe"))
        await session.commit()
    # over the tag alone: the cold leads' ended runs match, the hot leads' running ones are not ended
    code, _, err = await stack.cli("segment", "add", "gone", "--tag", mark)
    assert code == 0, err
    ended = f"LeadTags = '{mark}' AND ExecutionStatus = 'Completed'"
    await stack.until(lambda: _equal(stack.count(ended), 3), "the three ended runs show in visibility")

    async def statuses() -> dict[int, WorkflowExecutionStatus | None]:
        return {i: (await stack.client.get_workflow_handle(workflow_id(i)).describe()).status for i in stack.all}

    async def latest_runs() -> dict[int, str | None]:
        return {i: (await stack.client.get_workflow_handle(workflow_id(i)).describe()).run_id for i in stack.all}

    running, completed = WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED
    before = await latest_runs()
    code, out, err = await stack.cli("bulk", "enrol", "gone", "--cadence", "nurture-later", "--dry-run")
    assert code == 0 and "dry run: enrol would reach 3 ended lead(s) of 'gone'" in out, err
    assert await latest_runs() == before  # the dry run started nothing
    assert await statuses() == {**dict.fromkeys(stack.hot, running), **dict.fromkeys(stack.cold, completed)}

    code, out, err = await stack.cli("bulk", "enrol", "gone", "--cadence", "nurture-later", "--actor", "ops", "--yes")
    assert code == 0, err
    assert "enrol over 'gone': 3 lead(s); 2 changed, 0 already so, 1 failed" in out
    assert f"failed (1): is suppressed (unsubscribe); it stays out of nurture: lead {kept_out}" in out
    back = stack.cold[:2]
    assert await statuses() == {**dict.fromkeys([*stack.hot, *back], running), kept_out: completed}
    for lead_id in back:
        state = await stack.state(lead_id)
        assert (state.cadence, state.stage) == ("nurture-later", "nurturing")
    first = await latest_runs()
    assert [first[i] != before[i] for i in stack.all] == [False, False, True, True, False]  # a new run: the two

    # again: the two run already, the suppressed one is still kept out; nothing more starts
    code, out, err = await stack.cli("bulk", "enrol", "gone", "--cadence", "nurture-later", "--yes")
    assert code == 0 and "enrol over 'gone': 3 lead(s); 0 changed, 2 already so, 1 failed" in out, err
    assert await latest_runs() == first

    # ended again, the two have two ended runs each that match (the tag went on with them): still once each
    for lead_id in back:
        await LeadClient(stack.client, lead_id).stop(StopInput(actor="t", reason="no answer"))
    await stack.until(lambda: _equal(stack.count(ended), 5), "five ended runs of three leads")
    code, out, err = await stack.cli("bulk", "enrol", "gone", "--cadence", "nurture-later", "--dry-run")
    assert code == 0 and "dry run: enrol would reach 3 ended lead(s) of 'gone'" in out, err
    code, out, err = await stack.cli("bulk", "enrol", "gone", "--cadence", "nurture-later", "--yes")
    assert code == 0 and "enrol over 'gone': 3 lead(s); 2 changed, 0 already so, 1 failed" in out, err
    second = await latest_runs()
    assert [second[i] != first[i] for i in stack.all] == [False, False, True, True, False]
