"""`forget` on SQLite and PostgreSQL with the real dev server: any address the lead had, its hand-over, the files."""

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.assignment import AssignmentActivities
from leadloop.domain.mail import email_hash
from leadloop.domain.models import AssignLeadInput
from leadloop.domain.routing import Roster
from leadloop.domain.scoring import LeadProfile
from leadloop.infra.db import (
    Assignment,
    EngagementEvent,
    FormerAddress,
    Lead,
    Outbox,
    Rep,
    Suppression,
    make_engine,
    make_sessionmaker,
)
from leadloop.infra.migrate import upgrade_database
from leadloop.services.erasure import ErasureError, forget
from leadloop.services.leads import AddressSuppressed, apply_update
from leadloop.services.roster import import_roster, list_reps
from tests.conftest import with_pydantic


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    return with_pydantic(dev_env.client)


def fresh_id() -> int:
    """A lead id no other test's workflow has in the dev server's default namespace (`forget` deletes runs)."""
    return random.randrange(10**8, 10**9)


async def add_lead(sessionmaker: Any, email: str, **fields: Any) -> int:
    async with sessionmaker() as session:
        lead = Lead(id=fresh_id(), email=email, attributes={}, **fields)
        session.add(lead)
        await session.commit()
        return lead.id


async def suppressed(sessionmaker: Any, *emails: str) -> list[str | None]:
    async with sessionmaker() as session:
        return [getattr(await session.get(Suppression, email_hash(e)), "reason", None) for e in emails]


async def test_forget_finds_the_lead_by_an_address_it_had_before_a_change(sessionmaker: Any, client: Client) -> None:
    lead_id = await add_lead(sessionmaker, "old.maria@example.gr", first_name="Μαρία")
    async with sessionmaker() as session:
        assert await apply_update(session, lead_id, {"email": "New.Maria@example.gr"}) == ["email"]
        await session.commit()

    done = await forget(sessionmaker, client, "Old.Maria@Example.GR")

    assert done.lead_id == lead_id and done.rows["leads"] == 1
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id)
        assert lead.erased_at is not None and lead.first_name is None
        assert await session.scalar(select(func.count()).select_from(FormerAddress)) == 0  # no hash -> lead link left
    # both addresses are refused from now on, the one it had and the one it had last
    assert await suppressed(sessionmaker, "old.maria@example.gr", "new.maria@example.gr") == ["erased", "erased"]
    other = await add_lead(sessionmaker, "someone@example.gr")
    async with sessionmaker() as session:
        with pytest.raises(AddressSuppressed, match="suppression list"):
            await apply_update(session, other, {"email": "old.maria@example.gr"})


async def test_forget_by_lead_id_and_what_it_refuses(sessionmaker: Any, client: Client) -> None:
    lead_id = await add_lead(sessionmaker, "ann@example.com", first_name="Ann")
    unknown = fresh_id()
    with pytest.raises(ErasureError, match=f"no lead {unknown}; nothing was changed"):
        await forget(sessionmaker, client, str(unknown))
    with pytest.raises(ErasureError, match="not a valid email address"):
        await forget(sessionmaker, client, "ann at example")
    # two leads both had this address once: which is the person is the operator's call
    first, second = await add_lead(sessionmaker, "a1@example.com"), await add_lead(sessionmaker, "a2@example.com")
    for one in (first, second):
        async with sessionmaker() as session:
            await apply_update(session, one, {"email": "shared@example.com"})
            await apply_update(session, one, {"email": f"mine-{one}@example.com"})
            await session.commit()
    with pytest.raises(ErasureError, match=f"leads {min(first, second)}, {max(first, second)} each had"):
        await forget(sessionmaker, client, "shared@example.com")
    async with sessionmaker() as session:  # none of the refusals changed anything
        assert await session.scalar(select(func.count()).select_from(Suppression)) == 0
        assert (await session.get(Lead, lead_id)).first_name == "Ann"

    done = await forget(sessionmaker, client, f" {lead_id} ")
    assert done.lead_id == lead_id and not done.already_erased and done.email_hash is None
    assert await suppressed(sessionmaker, "ann@example.com") == ["erased"]
    again = await forget(sessionmaker, client, str(lead_id))
    assert again.already_erased and again.rows == {}


async def test_forget_removes_the_persons_inbound_messages_even_those_never_matched(
    sessionmaker: Any, client: Client
) -> None:
    from leadloop.domain.matching import Match
    from leadloop.infra.db import InboundMessage
    from leadloop.services.inbound import store_inbound

    lead_id = await add_lead(sessionmaker, "rita@example.com", first_name="Rita")
    async with sessionmaker() as session:
        matched = Match(reason="In-Reply-To", lead_id=lead_id, outbox_key=f"lead-{lead_id}.c0.welcome")
        await store_inbound(session, source="imap", source_key="1:1", raw=b"yes", message_id="<r1@x>", match=matched)
        await store_inbound(session, source="imap", source_key="1:2", raw=b"me", sender="Rita <RITA@example.com>")
        await store_inbound(session, source="webhook:ses", source_key="e1", raw=None, sender="other@example.com")
        await session.commit()

    done = await forget(sessionmaker, client, "rita@example.com")

    assert done.rows["inbound_messages"] == 2
    async with sessionmaker() as session:
        left = (await session.execute(select(InboundMessage.source_key))).scalars().all()
    assert left == ["e1"]


ROSTER = Roster.model_validate(
    {"teams": [{"name": "iberia", "reps": [{"email": "Rep.Madrid@leadloop.test", "name": "Marta", "capacity": 1}]}]}
)


async def test_forget_of_a_lead_with_sales_closes_its_hand_over_and_frees_the_rep(
    sessionmaker: Any, client: Client, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("version: 1\nrules:\n  - {name: all, team: iberia}\n")
    sales = AssignmentActivities(sessionmaker, routing)
    async with sessionmaker() as session:
        await import_roster(session, ROSTER)
        await session.commit()
    hot, next_one = await add_lead(sessionmaker, "hot@example.es"), await add_lead(sessionmaker, "next@example.es")

    def ask(lead_id: int, attempt: int) -> AssignLeadInput:
        return AssignLeadInput(
            key=f"lead-{lead_id}.c0.a{attempt}", lead_id=lead_id, cycle=0, score=90, profile=LeadProfile()
        )

    assert (await sales.assign_lead(ask(hot, 1))).assigned
    full = await sales.assign_lead(ask(next_one, 1))  # the only rep is at capacity: the next lead waits
    assert not full.assigned and "at capacity" in (full.reason or "")
    async with sessionmaker() as session:
        assert [(r.open_leads, r.capacity) for r in await list_reps(session)] == [(1, 1)]

    done = await forget(sessionmaker, client, "hot@example.es")

    assert done.handovers_closed == 1
    async with sessionmaker() as session:
        assert [r.open_leads for r in await list_reps(session)] == [0]
        closed = await session.get(Assignment, f"lead-{hot}.c0.a1")
        assert (closed.status, closed.closed_at is not None) == ("closed", True)
    freed = await sales.assign_lead(ask(next_one, 2))  # routing's retry finds the rep free again
    assert freed.assigned and freed.rep_name == "Marta"


async def test_after_forget_the_sqlite_files_hold_neither_the_addresses_nor_the_name(
    tmp_path: Path, client: Client
) -> None:
    path = tmp_path / "leadloop.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_database(url)
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    other = make_engine(url)  # the HTTP service or a worker, connected all along: the WAL is not removed on close
    secrets = ["zoe.old@example.gr", "zoe.new@example.gr", "Ζωή", "Παπαδάκη", "Quixote-Ωmega"]
    try:
        async with other.connect() as conn:
            assert (await conn.execute(text("PRAGMA secure_delete"))).scalar() == 1
            lead_id = await add_lead(
                sessionmaker, "zoe.old@example.gr", first_name="Ζωή", last_name="Παπαδάκη", company="Quixote-Ωmega"
            )
            async with sessionmaker() as session:
                for n in range(40):  # other people's rows share the pages
                    session.add(Lead(email=f"n{n}@example.com", first_name=f"Other {n}", attributes={}))
                session.add(
                    Outbox(
                        key=f"lead-{lead_id}.c0.a",
                        lead_id=lead_id,
                        cycle=0,
                        step_id="a",
                        cadence="welcome",
                        message_id="<a@x>",
                        subject="Γεια σου Ζωή Παπαδάκη",
                        status="sent",
                    )
                )
                session.add(
                    EngagementEvent(
                        id="e1",
                        lead_id=lead_id,
                        kind="click",
                        human=True,
                        reason="browser",
                        url="https://s.example/?u=zoe.old@example.gr",
                    )
                )
                await session.commit()
            async with sessionmaker() as session:
                await apply_update(session, lead_id, {"email": "zoe.new@example.gr"})
                await session.commit()
            before = b"".join(p.read_bytes() for p in tmp_path.glob("leadloop.db*"))
            assert all(s.encode() in before for s in secrets)  # the scan below can see them

            done = await forget(sessionmaker, client, "zoe.old@example.gr")

            assert done.lead_id == lead_id and done.wal_truncated
            files = {p.name: p.read_bytes() for p in tmp_path.glob("leadloop.db*")}
            assert {"leadloop.db", "leadloop.db-wal"} <= set(files)
            for name, data in files.items():
                for secret in secrets:
                    assert secret.encode() not in data, f"{secret!r} is still in {name}"
            async with sessionmaker() as session:  # everyone else is still there
                assert await session.scalar(select(func.count()).select_from(Lead)) == 41
    finally:
        await other.dispose()
        await engine.dispose()


async def test_an_assignment_still_in_flight_opens_no_hand_over_for_an_erased_lead(
    sessionmaker: Any, client: Client, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("version: 1\nrules:\n  - {name: all, team: iberia}\n")
    async with sessionmaker() as session:
        await import_roster(session, ROSTER)
        await session.commit()
    lead_id = await add_lead(sessionmaker, "late@example.es")
    await forget(sessionmaker, client, "late@example.es")  # the workflow is gone; its assign_lead call was not
    late = AssignLeadInput(key=f"lead-{lead_id}.c0.a1", lead_id=lead_id, cycle=0, score=90, profile=LeadProfile())
    with pytest.raises(ApplicationError) as refused:
        await AssignmentActivities(sessionmaker, routing).assign_lead(late)
    assert refused.value.type == "Erased" and refused.value.non_retryable
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Assignment)) == 0
        assert [r.open_leads for r in await list_reps(session)] == [0]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A database at revision 0004 (before former addresses), SQLite or a new PostgreSQL database."""
    import uuid

    import asyncpg

    from tests.conftest import PG_ADMIN_DSN, _pg_reachable

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await upgrade_database(url, "0004")
        yield url
        return
    if problem := await _pg_reachable():
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    name = f"leadloop_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    try:
        await upgrade_database(url, "0004")
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_upgrade_frees_the_reps_places_that_earlier_erasures_left_taken(at_0004: str) -> None:
    from datetime import UTC, datetime

    engine = make_engine(at_0004)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            await import_roster(session, ROSTER)
            # the table as revision 0004 has it: later columns (external_id) are not there yet
            now = datetime.now(UTC)
            await session.execute(
                text(
                    "INSERT INTO leads (id, email, attributes, erased_at, created_at, updated_at)"
                    " VALUES (:id, :email, '{}', :erased, :now, :now)"
                ),
                [
                    {"id": 1, "email": "erased-1@erased.invalid", "erased": now, "now": now},
                    {"id": 2, "email": "kept@example.com", "erased": None, "now": now},
                ],
            )
            rep = (await session.execute(select(Rep))).scalar_one()
            for lead_id in (1, 2):
                session.add(
                    Assignment(
                        key=f"lead-{lead_id}.c0.a1",
                        lead_id=lead_id,
                        cycle=0,
                        rep_id=rep.id,
                        team="iberia",
                        rule="r",
                        status="assigned",
                    )
                )
            await session.commit()
        await upgrade_database(at_0004)
        async with sessionmaker() as session:
            assert (await session.get(Assignment, "lead-1.c0.a1")).status == "closed"
            assert (await session.get(Assignment, "lead-2.c0.a1")).status == "assigned"
            assert [r.open_leads for r in await list_reps(session)] == [1]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("value", ["²", "١٢", "12³"])
def test_digits_that_are_not_a_lead_id_are_one_clear_error(value: str) -> None:
    from leadloop.services.erasure import ErasureError, parse_target

    with pytest.raises(ErasureError, match="give the person's address or their lead id"):
        parse_target(value)
    assert parse_target(" 42 ") == 42


async def test_forget_tells_the_crm_lead_suppressed_erasure_delivered_without_the_persons_data(
    sessionmaker: Any, client: Client
) -> None:
    import json
    import uuid
    from datetime import UTC, datetime, timedelta

    from temporalio.worker import Worker

    from activities.webhooks import WebhookActivities
    from leadloop.domain.crm_webhooks import delivery_workflow_id
    from leadloop.domain.models import LifecycleInput, WebhookRetry
    from leadloop.infra.db import LifecycleEventRow, WebhookDelivery
    from leadloop.infra.lifecycle_events import WebhookRoute, record_event
    from leadloop.infra.temporal import workflow_runner
    from leadloop.services.outbound_webhooks import add_endpoint
    from tests.webhook_receiver import Receiver
    from workflows.webhook_delivery import WebhookDeliveryWorkflow

    lead_id = await add_lead(
        sessionmaker, "zoe.person@example.com", first_name="Zoë", external_id=f"crm-{uuid.uuid4().hex[:8]}",
        owner="rep@example.com", cadence="welcome",
    )  # fmt: skip
    receiver = Receiver()
    await receiver.start()
    retry = WebhookRetry(initial_interval=timedelta(milliseconds=100), max_interval=timedelta(seconds=1))
    route = WebhookRoute(task_queue=f"erasure-{uuid.uuid4()}", retry=retry)
    try:
        async with sessionmaker() as session:
            # an endpoint that may receive the person's address and name: an erasure still gives it neither
            crm = await add_endpoint(  # the receiver listens on loopback: private addresses allowed for it
                session, "crm", receiver.url, [], ["email", "first_name"], allow_private=True
            )
            # an earlier event of the lead not yet sent, whose body holds the person
            earlier = LifecycleInput(
                key=f"lead-{lead_id}.r1.c2.1", lead_id=lead_id, type="lead.escalated", cycle=2, stage="with_sales",
                occurred_at=datetime.now(UTC),
            )  # fmt: skip
            await record_event(session, earlier)
            await session.commit()
        receiver.secret = crm.secret
        worker = Worker(
            client,
            task_queue=route.task_queue,
            workflows=[WebhookDeliveryWorkflow],
            activities=[WebhookActivities(sessionmaker, retry.timeout, allow_private=True).deliver],
            workflow_runner=workflow_runner(),
        )
        async with worker:
            done = await forget(sessionmaker, client, str(lead_id), webhooks=route)
            assert done.webhooks == 1
            async with sessionmaker() as session:
                endpoint_id = await session.scalar(select(WebhookDelivery.endpoint_id))
            await client.get_workflow_handle(delivery_workflow_id(endpoint_id, lead_id)).result()

        assert [(r.type, r.lead_id) for r in receiver.received] == [("lead.suppressed", lead_id)]
        sent = receiver.received[0]
        assert sent.data["data"] == {"reason": "erasure"} and sent.data["stage"] == "suppressed"
        assert sent.data["cycle"] == 2 and sent.data["cadence"] == "welcome"  # the lead's last cycle: not personal
        assert sent.data["external_id"] is None and sent.data["owner"] is None and "person" not in sent.data
        for personal in ("zoe.person", "Zoë", "Zo\\u00eb", "crm-", "rep@example.com"):
            assert personal not in sent.body
        async with sessionmaker() as session:
            events = (
                await session.execute(
                    select(LifecycleEventRow.type, LifecycleEventRow.stage, LifecycleEventRow.payload)
                    .where(LifecycleEventRow.lead_id == lead_id)
                    .order_by(LifecycleEventRow.id)
                )
            ).all()
            deliveries = (
                await session.execute(select(WebhookDelivery.status, WebhookDelivery.body).order_by(WebhookDelivery.id))
            ).all()
        assert [(t, s, p["data"]) for t, s, p in events][1] == ("lead.suppressed", "suppressed", {"reason": "erasure"})
        # the earlier event never goes out: its body went with the person; the erasure's went out, and is stored
        # as sent (no personal data in it to erase)
        assert deliveries[0] == ("dead", None)
        assert deliveries[1][0] == "delivered" and json.loads(deliveries[1][1])["data"]["external_id"] is None

        # again: erased already, the CRM was told once
        again = await forget(sessionmaker, client, str(lead_id), webhooks=route)
        assert again.already_erased and again.webhooks == 0
        async with sessionmaker() as session:
            count = select(func.count()).select_from(LifecycleEventRow).where(LifecycleEventRow.lead_id == lead_id)
            assert await session.scalar(count) == 2
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()


async def test_a_lead_erased_with_no_endpoint_still_records_its_lead_suppressed(
    sessionmaker: Any, client: Client
) -> None:
    from leadloop.infra.db import LifecycleEventRow, WebhookDelivery

    lead_id = await add_lead(sessionmaker, "quiet@example.com", first_name="Quinn")
    done = await forget(sessionmaker, client, "quiet@example.com")
    assert done.webhooks == 0
    async with sessionmaker() as session:
        event = (
            await session.execute(select(LifecycleEventRow).where(LifecycleEventRow.lead_id == lead_id))
        ).scalar_one()
        assert (event.type, event.key, event.payload["data"]) == (
            "lead.suppressed",
            f"lead-{lead_id}.erasure",
            {"reason": "erasure"},
        )
        assert "quiet" not in json.dumps(event.payload) and "Quinn" not in json.dumps(event.payload)
        assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


async def test_forget_strips_the_free_text_of_the_leads_lifecycle_events_and_goals(
    sessionmaker: Any, client: Client
) -> None:
    from activities.lifecycle import LifecycleActivities
    from leadloop.domain.models import LifecycleInput, RecordGoalInput
    from leadloop.infra.db import Goal, LifecycleEventRow
    from leadloop.infra.lifecycle_events import record_event

    lead_id = await add_lead(sessionmaker, "noted@example.com", first_name="Nora")
    rejected = LifecycleInput(
        key=f"lead-{lead_id}.r1.c0.1", lead_id=lead_id, type="lead.rejected", cycle=0, stage="nurturing",
        data={"reason": "not_ready", "note": "Nora's husband handles it; call him on +30 210 555"},
        occurred_at=datetime.now(UTC),
    )  # fmt: skip
    async with sessionmaker() as session:
        await record_event(session, rejected)
        await session.commit()
    goal = RecordGoalInput(lead_id=lead_id, kind="meeting_booked", source="crm", note="met Nora at the fair")
    assert await LifecycleActivities(sessionmaker).record_goal(goal)

    done = await forget(sessionmaker, client, "noted@example.com")

    assert done.rows["lifecycle_events"] == 1 and done.rows["goals"] == 1
    async with sessionmaker() as session:
        events = (await session.scalars(select(LifecycleEventRow).where(LifecycleEventRow.lead_id == lead_id))).all()
        kept = next(e for e in events if e.type == "lead.rejected")
        assert kept.payload["data"] == {"reason": "not_ready"}  # the code stays, the words go
        assert "Nora" not in json.dumps([e.payload for e in events])
        assert (await session.scalars(select(Goal.note).where(Goal.lead_id == lead_id))).all() == [None]
