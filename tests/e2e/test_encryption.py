"""Encrypted payloads on the real dev server: Temporal stores no lead data in plaintext, the worker and the
CLI read it all, the HTTP service's codec server decodes it for the UI, and keys rotate."""

import base64
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from leadloop.domain.models import EngagementEvent, EngagementInput, LeadState, PauseInput
from leadloop.infra.codec import KEY_ID
from leadloop.infra.db import Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.temporal import data_converter, workflow_runner
from leadloop.services.enrollment import start_lead, workflow_id
from starter.api import create_app
from tests.e2e.test_operator_cli import CADENCE, SCORING, send_email
from tests.lifecycle_log import announce_lifecycle
from workflows.lead_nurture import LeadNurtureWorkflow

SECRETS = ("maria@example.gr", "olga.owner@example.com", "+30 210 555 0100", "call me after the summer")
K1, K2 = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()


def payloads_of(history: Any) -> list[Payload]:
    """Every payload in a history (inputs, results, signals, summaries, ...), found by walking the protos."""
    found: list[Payload] = []

    def walk(message: Any) -> None:
        if isinstance(message, Payload):
            found.append(message)
            return
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if field.message_type.GetOptions().map_entry:
                items = list(value.values())
            elif field.is_repeated:
                items = list(value)
            else:
                items = [value]
            for item in items:
                if hasattr(item, "ListFields"):
                    walk(item)

    for event in history.events:
        walk(event)
    return found


@pytest.fixture
async def http(make_settings: Any, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"
    await upgrade_database(db_url)
    settings = make_settings(
        database_url=db_url,
        encryption_keys={"k1": K1, "k2": K2},
        encryption_key_id="k2",
        codec_token="codec-secret",
        temporal_address="127.0.0.1:1",
    )
    engine = make_engine(db_url)
    app = create_app(settings, sessionmaker=make_sessionmaker(engine))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            yield client, settings
    await engine.dispose()


@pytest.mark.e2e
async def test_history_holds_no_plaintext_and_the_codec_server_opens_it(
    dev_env: WorkflowEnvironment, make_settings: Any, http: tuple[httpx.AsyncClient, Any]
) -> None:
    api, _ = http
    raw_config = dev_env.client.config()
    raw = Client(**raw_config)  # what an operator without keys sees: the bytes Temporal stored
    sealed_config = dev_env.client.config()
    # rotation, step 1: every process learns k2 while k1 still seals
    sealed_config["data_converter"] = data_converter(
        make_settings(encryption_keys={"k1": K1, "k2": K2}, encryption_key_id="k1")
    )
    client = Client(**sealed_config)
    queue = f"enc-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[LeadNurtureWorkflow],
        activities=[send_email, announce_lifecycle],
        workflow_runner=workflow_runner(),
    ):
        lead = Lead(
            id=9101,
            email="maria@example.gr",
            timezone="Europe/Athens",
            industry="software",
            owner="olga.owner@example.com",
            attributes={"phone": "+30 210 555 0100"},
        )
        await start_lead(client, lead, CADENCE, task_queue=queue, time_scale=1.0, source="test", scoring=SCORING)
        handle = client.get_workflow_handle(workflow_id(9101))
        click = EngagementEvent(
            id="c1", kind="click", human=True, at=datetime.now(UTC), url="https://site.example/thanks/maria@example.gr"
        )
        await handle.signal("engagement", EngagementInput(events=[click]))
        await handle.signal("pause", PauseInput(note="call me after the summer"))
        state = await handle.query("state", result_type=LeadState)  # the worker and the CLI read it all
        assert state.engagement.human_clicks == 1 and state.stage in ("nurturing", "paused")

        # rotation, step 2: k2 seals; the old payloads still open
        rotated_config = dev_env.client.config()
        rotated_config["data_converter"] = data_converter(
            make_settings(encryption_keys={"k1": K1, "k2": K2}, encryption_key_id="k2")
        )
        rotated = Client(**rotated_config)
        await rotated.get_workflow_handle(workflow_id(9101)).signal("resume", PauseInput(note="rotated"))
        assert (await rotated.get_workflow_handle(workflow_id(9101)).query("state", result_type=LeadState)).lead_id

        history = await raw.get_workflow_handle(workflow_id(9101)).fetch_history()
        stored = b"".join(e.SerializeToString() for e in history.events)
        for secret in SECRETS:
            assert secret.encode() not in stored, f"{secret!r} is stored in plaintext"
        sealed = [p for p in payloads_of(history) if p.metadata.get("encoding") == b"binary/encrypted"]
        keys = {p.metadata[KEY_ID] for p in sealed}
        assert keys == {b"k1", b"k2"}, keys
        plain = [p for p in payloads_of(history) if p.metadata.get("encoding") != b"binary/encrypted"]
        assert plain and all("type" in p.metadata for p in plain)  # only search attributes stay readable

        # the codec server (as the UI calls it) opens every one of them
        body = MessageToDict(history.events[0].workflow_execution_started_event_attributes.input)
        body["payloads"] = [MessageToDict(p) for p in sealed]
        opened = await api.post(
            "/codec/decode", json=body, headers={"authorization": "Bearer codec-secret", "x-namespace": "default"}
        )
        assert opened.status_code == 200, opened.text
        text = b"".join(base64.b64decode(p["data"]) for p in opened.json()["payloads"])
        for secret in ("maria@example.gr", "olga.owner@example.com", "call me after the summer"):
            assert secret.encode() in text, secret  # (the phone never goes to Temporal: not a scoring field)
        ui = await api.post("/codec/codec-secret/decode", json=body, headers={"origin": "http://localhost:8233"})
        assert ui.status_code == 200 and ui.headers["access-control-allow-origin"] == "http://localhost:8233"
        assert ui.json() == opened.json()
        # ... and seals: what /codec/encode returns, /codec/decode opens
        encoded = await api.post(
            "/codec/encode",
            json={"payloads": opened.json()["payloads"][:1]},
            headers={"authorization": "Bearer codec-secret"},
        )
        assert encoded.json()["payloads"][0]["metadata"][KEY_ID] == base64.b64encode(b"k2").decode()
        await handle.terminate("test over")


@pytest.mark.e2e
async def test_the_codec_server_refuses_strangers_and_bad_bodies(
    http: tuple[httpx.AsyncClient, Any], make_settings: Any, tmp_path: Path
) -> None:
    api, _ = http
    body = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(b'"hi"').decode(),
            }
        ]
    }
    assert (await api.post("/codec/decode", json=body)).status_code == 401
    assert (await api.post("/codec/decode", json=body, headers={"authorization": "Bearer nope"})).status_code == 401
    assert (await api.post("/codec/nope/decode", json=body)).status_code == 401
    bad = await api.post("/codec/decode", content=b"{not json", headers={"authorization": "Bearer codec-secret"})
    assert bad.status_code == 400 and "payloads" in bad.text
    foreign = {
        "payloads": [
            {
                "metadata": {
                    "encoding": base64.b64encode(b"binary/encrypted").decode(),
                    KEY_ID: base64.b64encode(b"k7").decode(),
                },
                "data": "",
            }
        ]
    }
    refused = await api.post("/codec/decode", json=foreign, headers={"authorization": "Bearer codec-secret"})
    assert refused.status_code == 422 and "'k7'" in refused.text
    passthrough = await api.post("/codec/decode", json=body, headers={"authorization": "Bearer codec-secret"})
    assert passthrough.json() == body
    preflight = {
        "origin": "http://localhost:8233",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-namespace",
    }
    ok = await api.options("/codec/codec-secret/decode", headers=preflight)
    assert ok.status_code == 204 and "x-namespace" in ok.headers["access-control-allow-headers"]
    evil = await api.options("/codec/decode", headers={**preflight, "origin": "https://evil.example"})
    assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
    # without encryption keys and a token the codec server does not exist
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'off.db'}"
    await upgrade_database(db_url)
    engine = make_engine(db_url)
    app = create_app(
        make_settings(database_url=db_url, temporal_address="127.0.0.1:1"), sessionmaker=make_sessionmaker(engine)
    )
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as off:
            answer = await off.post("/codec/decode", json=body, headers={"authorization": "Bearer codec-secret"})
            assert answer.status_code == 404 and "LEADLOOP_CODEC_TOKEN" in answer.text
    await engine.dispose()
