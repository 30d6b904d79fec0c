"""Webhook endpoints on SQLite and PostgreSQL: each bad input one clear error with nothing changed; secrets shown
once and rotated; erasure clears what deliveries hold of the person."""

import base64
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from standardwebhooks import Webhook

from leadloop.domain.crm_webhooks import WebhookInputError, message_id
from leadloop.infra import webhook_sender
from leadloop.infra.db import Lead, LifecycleEventRow, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from leadloop.infra.webhook_sender import PrivateDestination, signed_headers
from leadloop.services.erasure import erase_in_database
from leadloop.services.outbound_webhooks import (
    EndpointExists,
    NotFound,
    add_endpoint,
    enable_endpoint,
    list_deliveries,
    list_endpoints,
    remove_endpoint,
    replay,
    rotate_secret,
)


async def endpoints(sessionmaker: Any) -> list[tuple[str, str, bool]]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.name))).all()
        return [(e.name, e.secret, e.enabled) for e in rows]


async def test_an_endpoint_gets_a_standard_secret_shown_once_and_a_rotation_replaces_it(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        added = await add_endpoint(session, "crm", "https://crm.example/hooks", ["lead.accepted", "lead.escalated"])
    assert added.secret.startswith("whsec_") and len(base64.b64decode(added.secret[6:])) == 32
    # in Standard Webhooks' order of types, no personal data unless asked for
    assert added.endpoint.event_types == ["lead.escalated", "lead.accepted"] and added.endpoint.personal_data == []
    async with sessionmaker() as session:
        listed = await list_endpoints(session)
    # a fingerprint of the secret, none of its own characters
    fingerprint = "sha256:" + hashlib.sha256(added.secret.encode()).hexdigest()[:8]
    assert added.secret not in listed[0].model_dump_json() and listed[0].secret_hint == fingerprint
    assert added.secret[6:10] not in listed[0].secret_hint and added.endpoint.secret_hint == fingerprint
    async with sessionmaker() as session:
        rotated = await rotate_secret(session, "crm")
    assert rotated.secret != added.secret and rotated.endpoint.secret_rotated_at is not None
    assert rotated.endpoint.secret_hint == "sha256:" + hashlib.sha256(rotated.secret.encode()).hexdigest()[:8]
    # what the receiver verifies with the new secret; the old one no longer verifies it
    now = datetime.now(UTC)
    headers = signed_headers(rotated.secret, "msg_1", '{"a":1}', now)
    assert Webhook(rotated.secret).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(added.secret).verify('{"a":1}', headers)
    async with sessionmaker() as session:
        stored = await session.scalar(select(WebhookEndpoint))
        assert stored is not None and stored.previous_secret == added.secret


@pytest.mark.parametrize(
    ("name", "url", "types", "fields", "error"),
    [
        ("crm", "ftp://crm.example/hooks", [], [], "must start with http:// or https://"),
        ("crm", "crm.example/hooks", [], [], "must start with http:// or https://"),
        ("crm", "https:///hooks", [], [], "names no host"),
        ("crm", "https://crm.example/ho oks", [], [], "not a URL"),
        ("crm", "https://crm.example:99999/", [], [], "not a URL"),
        ("crm", "https://user:pw@crm.example/", [], [], "holds credentials"),
        ("crm", "https://crm.example/", ["lead.won"], [], "unknown event type 'lead.won'"),
        ("crm", "https://crm.example/", [], ["password"], "unknown personal-data field 'password'"),
        ("Bad Name", "https://crm.example/", [], [], "endpoint name 'Bad Name' is not allowed"),
    ],
)
async def test_bad_input_is_one_clear_error_and_nothing_is_stored(
    sessionmaker: Any, name: str, url: str, types: list[str], fields: list[str], error: str
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(WebhookInputError, match=error):
            await add_endpoint(session, name, url, types, fields)
    assert await endpoints(sessionmaker) == []


async def test_unknown_names_and_ids_and_a_taken_name_change_nothing(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await add_endpoint(session, "crm", "https://crm.example/hooks")
    before = await endpoints(sessionmaker)
    async with sessionmaker() as session:
        with pytest.raises(EndpointExists, match="an endpoint named 'crm' exists already; nothing changed"):
            await add_endpoint(session, "crm", "https://other.example/hooks")
    for act in (remove_endpoint, rotate_secret, enable_endpoint):
        async with sessionmaker() as session:
            with pytest.raises(NotFound, match="no webhook endpoint named 'crn'; nothing changed"):
                await act(session, "crn")
    async with sessionmaker() as session:
        with pytest.raises(NotFound, match="no webhook endpoint named 'crn'"):
            await list_deliveries(session, endpoint="crn")
    with pytest.raises(NotFound, match="no webhook delivery 4242; nothing was sent"):
        await replay(sessionmaker, 4242, answer_within=1)
    assert await endpoints(sessionmaker) == before


async def test_forget_clears_the_persons_delivery_bodies_and_the_answers(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await add_endpoint(session, "crm", "https://crm.example/hooks", personal_data=["email"])
    async with sessionmaker() as session:
        session.add(Lead(id=7, email="ada@example.com", first_name="Ada", attributes={}))
        await session.flush()
        event = LifecycleEventRow(
            key="lead-7.r1.lead.enrolled.1",
            lead_id=7,
            type="lead.enrolled",
            cycle=0,
            stage="nurturing",
            payload={},
            occurred_at=datetime.now(UTC),
        )
        session.add(event)
        await session.flush()
        endpoint = await session.scalar(select(WebhookEndpoint))
        assert endpoint is not None
        for n, status in enumerate(("delivered", "pending")):
            delivery = WebhookDelivery(
                endpoint_id=endpoint.id,
                event_id=event.id,
                lead_id=7,
                message_id=message_id(event.key, endpoint.id + n * 1000),
                status=status,
                attempts=1,
                body='{"data":{"person":{"email":"ada@example.com"}}}',
                last_answer="thanks ada@example.com",
            )
            if n:  # a second endpoint's delivery of the same event
                other = WebhookEndpoint(
                    name="crm2", url="https://b.example/", secret="whsec_x", event_types=[], personal_data=[]
                )
                session.add(other)
                await session.flush()
                delivery.endpoint_id = other.id
            session.add(delivery)
            await session.flush()
            session.add(WebhookAttempt(delivery_id=delivery.id, attempt=1, answer="thanks ada@example.com"))
        await session.commit()
    async with sessionmaker() as session:
        rows = await erase_in_database(session, None, 7)
        await session.commit()
    assert rows["webhook_deliveries"] == 2
    async with sessionmaker() as session:
        deliveries = (await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))).all()
        assert [(d.body, d.last_answer, d.status) for d in deliveries] == [
            (None, None, "delivered"),
            (None, None, "dead"),  # never sent without its body
        ]
        assert "erased" in (deliveries[1].last_error or "")
        assert await session.scalar(select(func.count()).where(WebhookAttempt.answer.is_not(None))) == 0


@pytest.mark.parametrize(
    ("url", "reaches"),
    [
        ("http://127.0.0.1:9000/hooks", "127.0.0.1"),
        ("https://10.0.0.1/hooks", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::1]:9000/hooks", "::1"),
        ("http://[::ffff:127.0.0.1]/hooks", "::ffff:127.0.0.1"),
        ("http://localhost:9000/hooks", "localhost (127.0.0.1"),
    ],
)
async def test_an_endpoint_on_a_private_address_is_refused_unless_allowed(
    sessionmaker: Any, url: str, reaches: str
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(PrivateDestination, match=rf"reaches {re.escape(reaches)}.*not a public address"):
            await add_endpoint(session, "crm", url)
    assert await endpoints(sessionmaker) == []
    async with sessionmaker() as session:  # LEADLOOP_WEBHOOK_ALLOW_PRIVATE (the demo, the tests' receivers)
        await add_endpoint(session, "crm", url, allow_private=True)
    assert [name for name, _, _ in await endpoints(sessionmaker)] == ["crm"]


async def test_a_host_that_turns_private_after_it_was_added_is_refused_at_send(
    sessionmaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"crm.example": ["93.184.215.14"]}  # public when the endpoint is added

    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]

    monkeypatch.setattr(webhook_sender, "resolve", resolve)
    async with sessionmaker() as session:
        await add_endpoint(session, "crm", "https://crm.example/hooks")
        endpoint = await session.scalar(select(WebhookEndpoint))
        assert endpoint is not None
        session.add(Lead(id=7, email="ada@example.com", attributes={}))
        event = LifecycleEventRow(
            key="lead-7.r1.lead.enrolled.1", lead_id=7, type="lead.enrolled", cycle=0, stage="nurturing", payload={}
        )
        event.occurred_at = datetime.now(UTC)
        session.add(event)
        await session.flush()
        delivery = WebhookDelivery(
            endpoint_id=endpoint.id,
            event_id=event.id,
            lead_id=7,
            message_id=message_id(event.key, endpoint.id),
            status="pending",
            attempts=0,
            body='{"type":"lead.enrolled"}',
        )
        session.add(delivery)
        await session.commit()
    answers["crm.example"] = ["93.184.215.14", "169.254.169.254"]  # DNS rebinding: now it reaches the metadata
    attempt = await webhook_sender.attempt_delivery(sessionmaker, delivery.id, answer_within=1)
    assert attempt.outcome == "failed" and attempt.status_code is None
    assert attempt.error is not None and "crm.example (169.254.169.254), not a public address" in attempt.error
    async with sessionmaker() as session:
        [shown] = await list_deliveries(session)
    assert shown.status == "pending" and shown.tries[0].error == attempt.error  # the operator sees why
    # allowed, the same host is tried (and fails only because nothing listens there)
    allowed = await webhook_sender.attempt_delivery(sessionmaker, delivery.id, answer_within=1, allow_private=True)
    assert allowed.outcome == "failed" and "not a public address" not in (allowed.error or "")
