"""Events through the real app into a real workflow: a burst coalesces into few signals, a Temporal outage
leaves events pending until the relay signals them, and each event counts once."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop.domain.cadence import Cadence, Escalation, Sender, SendWindow, Step
from leadloop.domain.models import LeadState
from leadloop.domain.scoring import ScoringConfig
from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import EngagementEvent, Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import start_lead, workflow_id
from leadloop.services.events import EventSignaller
from starter.api import create_app
from tests.conftest import with_pydantic

ALWAYS = SendWindow(days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], start="00:00", end="23:59")  # type: ignore[arg-type]
CADENCE = Cadence(
    name="slow",
    version=1,
    send_window=ALWAYS,
    sender=Sender(name="Demo", address="demo@leadloop.example"),
    steps=[
        Step(id="s1", wait="0", template="welcome", subject="hi"),  # type: ignore[arg-type]
        Step(id="s2", wait="30d", template="tips", subject="hi"),
    ],  # type: ignore[arg-type]
    escalation=Escalation(threshold=1000),
)
SCORING = ScoringConfig.model_validate(
    {"version": 1, "engagement": [{"name": "open", "kind": "open", "points": 3, "cap": 15}]}
)
MAIL_CLIENT = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"}


@pytest.fixture
async def parts(time_skipping_env: WorkflowEnvironment, smtp: Any, make_settings: Any) -> AsyncIterator[dict[str, Any]]:
    settings = make_settings(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        public_url="http://t.test",
        machine_min_delay=0,
        coalesce_seconds=0.5,
        relay_interval=3600,
    )
    await upgrade_database(settings.database_url)
    client = with_pydantic(time_skipping_env.client)
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    async with worker_module.build_worker(client, settings):
        yield {"settings": settings, "client": client, "sessionmaker": maker}
    await engine.dispose()


async def enrolled(parts: dict[str, Any]) -> tuple[int, WorkflowHandle[Any, Any]]:
    async with parts["sessionmaker"]() as session:
        lead = Lead(email=f"{uuid.uuid4().hex[:8]}@example.com", timezone="Europe/Athens", attributes={})
        session.add(lead)
        await session.commit()
    await start_lead(
        parts["client"],
        lead,
        CADENCE,
        task_queue=parts["settings"].task_queue,
        time_scale=1.0,
        source="test",
        scoring=SCORING,
    )
    handle = parts["client"].get_workflow_handle(workflow_id(lead.id))
    await until(handle, lambda s: s.sends == 1)
    return lead.id, handle


async def until(handle: WorkflowHandle[Any, Any], check: Any) -> LeadState:
    for _ in range(300):
        state: LeadState = await handle.query("state", result_type=LeadState)
        if check(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {state}")


def open_token(settings: Any, lead_id: int) -> str:
    token = Token(kind="open", lead_id=lead_id, key=f"lead-{lead_id}.c0.s1", issued_at=int(time.time()))
    return Signer(settings.signing_keys()).sign(token)


async def test_a_thousand_opens_become_a_few_signals_and_count_once(parts: dict[str, Any]) -> None:
    lead_id, handle = await enrolled(parts)
    app = create_app(parts["settings"], sessionmaker=parts["sessionmaker"], client=parts["client"])
    async with app.router.lifespan_context(app):
        signaller = app.state.leadloop.signaller
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            url = f"/o/{open_token(parts['settings'], lead_id)}.gif"
            gate = asyncio.Semaphore(50)

            async def hit(i: int) -> int:
                async with gate:
                    agent = MAIL_CLIENT if i % 2 else {"user-agent": "Mozilla/5.0"}  # half are Apple's prefetch
                    return (await http.get(url, headers=agent)).status_code

            began = asyncio.get_running_loop().time()
            codes = await asyncio.gather(*(hit(i) for i in range(1000)))
        assert set(codes) == {200}
        await signaller.drain()
        elapsed = asyncio.get_running_loop().time() - began
        state = await until(handle, lambda s: s.engagement.human_opens + s.engagement.machine_opens == 1000)
        signals = signaller.signals_sent
    assert (state.engagement.human_opens, state.engagement.machine_opens) == (500, 500)
    assert state.score.total == 15  # the open rule's cap; machine opens add nothing
    history = await handle.fetch_history()
    signalled = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signalled) == signals + 1  # + the enrolment signal
    # coalescing: at most one flush per lead per window (however long the burst took on this machine),
    # the first at once, and a flush with more than SIGNAL_BATCH events sends them in several signals
    from leadloop.services.events import SIGNAL_BATCH

    window = parts["settings"].coalesce_seconds
    bound = elapsed / window + 2 + 1000 // SIGNAL_BATCH
    assert signals <= bound, f"{signals} signals for 1000 hits in {elapsed:.1f}s"
    assert signals < 100
    assert len(history.events) < 200
    async with parts["sessionmaker"]() as session:
        statuses = (await session.execute(select(EngagementEvent.status))).scalars().all()
    assert len(statuses) == 1000 and set(statuses) == {"signalled"}


async def test_events_stored_while_temporal_is_down_are_signalled_by_the_relay(parts: dict[str, Any]) -> None:
    lead_id, handle = await enrolled(parts)
    down = parts["settings"].model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(down, sessionmaker=parts["sessionmaker"])  # its own client: nothing listens there
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            for _ in range(3):
                assert (await http.get(f"/o/{open_token(down, lead_id)}.gif", headers=MAIL_CLIENT)).status_code == 200
        await app.state.leadloop.signaller.drain()
    async with parts["sessionmaker"]() as session:
        pending = (await session.execute(select(EngagementEvent.status))).scalars().all()
    assert pending == ["pending"] * 3
    assert (await until(handle, lambda s: True)).engagement.human_opens == 0

    async def client() -> Any:
        return parts["client"]

    relay = EventSignaller(parts["sessionmaker"], client)
    assert await relay.sweep() == 3
    state = await until(handle, lambda s: s.engagement.human_opens == 3)
    assert state.score.total == 9
    assert await relay.sweep() == 0  # nothing twice
    # a second relay racing the first re-sends nothing the workflow would count again
    async with parts["sessionmaker"]() as session:
        rows = (await session.execute(select(EngagementEvent))).scalars().all()
        for row in rows:
            row.status = "pending"
        await session.commit()
    assert await relay.sweep() == 3
    await asyncio.sleep(0.3)
    assert (await until(handle, lambda s: True)).engagement.human_opens == 3


async def test_events_of_a_lead_without_a_workflow_are_kept_not_retried(parts: dict[str, Any]) -> None:
    async with parts["sessionmaker"]() as session:
        lead = Lead(email="nobody@example.com", attributes={})
        session.add(lead)
        await session.commit()
    app = create_app(parts["settings"], sessionmaker=parts["sessionmaker"], client=parts["client"])
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            await http.get(f"/o/{open_token(parts['settings'], lead.id)}.gif", headers=MAIL_CLIENT)
        await app.state.leadloop.signaller.drain()
    async with parts["sessionmaker"]() as session:
        assert (await session.execute(select(EngagementEvent.status))).scalars().all() == ["no_workflow"]
