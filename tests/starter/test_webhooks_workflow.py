"""A provider's webhook into a real workflow: a signed SES hard bounce, posted to the real app, reaches the lead's
workflow on the time-skipping server through a real worker, counted once however often SNS delivers it; one stored
while Temporal was down reaches it through the relay."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from leadloop.domain.mail import email_hash
from leadloop.infra.db import InboundMessage, Lead, Outbox, Suppression, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.services.inbound_delivery import InboundRelay, signal_pending
from leadloop.services.lead_client import LeadClient
from starter.api import create_app
from tests.conftest import with_pydantic
from tests.starter.test_event_pipeline import enrolled, until
from tests.starter.test_webhooks import SECRETS, Sns, mailgun_request, ses_bounce


@pytest.fixture
async def parts(time_skipping_env: WorkflowEnvironment, smtp: Any, make_settings: Any) -> AsyncIterator[dict[str, Any]]:
    settings = make_settings(
        smtp_host=smtp.host, smtp_port=smtp.port, public_url="http://t.test", relay_interval=3600, **SECRETS
    )
    await upgrade_database(settings.database_url)
    client = with_pydantic(time_skipping_env.client)
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    async with worker_module.build_worker(client, settings):
        yield {"settings": settings, "client": client, "sessionmaker": maker}
    await engine.dispose()


async def test_a_webhook_hard_bounce_reaches_the_leads_workflow_once(parts: dict[str, Any]) -> None:
    lead_id, handle = await enrolled(parts)  # the first email went out
    async with parts["sessionmaker"]() as session:
        address = (await session.get(Lead, lead_id)).email  # type: ignore[union-attr]
        sent = (await session.execute(select(Outbox.message_id).where(Outbox.lead_id == lead_id))).scalar_one()
    app = create_app(parts["settings"], sessionmaker=parts["sessionmaker"], client=parts["client"], fetch=Sns())
    request = ses_bounce(address, sent)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            for _ in range(2):  # SNS delivers at least once
                answer = await http.post("/webhooks/ses", content=request[0], headers=request[1])
                assert answer.status_code == 200, answer.text
        await app.state.leadloop.inbound.drain()
    state = await until(handle, lambda s: s.inbound.hard_bounce == 1)
    assert state.inbound.hard_bounce == 1
    async with parts["sessionmaker"]() as session:
        [row] = (await session.execute(select(InboundMessage))).scalars().all()
        suppression = await session.get(Suppression, email_hash(address))
    assert (row.lead_id, row.kind, row.status) == (lead_id, "hard_bounce", "signalled")
    assert suppression is not None and suppression.reason == "hard_bounce"
    # the hard bounce ended the lead's nurture, and nothing is left to signal
    assert (await LeadClient(parts["client"], lead_id).handle.result()).stage == "suppressed"
    assert await signal_pending(parts["sessionmaker"], parts["client"]) == 0


async def test_a_bounce_stored_while_temporal_was_down_reaches_the_workflow_by_the_relay(parts: dict[str, Any]) -> None:
    lead_id, handle = await enrolled(parts)
    async with parts["sessionmaker"]() as session:
        address = (await session.get(Lead, lead_id)).email  # type: ignore[union-attr]
        sent = (await session.execute(select(Outbox.message_id).where(Outbox.lead_id == lead_id))).scalar_one()
    down = parts["settings"].model_copy(update={"temporal_address": "127.0.0.1:1"})
    app = create_app(down, sessionmaker=parts["sessionmaker"], fetch=Sns())  # its own client: nothing listens
    request = mailgun_request(address, sent)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            assert (await http.post("/webhooks/mailgun", content=request[0], headers=request[1])).status_code == 200
        await app.state.leadloop.inbound.drain()
    async with parts["sessionmaker"]() as session:
        assert (await session.execute(select(InboundMessage.status))).scalars().all() == ["pending"]
    assert (await until(handle, lambda s: True)).inbound.hard_bounce == 0

    async def client() -> Any:
        return parts["client"]

    relay = InboundRelay(parts["sessionmaker"], client)  # what `leadloop relay` and the api's relay run
    assert await relay.signal() == 1
    assert (await until(handle, lambda s: s.inbound.hard_bounce == 1)).inbound.hard_bounce == 1
    assert await relay.signal() == 0  # nothing twice
