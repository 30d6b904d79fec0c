"""`leadloop find|owner|goal|stop|reenrol|move|tag` as an operator runs them, against the real dev server, a real
worker and the database: what each prints, the actor it records, and each refusal (exit 1, one error line, nothing
changed)."""

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.mail import email_hash
from leadloop.domain.models import LeadState
from leadloop.domain.routing import Roster
from leadloop.infra.db import Goal, Lead, Suppression, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.roster import import_roster
from tests.conftest import client_address, with_pydantic
from tests.starter.test_cli import leadloop
from tests.starter.test_lifecycle_api import ROSTER


@dataclass
class Cli:
    client: Client
    sessionmaker: Any
    settings: Any
    env: dict[str, str]
    started: list[int] = field(default_factory=list)

    async def run(self, *args: str) -> Any:
        """The command in its own process (the worker in this one goes on meanwhile)."""
        return await asyncio.to_thread(leadloop, *args, env=self.env)

    async def lead(self, **fields: Any) -> int:
        lead_id = random.randrange(10**8, 10**9)
        async with self.sessionmaker() as session:
            lead = Lead(id=lead_id, email=f"cli{lead_id}@example.com", attributes={}, **fields)
            session.add(lead)
            await session.commit()
        cadence = load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml")
        await start_lead(self.client, lead, cadence, task_queue=self.settings.task_queue, time_scale=1.0, source="t")
        self.started.append(lead_id)
        return lead_id

    async def state(self, lead_id: int) -> LeadState:
        return await self.client.get_workflow_handle(workflow_id(lead_id)).query("state", result_type=LeadState)


@pytest.fixture
async def cli(make_settings, smtp, dev_env, tmp_path) -> AsyncIterator[Cli]:
    """SQLite only: the commands' database side is the services', tested on both databases in test_lifecycle_api."""
    settings = make_settings(smtp_host=smtp.host, smtp_port=smtp.port)
    database_url = settings.database_url
    await upgrade_database(database_url)
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate(ROSTER))
        await session.commit()
    client = with_pydantic(dev_env.client)
    env = {
        "LEADLOOP_DATABASE_URL": database_url,
        "LEADLOOP_TEMPORAL_ADDRESS": client_address(client),
        "LEADLOOP_TASK_QUEUE": settings.task_queue,
        "LEADLOOP_STATE_DIR": str(tmp_path / "state"),
    }
    async with worker_module.build_worker(client, settings):
        made = Cli(client, sessionmaker, settings, env)
        try:
            yield made
        finally:
            for lead_id in made.started:
                with contextlib.suppress(RPCError):
                    await client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")
            await engine.dispose()


async def test_find_prints_the_lead_and_json_on_request(cli: Cli) -> None:
    lead = await cli.lead(external_id="HS-77")
    tagged = await cli.run("tag", str(lead), "--add", "VIP", "--add", "fair-2026", "--actor", "ops")
    assert tagged.returncode == 0 and f"lead {lead}: tags fair-2026, vip; its workflow was told" in tagged.stdout
    shown = await cli.run("find", "--external-id", "HS-77")
    assert shown.returncode == 0, shown.stderr
    assert f"lead         {lead}" in shown.stdout and "tags         fair-2026, vip" in shown.stdout
    as_json = json.loads((await cli.run("find", "--email", f"CLI{lead}@example.com", "--json")).stdout)
    assert as_json["lead_id"] == lead and as_json["stage"] == "nurturing" and as_json["external_id"] == "HS-77"
    missing = await cli.run("find", "--email", "nobody@example.com")
    assert missing.returncode == 1 and "error: no lead has the address nobody@example.com" in missing.stderr
    both = await cli.run("find", "--email", "a@example.com", "--external-id", "x")
    assert both.returncode == 2 and "one of them" in both.stderr
    bad = await cli.run("tag", str(lead), "--add", "no spaces")
    assert bad.returncode == 1 and "'no spaces' is not allowed" in bad.stderr
    assert (await cli.state(lead)).tags == ["fair-2026", "vip"]


async def test_owner_goal_stop_reenrol_and_move_from_the_command_line(cli: Cli) -> None:
    lead = await cli.lead()
    ghost = await cli.run("owner", str(lead), "ghost@sales.example")
    assert ghost.returncode == 1 and "not a rep on the roster" in ghost.stderr
    owner = await cli.run("owner", str(lead), "anna@sales.example", "--actor", "ops")
    assert owner.returncode == 0 and (await cli.state(lead)).owner == "anna@sales.example", owner.stderr
    unknown = await cli.run("move", str(lead), "--cadence", "nope")
    assert unknown.returncode == 1 and "unknown cadence 'nope'" in unknown.stderr
    moved = await cli.run("move", str(lead), "--cadence", "reengage")
    assert moved.returncode == 0 and "moves to 'reengage'" in moved.stdout, moved.stderr
    running = await cli.run("reenrol", str(lead), "--cadence", "welcome")
    assert running.returncode == 1 and "still running" in running.stderr and "use move" in running.stderr
    no_reason = await cli.run("stop", str(lead), "--reason", " ")
    assert no_reason.returncode == 1 and "give a reason" in no_reason.stderr
    stopped = await cli.run("stop", str(lead), "--reason", "the account team took over", "--actor", "ops")
    assert stopped.returncode == 0 and "stopped by ops" in stopped.stdout, stopped.stderr
    await asyncio.wait_for(cli.client.get_workflow_handle(workflow_id(lead)).result(), 30)
    again = await cli.run("reenrol", str(lead), "--cadence", "welcome", "--actor", "ops")
    assert again.returncode == 0 and "re-enrolled on cadence 'welcome' (workflow started)" in again.stdout
    described = await cli.client.get_workflow_handle(workflow_id(lead)).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    wrong_kind = await cli.run("goal", str(lead), "won")
    assert wrong_kind.returncode == 1 and "unknown goal 'won'" in wrong_kind.stderr
    goal = await cli.run(
        "goal", str(lead), "meeting_booked", "--source", "phone", "--reference", "M-1", "--actor", "ops"
    )
    assert goal.returncode == 0 and "goal 'meeting_booked' reached" in goal.stdout, goal.stderr
    twice = await cli.run("goal", str(lead), "meeting_booked", "--source", "phone", "--reference", "M-1")
    assert twice.returncode == 0 and "(nothing more to do)" in twice.stdout
    async with cli.sessionmaker() as session:
        goals = (await session.execute(select(Goal.kind, Goal.actor).where(Goal.lead_id == lead))).all()
    assert goals == [("meeting_booked", "ops")]
    gone = await cli.run("stop", "999", "--reason", "x")
    assert gone.returncode == 1 and "error: no lead 999" in gone.stderr


async def test_a_suppressed_lead_gets_no_goal_and_is_never_re_enrolled(cli: Cli) -> None:
    lead = await cli.lead()
    async with cli.sessionmaker() as session:
        session.add(Suppression(email_hash=email_hash(f"cli{lead}@example.com"), reason="complaint"))
        await session.commit()
    goal = await cli.run("goal", str(lead), "converted")
    assert goal.returncode == 1 and f"lead {lead} is suppressed (complaint); it records no goal" in goal.stderr
    await cli.run("stop", str(lead), "--reason", "complained")
    await asyncio.wait_for(cli.client.get_workflow_handle(workflow_id(lead)).result(), 30)
    again = await cli.run("reenrol", str(lead), "--cadence", "welcome")
    assert again.returncode == 1 and "suppressed (complaint); it stays out of nurture" in again.stderr
    described = await cli.client.get_workflow_handle(workflow_id(lead)).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED


async def test_with_temporal_unreachable_find_answers_from_the_database_and_a_change_is_refused(tmp_path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(database_url)
    engine = make_engine(database_url)
    async with make_sessionmaker(engine)() as session:
        session.add(Lead(id=7, email="kim@example.com", external_id="HS-7", owner=None, attributes={}))
        await session.commit()
    await engine.dispose()
    env = {"LEADLOOP_DATABASE_URL": database_url, "LEADLOOP_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    found = await asyncio.to_thread(leadloop, "find", "--external-id", "HS-7", "--json", env=env)
    assert (
        found.returncode == 0 and json.loads(found.stdout)["lead_id"] == 7 and json.loads(found.stdout)["stage"] is None
    )
    assert "cannot reach Temporal at 127.0.0.1:1" in found.stderr and "the database's facts only" in found.stderr
    owner = await asyncio.to_thread(leadloop, "owner", "7", "--none", env=env)
    assert owner.returncode == 1 and "cannot reach Temporal" in owner.stderr and "nothing was changed" in owner.stderr


async def test_enroll_reports_an_external_id_another_lead_holds_as_its_rows_error(cli: Cli, tmp_path) -> None:
    from tests.leadloop.services.test_intake_crm_fields import fresh_ids

    first = await fresh_ids(cli.sessionmaker)
    held = await cli.lead(external_id="HS-9")
    csv = tmp_path / "leads.csv"
    csv.write_text("email,external_id,tags\nnew@example.com,HS-10,vip|fair-2026\nclash@example.com,HS-9,\n")
    done = await cli.run("enroll", str(csv), "--cadence", "welcome")
    async with cli.sessionmaker() as session:
        made = dict((await session.execute(select(Lead.email, Lead.id).where(Lead.id > first, Lead.id != held))).all())
    cli.started += list(made.values())
    assert done.returncode == 1
    assert f"row 3: external_id: HS-9 is already lead {held}'s; this lead was not stored" in done.stderr
    assert "external id another lead's, not stored" in done.stdout and list(made) == ["new@example.com"]
    tags = await cli.run("tag", str(made["new@example.com"]))
    assert f"lead {made['new@example.com']}: tags fair-2026, vip" in tags.stdout


async def test_a_reason_or_reference_over_its_limit_is_refused_by_name(cli: Cli) -> None:
    lead = await cli.lead()
    long_reason = await cli.run("stop", str(lead), "--reason", "x" * 501)
    assert (
        long_reason.returncode == 1 and "error: reason: String should have at most 500 characters" in long_reason.stderr
    )
    long_ref = await cli.run("goal", str(lead), "converted", "--reference", "r" * 201)
    assert long_ref.returncode == 1 and "reference: String should have at most 200 characters" in long_ref.stderr
    bad_actor = await cli.run("owner", str(lead), "--none", "--actor", "<script>")
    assert bad_actor.returncode == 1 and "actor '<script>' is not a name" in bad_actor.stderr
    assert (await cli.state(lead)).stage == "nurturing"
