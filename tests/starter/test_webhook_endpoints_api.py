"""The webhook endpoints' API against the real app and a real receiver: add, list, rotate, replay, remove; a
stranger and bad input refused with nothing changed."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.crm_webhooks import message_id, webhook_body
from leadloop.infra.db import Lead, LifecycleEventRow, WebhookDelivery, WebhookEndpoint
from starter.api import create_app
from tests.webhook_receiver import Receiver

KEY = {"x-api-key": "admin-key"}


@pytest.fixture
async def http(make_settings: Any, database_url: str, sessionmaker: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url=database_url, api_keys=["admin-key"], temporal_address="127.0.0.1:1")
    app = create_app(settings, sessionmaker=sessionmaker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as client:
            yield client


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        return [(e.name, e.secret) for e in (await session.scalars(select(WebhookEndpoint))).all()]


async def a_failed_delivery(sessionmaker: Any, endpoint: str) -> int:
    """A delivery its receiver refused (as a wrong secret at the CRM leaves it)."""
    async with sessionmaker() as session:
        session.add(Lead(id=3, email="cy@example.com", external_id="crm-3", attributes={}))
        event = LifecycleEventRow(
            key="lead-3.r1.lead.accepted.1",
            lead_id=3,
            type="lead.accepted",
            cycle=0,
            stage="converted",
            payload={"type": "lead.accepted", "lead_id": 3, "occurred_at": datetime.now(UTC).isoformat()},
            occurred_at=datetime.now(UTC),
        )
        session.add(event)
        await session.flush()
        row = await session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.name == endpoint))
        assert row is not None
        delivery = WebhookDelivery(
            endpoint_id=row.id,
            event_id=event.id,
            lead_id=3,
            message_id=message_id(event.key, row.id),
            status="dead",
            attempts=3,
            last_status=401,
            body=webhook_body(event.payload, external_id="crm-3", owner=None, person={}),
        )
        session.add(delivery)
        await session.commit()
        return delivery.id


async def test_an_admin_adds_lists_rotates_replays_and_removes_an_endpoint(
    http: httpx.AsyncClient, sessionmaker: Any
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        answer = await http.post(
            "/webhook-endpoints",
            json={"name": "crm", "url": receiver.url, "event_types": ["lead.accepted"], "personal_data": ["email"]},
            headers=KEY,
        )
        assert answer.status_code == 201, answer.text
        secret = answer.json()["secret"]
        assert secret.startswith("whsec_") and answer.json()["endpoint"]["personal_data"] == ["email"]
        listed = (await http.get("/webhook-endpoints", headers=KEY)).json()
        assert [e["name"] for e in listed] == ["crm"] and secret not in str(listed)
        delivery = await a_failed_delivery(sessionmaker, "crm")
        failed = (await http.get("/webhook-deliveries", params={"failed": "true"}, headers=KEY)).json()
        assert [d["id"] for d in failed] == [delivery] and failed[0]["last_status"] == 401
        rotated = (await http.post("/webhook-endpoints/crm/rotate-secret", headers=KEY)).json()
        assert rotated["secret"] != secret
        receiver.secret = rotated["secret"]
        replayed = await http.post(f"/webhook-deliveries/{delivery}/replay", headers=KEY)
        assert replayed.status_code == 200 and replayed.json()["delivered"], replayed.text
        assert receiver.ids() == [failed[0]["message_id"]]  # the same webhook-id, signed with the new secret
        assert (await http.get("/webhook-deliveries", params={"failed": "true"}, headers=KEY)).json() == []
        shown = (await http.get("/webhook-deliveries", params={"endpoint": "crm", "lead": 3}, headers=KEY)).json()
        assert shown[0]["status"] == "delivered" and shown[0]["tries"][-1]["status_code"] == 200
        gone = await http.delete("/webhook-endpoints/crm", headers=KEY)
        assert gone.status_code == 200 and await stored(sessionmaker) == []
    finally:
        await receiver.stop()


async def test_strangers_and_bad_input_are_refused_and_change_nothing(
    http: httpx.AsyncClient, sessionmaker: Any
) -> None:
    body = {"name": "crm", "url": "https://crm.example/hooks"}
    assert (await http.post("/webhook-endpoints", json=body)).status_code == 401
    assert (await http.post("/webhook-endpoints", json=body, headers={"x-api-key": "wrong"})).status_code == 401
    assert (await http.get("/webhook-endpoints")).status_code == 401
    assert await stored(sessionmaker) == []
    assert (await http.post("/webhook-endpoints", json=body, headers=KEY)).status_code == 201
    before = await stored(sessionmaker)
    for bad, status, said in [
        ({"name": "crm2", "url": "javascript:alert(1)"}, 422, "must start with http:// or https://"),
        ({"name": "crm2", "url": "https://x.example/", "event_types": ["lead.won"]}, 422, "unknown event type"),
        ({"name": "crm2", "url": "https://x.example/", "personal_data": ["ssn"]}, 422, "unknown personal-data"),
        ({"name": "crm", "url": "https://x.example/"}, 409, "exists already"),
        ({"name": "crm2", "url": "https://x.example/", "secret": "mine"}, 422, "secret"),
    ]:
        answer = await http.post("/webhook-endpoints", json=bad, headers=KEY)
        assert answer.status_code == status and said in answer.text, answer.text
    for method, path in [
        ("DELETE", "/webhook-endpoints/crn"),
        ("POST", "/webhook-endpoints/crn/rotate-secret"),
        ("POST", "/webhook-endpoints/crn/enable"),
        ("GET", "/webhook-deliveries?endpoint=crn"),
        ("POST", "/webhook-deliveries/4242/replay"),
    ]:
        answer = await http.request(method, path, headers=KEY)
        assert answer.status_code == 404 and ("crn" in answer.text or "4242" in answer.text), answer.text
    assert await stored(sessionmaker) == before


@pytest.mark.parametrize("demo", [False, True])
async def test_an_endpoint_on_the_inside_network_is_refused_outside_the_demo_or_when_set_so(
    make_settings: Any, database_url: str, sessionmaker: Any, demo: bool
) -> None:
    # outside the demo LEADLOOP_WEBHOOK_ALLOW_PRIVATE is off unless set; in the demo, setting it false wins
    settings = make_settings(
        database_url=database_url,
        api_keys=["admin-key"],
        temporal_address="127.0.0.1:1",
        demo=demo,
        secret_key="a-production-secret-of-at-least-32-bytes!",
        webhook_allow_private=False if demo else None,
    )
    assert not settings.private_webhooks_allowed()
    app = create_app(settings, sessionmaker=sessionmaker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as client:
            for url in ("http://169.254.169.254/latest/meta-data/", "http://localhost:8080/admin"):
                refused = await client.post("/webhook-endpoints", json={"name": "crm", "url": url}, headers=KEY)
                assert refused.status_code == 422 and "not a public address" in refused.text, refused.text
    assert await stored(sessionmaker) == []
