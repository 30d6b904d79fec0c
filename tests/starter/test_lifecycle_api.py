"""The lifecycle API for CRMs on both databases, the real dev server and a real worker: find, owner, goals, stop,
re-enrol, move and tags, each under its scope, the key's name recorded as the actor; every bad input a clear 4xx
that changes nothing."""

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client, Interceptor, OutboundInterceptor, WorkflowExecutionStatus
from temporalio.service import RPCError

import worker as worker_module
from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.mail import email_hash
from leadloop.domain.models import LeadState
from leadloop.domain.routing import Roster
from leadloop.infra.db import Goal, Lead, LeadTag, Suppression, WebhookDelivery
from leadloop.services.api_keys import create_key
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.lead_changes import set_owner
from leadloop.services.outbound_webhooks import add_endpoint
from leadloop.services.roster import import_roster
from starter.api import create_app
from tests.conftest import with_pydantic

ADMIN = "lifecycle-admin-key"
SCOPES = ("intake", "sales", "marketing")
ROSTER = {"teams": [{"name": "south", "reps": [{"email": "anna@sales.example", "name": "Anna"}]}]}


@dataclass
class Api:
    http: httpx.AsyncClient
    client: Client
    sessionmaker: Any
    settings: Any
    keys: dict[str, dict[str, str]]
    started: list[int] = field(default_factory=list)

    async def lead(self, *, start: bool = True, **fields: Any) -> int:
        """A lead (with an id no other test's workflow has on the shared dev server), its workflow started."""
        lead_id = random.randrange(10**8, 10**9)
        async with self.sessionmaker() as session:
            lead = Lead(id=lead_id, email=f"lead{lead_id}@example.com", first_name="Μαρία", attributes={}, **fields)
            session.add(lead)
            await session.commit()
        if start:
            cadence = load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml")
            await start_lead(
                self.client, lead, cadence, task_queue=self.settings.task_queue, time_scale=1.0, source="test"
            )
            self.started.append(lead_id)
        return lead_id

    async def state(self, lead_id: int) -> LeadState:
        handle = self.client.get_workflow_handle(workflow_id(lead_id))
        return await handle.query("state", result_type=LeadState)

    async def ends(self, lead_id: int) -> None:
        """The lead's run has ended (a goal or a stop answers before its run closes)."""
        await asyncio.wait_for(self.client.get_workflow_handle(workflow_id(lead_id)).result(), 30)

    async def status(self, lead_id: int) -> WorkflowExecutionStatus | None:
        return (await self.client.get_workflow_handle(workflow_id(lead_id)).describe()).status

    async def count(self, model: Any) -> int:
        async with self.sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def api(make_settings, database_url, sessionmaker, smtp, dev_env) -> AsyncIterator[Api]:
    settings = make_settings(
        database_url=database_url, smtp_host=smtp.host, smtp_port=smtp.port, api_keys=[ADMIN], relay_interval=3600
    )
    keys = {}
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate(ROSTER))
        for scope in SCOPES:
            keys[scope] = {"x-api-key": (await create_key(session, f"crm-{scope}", [scope])).key}
        await session.commit()
    client = with_pydantic(dev_env.client)
    app = create_app(settings, sessionmaker=sessionmaker, client=client)
    async with worker_module.build_worker(client, settings), app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            api = Api(http, client, sessionmaker, settings, keys)
            try:
                yield api
            finally:
                for lead_id in api.started:
                    with contextlib.suppress(RPCError):
                        await client.get_workflow_handle(workflow_id(lead_id)).terminate("test over")


async def until(check: Any, what: str) -> Any:
    for _ in range(200):
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_find_by_address_or_external_id_answers_the_lead_and_its_stage(api: Api) -> None:
    lead = await api.lead(external_id="HS-1001")
    await api.http.put(f"/leads/{lead}/tags", json={"tags": ["Fair-2026", "vip"]}, headers=api.keys["marketing"])
    by_email = await api.http.get("/leads", params={"email": f"LEAD{lead}@Example.com"}, headers=api.keys["sales"])
    assert by_email.status_code == 200, by_email.text
    found = by_email.json()
    assert found["lead_id"] == lead and found["external_id"] == "HS-1001" and found["cadence"] == "welcome"
    assert found["tags"] == ["fair-2026", "vip"] and found["stage"] == "nurturing" and found["score"] is not None
    by_id = await api.http.get("/leads", params={"external_id": "HS-1001"}, headers=api.keys["intake"])
    assert by_id.status_code == 200 and by_id.json()["lead_id"] == lead
    missing = await api.http.get("/leads", params={"external_id": "HS-404"}, headers=api.keys["sales"])
    assert missing.status_code == 404 and missing.json()["detail"] == "no lead has the external id HS-404"
    neither = await api.http.get("/leads", headers=api.keys["sales"])
    assert neither.status_code == 422 and "one of them" in neither.text
    refused = await api.http.get("/leads", params={"email": f"lead{lead}@example.com"}, headers=api.keys["marketing"])
    assert refused.status_code == 403
    assert refused.json()["detail"] == "the key 'crm-marketing' lacks the 'intake' or 'sales' scope; nothing changed"


async def test_a_goal_ends_nurture_once_and_a_second_one_with_its_reference_changes_nothing(api: Api) -> None:
    lead = await api.lead()
    body = {"kind": "converted", "source": "hubspot", "reference": "DEAL-7"}
    not_sales = await api.http.post(f"/leads/{lead}/goals", json=body, headers=api.keys["marketing"])
    assert not_sales.status_code == 403 and await api.count(Goal) == 0
    done = await api.http.post(f"/leads/{lead}/goals", json=body, headers=api.keys["sales"])
    assert done.status_code == 200, done.text
    assert done.json()["stage"] == "converted" and done.json()["applied"] is True
    await api.ends(lead)
    async with api.sessionmaker() as session:
        [goal] = (await session.execute(select(Goal).where(Goal.lead_id == lead))).scalars()
    assert (goal.kind, goal.source, goal.reference, goal.actor) == ("converted", "hubspot", "DEAL-7", "crm-sales")
    again = await api.http.post(f"/leads/{lead}/goals", json=body, headers=api.keys["sales"])
    assert again.status_code == 200 and again.json()["applied"] is False and await api.count(Goal) == 1
    other = await api.http.post(
        f"/leads/{lead}/goals", json={"kind": "meeting_booked", "reference": "MTG-1"}, headers=api.keys["sales"]
    )
    assert other.status_code == 409 and other.json()["detail"] == f"lead {lead} is converted: nurture has ended"
    unknown = await api.http.post("/leads/999/goals", json=body, headers=api.keys["sales"])
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no lead 999"
    bad_kind = await api.http.post(f"/leads/{lead}/goals", json={"kind": "won"}, headers=api.keys["sales"])
    assert bad_kind.status_code == 422


async def test_the_same_goal_sent_twice_at_once_is_applied_once_and_the_other_answer_says_so(api: Api) -> None:
    lead = await api.lead()
    body = {"kind": "converted", "source": "hubspot", "reference": "DEAL-9"}
    answers = await asyncio.gather(
        *(api.http.post(f"/leads/{lead}/goals", json=body, headers=api.keys["sales"]) for _ in range(2))
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert sorted(r.json()["applied"] for r in answers) == [False, True]
    await api.ends(lead)
    assert await api.count(Goal) == 1


async def test_a_goal_for_a_suppressed_lead_is_refused_and_its_nurture_goes_on(api: Api) -> None:
    lead = await api.lead()
    async with api.sessionmaker() as session:
        session.add(Suppression(email_hash=email_hash(f"lead{lead}@example.com"), reason="unsubscribed"))
        await session.commit()
    refused = await api.http.post(f"/leads/{lead}/goals", json={"kind": "converted"}, headers=api.keys["sales"])
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"lead {lead} is suppressed (unsubscribed); it records no goal"
    assert await api.count(Goal) == 0 and await api.status(lead) == WorkflowExecutionStatus.RUNNING


async def test_a_stopped_lead_is_re_enrolled_as_a_new_run_on_its_new_cadence(api: Api) -> None:
    lead = await api.lead()
    first_run = (await api.client.get_workflow_handle(workflow_id(lead)).describe()).run_id
    running = await api.http.post(
        f"/leads/{lead}/enrolments", json={"cadence": "reengage"}, headers=api.keys["marketing"]
    )
    assert running.status_code == 409 and "still running" in running.json()["detail"] and "use move" in running.text
    no_reason = await api.http.post(f"/leads/{lead}/stop", json={"reason": ""}, headers=api.keys["sales"])
    assert no_reason.status_code == 422 and await api.status(lead) == WorkflowExecutionStatus.RUNNING
    stopped = await api.http.post(
        f"/leads/{lead}/stop", json={"reason": "asked the account team"}, headers=api.keys["sales"]
    )
    assert stopped.status_code == 200 and stopped.json()["stage"] == "archived", stopped.text
    assert "crm-sales" in stopped.json()["outcome"]
    await api.ends(lead)
    unknown = await api.http.post(f"/leads/{lead}/enrolments", json={"cadence": "nope"}, headers=api.keys["marketing"])
    assert unknown.status_code == 422 and "unknown cadence 'nope'" in unknown.text
    path = await api.http.post(f"/leads/{lead}/enrolments", json={"cadence": "../x"}, headers=api.keys["marketing"])
    assert path.status_code == 422
    sales = await api.http.post(f"/leads/{lead}/enrolments", json={"cadence": "reengage"}, headers=api.keys["sales"])
    assert sales.status_code == 403  # reps act on leads; they never run campaigns
    assert await api.status(lead) == WorkflowExecutionStatus.COMPLETED  # none of those started anything
    again = await api.http.post(
        f"/leads/{lead}/enrolments", json={"cadence": "reengage"}, headers=api.keys["marketing"]
    )
    assert again.status_code == 201 and again.json()["workflow"] == "started", again.text
    described = await api.client.get_workflow_handle(workflow_id(lead)).describe()
    assert described.status == WorkflowExecutionStatus.RUNNING and described.run_id != first_run
    assert (await api.state(lead)).cadence == "reengage"
    stopped_again = await api.http.post(f"/leads/{lead}/stop", json={"reason": "x"}, headers=api.keys["sales"])
    assert stopped_again.status_code == 200


async def test_a_suppressed_or_erased_lead_is_never_re_enrolled(api: Api) -> None:
    erased = await api.lead(start=False)
    async with api.sessionmaker() as session:
        (await session.get(Lead, erased)).erased_at = func.now()
        await session.commit()
    refused = await api.http.post(
        f"/leads/{erased}/enrolments", json={"cadence": "welcome"}, headers=api.keys["marketing"]
    )
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]
    with pytest.raises(RPCError):  # nothing started
        await api.client.get_workflow_handle(workflow_id(erased)).describe()


async def test_a_move_goes_to_the_new_cadence_and_an_unknown_one_changes_nothing(api: Api) -> None:
    lead = await api.lead()
    unknown = await api.http.post(f"/leads/{lead}/move", json={"cadence": "nope"}, headers=api.keys["marketing"])
    assert unknown.status_code == 422 and (await api.state(lead)).cadence == "welcome"
    moved = await api.http.post(f"/leads/{lead}/move", json={"cadence": "reengage"}, headers=api.keys["marketing"])
    assert moved.status_code == 200 and "reengage" in moved.json()["outcome"], moved.text

    async def on_new() -> bool:
        return (await api.state(lead)).cadence == "reengage"

    await until(on_new, "the lead moved to reengage")
    async with api.sessionmaker() as session:
        assert (await session.get(Lead, lead)).cadence == "reengage"
    nowhere = await api.http.post("/leads/999/move", json={"cadence": "reengage"}, headers=api.keys["marketing"])
    assert nowhere.status_code == 404


async def test_the_owner_must_be_a_rep_and_the_running_workflow_learns_it(api: Api) -> None:
    lead = await api.lead()
    ghost = await api.http.put(f"/leads/{lead}/owner", json={"owner": "ghost@sales.example"}, headers=api.keys["sales"])
    assert ghost.status_code == 422 and "not a rep on the roster" in ghost.text
    set_ = await api.http.put(f"/leads/{lead}/owner", json={"owner": "Anna@Sales.example"}, headers=api.keys["sales"])
    assert set_.status_code == 200 and set_.json()["applied"] is True, set_.text
    assert (await api.state(lead)).owner == "anna@sales.example"
    async with api.sessionmaker() as session:
        assert (await session.get(Lead, lead)).owner == "anna@sales.example"
    cleared = await api.http.put(f"/leads/{lead}/owner", json={"owner": None}, headers=api.keys["sales"])
    assert cleared.status_code == 200 and (await api.state(lead)).owner is None
    intake = await api.http.put(f"/leads/{lead}/owner", json={"owner": None}, headers=api.keys["intake"])
    assert intake.status_code == 403


class OwnerAtUpdate(Interceptor):
    """Reads the lead's owner from the database at the moment the client sends a workflow update."""

    def __init__(self, sessionmaker: Any, lead_id: int) -> None:
        self.sessionmaker, self.lead_id, self.seen = sessionmaker, lead_id, []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        outer = self

        class Outbound(OutboundInterceptor):
            async def start_workflow_update(self, input: Any) -> Any:
                async with outer.sessionmaker() as session:
                    outer.seen.append((await session.get(Lead, outer.lead_id)).owner)
                return await super().start_workflow_update(input)

        return Outbound(next)


class EndsBeforeUpdate(Interceptor):
    """Ends the lead's workflow just before the client's update reaches it."""

    def __init__(self, client: Client, lead_id: int) -> None:
        self.client, self.lead_id, self.ended = client, lead_id, False

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        outer = self

        class Outbound(OutboundInterceptor):
            async def start_workflow_update(self, input: Any) -> Any:
                await outer.client.get_workflow_handle(workflow_id(outer.lead_id)).terminate("ended meanwhile")
                outer.ended = True
                return await super().start_workflow_update(input)

        return Outbound(next)


async def test_the_owner_is_in_the_database_before_the_workflow_hears_of_it_and_its_webhook_names_them(
    api: Api,
) -> None:
    lead = await api.lead()
    async with api.sessionmaker() as session:
        await add_endpoint(session, "crm", "https://crm.example/hooks", ["lead.owner_changed"])
    watch = OwnerAtUpdate(api.sessionmaker, lead)
    client = Client(**{**api.client.config(), "interceptors": [watch]})
    result = await set_owner(api.sessionmaker, client, lead, "anna@sales.example", "crm-sales")
    assert result.applied and (await api.state(lead)).owner == "anna@sales.example"
    # the next cycle, and the webhook's fan-out, read the owner from the database: it was there first
    assert watch.seen == ["anna@sales.example"]

    async def delivered_body() -> str | None:
        async with api.sessionmaker() as session:
            return await session.scalar(select(WebhookDelivery.body).where(WebhookDelivery.lead_id == lead))

    body = json.loads(await until(delivered_body, "the owner_changed webhook is fanned out"))
    assert body["type"] == "lead.owner_changed" and body["data"]["owner"] == "anna@sales.example"


async def test_an_owner_change_the_workflow_refuses_is_undone_and_one_for_an_ended_lead_stands(api: Api) -> None:
    leaving = await api.lead()
    done = await api.http.post(f"/leads/{leaving}/goals", json={"kind": "converted"}, headers=api.keys["sales"])
    assert done.status_code == 200
    await api.ends(leaving)
    # ended: the database's owner is the lead's owner, for its next enrolment
    ended = await api.http.put(
        f"/leads/{leaving}/owner", json={"owner": "anna@sales.example"}, headers=api.keys["sales"]
    )
    assert ended.status_code == 200 and "next enrolment" in ended.json()["outcome"], ended.text
    async with api.sessionmaker() as session:
        assert (await session.get(Lead, leaving)).owner == "anna@sales.example"
    # ended between the look and the update: the owner stands too
    lead = await api.lead()
    ending = EndsBeforeUpdate(api.client, lead)
    client = Client(**{**api.client.config(), "interceptors": [ending]})
    late = await set_owner(api.sessionmaker, client, lead, "anna@sales.example", "crm-sales")
    assert "next enrolment" in late.outcome and ending.ended
    async with api.sessionmaker() as session:
        assert (await session.get(Lead, lead)).owner == "anna@sales.example"


async def test_tags_are_kept_in_the_database_and_told_to_the_workflow(api: Api) -> None:
    lead = await api.lead()
    put = await api.http.put(
        f"/leads/{lead}/tags", json={"tags": ["VIP", "fair-2026", "vip"]}, headers=api.keys["intake"]
    )
    assert put.status_code == 200 and put.json()["tags"] == ["fair-2026", "vip"] and put.json()["workflow_told"]
    changed = await api.http.post(
        f"/leads/{lead}/tags", json={"add": ["partner"], "remove": ["vip"]}, headers=api.keys["marketing"]
    )
    assert changed.json()["tags"] == ["fair-2026", "partner"] and changed.json()["changed"] is True

    async def told() -> bool:
        return (await api.state(lead)).tags == ["fair-2026", "partner"]

    await until(told, "the workflow has the tags")
    bad = await api.http.post(f"/leads/{lead}/tags", json={"add": ["ok", "no spaces"]}, headers=api.keys["marketing"])
    assert bad.status_code == 422 and "'no spaces' is not allowed" in bad.text
    too_many = await api.http.put(
        f"/leads/{lead}/tags", json={"tags": [f"t{i}" for i in range(21)]}, headers=api.keys["intake"]
    )
    assert too_many.status_code == 422 and "at most 20 tags" in too_many.text
    sales = await api.http.put(f"/leads/{lead}/tags", json={"tags": []}, headers=api.keys["sales"])
    assert sales.status_code == 403
    got = await api.http.get(f"/leads/{lead}/tags", headers=api.keys["intake"])
    assert got.json()["tags"] == ["fair-2026", "partner"]  # none of the refused ones changed anything
    async with api.sessionmaker() as session:
        rows = (await session.execute(select(LeadTag.tag).where(LeadTag.lead_id == lead))).scalars().all()
    assert sorted(rows) == ["fair-2026", "partner"]
    assert (await api.http.get("/leads/999/tags", headers=api.keys["intake"])).status_code == 404


async def test_tag_additions_at_once_all_land_and_the_workflow_hears_them_all(api: Api) -> None:
    lead = await api.lead()
    key = api.keys["marketing"]
    mine = ["a", "b", "c", "d", "e", "f"]
    answers = await asyncio.gather(
        *(api.http.post(f"/leads/{lead}/tags", json={"add": [tag, "shared"]}, headers=key) for tag in mine)
    )
    assert [r.status_code for r in answers] == [200] * len(mine), [r.text for r in answers]
    every = [*mine, "shared"]
    # the one that came last read everyone else's tags: its answer holds them all
    assert every in [r.json()["tags"] for r in answers]
    got = await api.http.get(f"/leads/{lead}/tags", headers=api.keys["intake"])
    assert got.json()["tags"] == every

    async def told() -> bool:
        return (await api.state(lead)).tags == every

    await until(told, "the workflow has every tag")


async def test_intake_takes_the_crms_id_and_tags_and_refuses_another_leads_id(api: Api) -> None:
    from tests.leadloop.services.test_intake_crm_fields import fresh_ids

    await fresh_ids(api.sessionmaker)
    held = await api.lead(start=False, external_id="SF-1")
    body = {"email": "ana@example.es", "external_id": "SF-2", "tags": ["vip", "Fair-2026"]}
    made = await api.http.post("/leads", json=body, headers=api.keys["intake"])
    assert made.status_code == 201, made.text
    lead = made.json()["lead_id"]
    api.started.append(lead)
    tags = await api.http.get(f"/leads/{lead}/tags", headers=api.keys["intake"])
    assert tags.json()["tags"] == ["fair-2026", "vip"]
    clash = await api.http.post(
        "/leads", json={"email": "bo@example.es", "external_id": "SF-1"}, headers=api.keys["intake"]
    )
    assert (
        clash.status_code == 409
        and clash.json()["detail"] == f"external_id: SF-1 is already lead {held}'s; this lead was not stored"
    )
    bad_tag = await api.http.post(
        "/leads", json={"email": "cy@example.es", "tags": ["no spaces"]}, headers=api.keys["intake"]
    )
    assert bad_tag.status_code == 422
    async with api.sessionmaker() as session:
        emails = set((await session.execute(select(Lead.email))).scalars())
    assert "bo@example.es" not in emails and "cy@example.es" not in emails
    patch = await api.http.patch(f"/leads/{lead}", json={"external_id": "SF-1"}, headers=api.keys["intake"])
    assert patch.status_code == 409 and "SF-1 is already lead" in patch.json()["detail"]
    fixed = await api.http.patch(f"/leads/{lead}", json={"external_id": "SF-3"}, headers=api.keys["intake"])
    assert fixed.status_code == 200 and fixed.json()["changed"] == ["external_id"]
    found = await api.http.get("/leads", params={"external_id": "SF-3"}, headers=api.keys["sales"])
    assert found.json()["lead_id"] == lead and found.json()["tags"] == ["fair-2026", "vip"]


async def test_with_temporal_unreachable_a_change_is_503_while_tags_and_find_answer_from_the_database(
    make_settings, database_url, sessionmaker
) -> None:
    settings = make_settings(database_url=database_url, api_keys=[ADMIN], temporal_address="127.0.0.1:1")
    async with sessionmaker() as session:
        session.add(Lead(id=5, email="kim@example.com", attributes={}))
        await session.commit()
    app = create_app(settings, sessionmaker=sessionmaker)
    key = {"x-api-key": ADMIN}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            owner = await http.put("/leads/5/owner", json={"owner": None}, headers=key)
            assert owner.status_code == 503
            assert owner.json()["detail"] == "Temporal is unreachable; nothing changed, retry"
            goal = await http.post("/leads/5/goals", json={"kind": "converted"}, headers=key)
            assert goal.status_code == 503
            tags = await http.put("/leads/5/tags", json={"tags": ["vip"]}, headers=key)  # the database is the truth
            assert tags.status_code == 200 and tags.json()["workflow_told"] is False
            found = await http.get("/leads", params={"email": "kim@example.com"}, headers=key)
    assert found.status_code == 200 and found.json()["lead_id"] == 5 and found.json()["stage"] is None
    assert found.json()["tags"] == ["vip"]
