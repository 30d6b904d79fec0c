"""The HTTP service's /metrics through the real app: events by kind and human or machine, intake, rep
decisions, its Temporal client's SDK metrics; a token guards it when one is set."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from leadloop.domain.routing import Roster
from leadloop.services.roster import import_roster
from starter.api import create_app
from tests.conftest import client_address
from tests.starter.test_api import CHROME, KEYS, NAV, THUNDERBIRD, add_lead, running, token

SCANNER = {"user-agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)", "accept": "text/html"}


def value(text: str, name: str, **labels: str) -> float:
    """The samples named `name` whose labels include `labels`, added up (0 when there is none)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Any:
    return make_settings(
        database_url=database_url,
        secret_key=KEYS[0],
        public_url="http://t.test",
        site_url="https://site.example",
        api_keys=["intake-key"],
        site_keys=["site-key"],
        temporal_address="127.0.0.1:1",
        relay_interval=3600,
    )


@pytest.fixture
async def http(settings: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings, sessionmaker) as client:
        yield client


async def test_metrics_count_stored_events_by_kind_and_human_or_machine(http, sessionmaker) -> None:
    lead = await add_lead(sessionmaker)
    for _ in range(2):
        await http.get(f"/o/{token('open', lead)}.gif", headers=THUNDERBIRD)  # a reader's mail client
    await http.get(f"/o/{token('open', lead)}.gif", headers={"user-agent": "Mozilla/5.0"})  # Apple's prefetch
    await http.get(f"/c/{token('click', lead, 'https://site.example/a')}", headers=NAV)
    await http.get(f"/c/{token('click', lead, 'https://site.example/b')}", headers=SCANNER)
    await http.get(f"/c/{token('click', lead, 'http://t.test/healthz', 'h')}", headers=NAV)  # the honeypot
    page = {"site_key": "site-key", "url": "https://site.example/", "visitor": token("visitor", lead)}
    await http.post("/v", json=page, headers={"user-agent": CHROME, "origin": "https://site.example"})
    await http.get(f"/o/{token('open', lead)[:-3]}.gif", headers=THUNDERBIRD)  # tampered: nothing stored
    await http.get(f"/o/{token('open', lead + 999)}.gif", headers=THUNDERBIRD)  # no such lead: nothing stored
    for _ in range(2):
        await http.post(f"/u/{token('unsubscribe', lead)}", data={"List-Unsubscribe": "One-Click"})

    reply = await http.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    events = "leadloop_engagement_events_total"
    assert value(text, events, kind="open", human="true", rule="mail_client") == 2
    assert value(text, events, kind="open", human="false", rule="apple_privacy_prefetch") == 1
    assert value(text, events, kind="click", human="true", rule="browser") == 1
    assert value(text, events, kind="click", human="false", rule="link_scanner") == 1
    assert value(text, events, kind="click", human="false", rule="honeypot") == 1
    assert value(text, events, kind="visit", human="true", rule="beacon") == 1
    assert value(text, events, kind="unsubscribe", human="true", rule="one_click") == 1  # stored once
    assert sum(value(text, events, kind=k) for k in ("open", "click", "visit", "unsubscribe")) == 8
    assert value(text, "leadloop_unsubscribes_total", repeat="false") == 1
    assert value(text, "leadloop_unsubscribes_total", repeat="true") == 1
    assert value(text, "leadloop_tokens_refused_total", kind="open") == 1
    # requests by route template and status: never the token in the path
    requests = "leadloop_http_requests_total"
    assert value(text, requests, method="GET", route="/o/{token}.gif", status="200") == 5
    assert value(text, requests, method="GET", route="/c/{token}", status="302") == 3
    assert value(text, requests, method="POST", route="/v", status="202") == 1
    assert "maria@example.gr" not in text and token("open", lead)[:12] not in text


async def test_intake_and_unknown_routes_are_counted(http, sessionmaker) -> None:
    lead = {"email": "new@example.com", "first_name": "Ana"}
    assert (await http.post("/leads", json=lead, headers={"x-api-key": "intake-key"})).status_code == 503
    assert (await http.get("/wp-admin/setup.php")).status_code == 404
    text = (await http.get("/metrics")).text
    assert value(text, "leadloop_intakes_total", status="new", workflow="failed") == 1  # Temporal is down
    assert value(text, "leadloop_http_requests_total", route="unmatched", status="404") == 1
    assert "wp-admin" not in text


@pytest.mark.parametrize("given", [None, "Bearer wrong", "Basic bWV0cmljczpzM2NyZXQ=", "s3cret", "Bearer "])
async def test_metrics_need_the_bearer_token_when_one_is_set(make_settings, database_url, sessionmaker, given) -> None:
    guarded = make_settings(database_url=database_url, metrics_token="s3cret", temporal_address="127.0.0.1:1")
    async with running(guarded, sessionmaker) as http:
        refused = await http.get("/metrics", headers={"authorization": given} if given else {})
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "leadloop_" not in refused.text
        allowed = await http.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert allowed.status_code == 200 and "leadloop_http_requests_total" in allowed.text


async def test_metrics_include_the_services_temporal_client(
    time_skipping_env: WorkflowEnvironment, settings, sessionmaker
) -> None:
    """The app's own client reports its requests to Temporal: signals, starts, failures by status code."""
    live = settings.model_copy(update={"temporal_address": client_address(time_skipping_env.client)})
    lead = await add_lead(sessionmaker)
    async with sessionmaker() as session:
        rep = {"email": "rep1@sales.example", "name": "Rep 1", "timezone": "Europe/Athens"}
        roster = {"teams": [{"name": "south", "strategy": "round_robin", "sla": "4h", "reps": [rep]}]}
        await import_roster(session, Roster.model_validate(roster))
        await session.commit()
    app = create_app(live, sessionmaker=sessionmaker)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            await http.get(f"/o/{token('open', lead)}.gif", headers=THUNDERBIRD)
            await app.state.leadloop.signaller.drain()  # the lead has no workflow: the signal finds none
            intake = await http.post("/leads", json={"email": "ana@example.com"}, headers={"x-api-key": "intake-key"})
            # (the test server does not say whether signal-with-start started a run; the dev server does)
            assert intake.status_code == 201
            flow = intake.json()["workflow"]
            reject = await http.post(
                f"/leads/{lead}/reject",
                json={"rep": "rep1@sales.example", "reason": "not_ready"},
                headers={"x-api-key": "intake-key"},
            )
            assert reject.status_code == 409
            text = (await http.get("/metrics")).text
    assert value(text, "leadloop_intakes_total", status="new", workflow=flow) == 1
    assert (
        value(text, "leadloop_rep_decisions_total", action="reject", reason="not_ready", source="api", result="refused")
        == 1
    )
    assert value(text, "temporal_request_total", operation="SignalWithStartWorkflowExecution") == 1
    failed = "temporal_request_failure_total"
    assert value(text, failed, operation="SignalWorkflowExecution", status_code="NOT_FOUND") == 1
    assert value(text, "temporal_request_latency_seconds_count", operation="SignalWithStartWorkflowExecution") == 1
    assert (
        value(text, "temporal_request_latency_seconds_bucket", operation="SignalWithStartWorkflowExecution", le="+Inf")
        == 1
    )


async def test_an_app_given_a_client_serves_leadloops_counters_only(settings, sessionmaker) -> None:
    async with running(settings, sessionmaker, client=object()) as http:
        text = (await http.get("/metrics")).text
    assert "leadloop_http_requests_total" in text and "temporal_request" not in text


async def test_inbound_messages_are_counted_by_kind_and_status_from_the_database(http, sessionmaker) -> None:
    """Messages stored by any channel (another process: here, straight into the database) show at the next scrape;
    an erased one leaves the count; the sender's address never appears."""
    from leadloop.domain.matching import Match
    from leadloop.services.erasure import erase_in_database
    from leadloop.services.inbound import store_inbound

    lead = await add_lead(sessionmaker)
    matched = Match(reason="In-Reply-To", lead_id=lead, outbox_key=f"lead-{lead}.c0.tips", rule="in_reply_to")
    stored = [
        ("human_reply", "signalled", matched, "Μαρία <maria@example.gr>"),
        ("human_reply", "pending", matched, "maria@example.gr"),
        ("hard_bounce", "signalled", matched, "MAILER-DAEMON@mx.example"),
        ("complaint", "unmatched", None, "fbl@yahoo.example"),
        (None, "unmatched", None, "who@nowhere.example"),
    ]
    async with sessionmaker() as session:
        for n, (kind, status, match, sender) in enumerate(stored):
            await store_inbound(
                session,
                source="imap" if n % 2 else "webhook:ses",
                source_key=str(n),
                raw=b"x",
                message_id=f"<i{n}@x>",
                sender=sender,
                match=match,
                kind=kind,
                status=status,
            )
        await session.commit()

    text = (await http.get("/metrics")).text
    gauge = "leadloop_inbound_messages"
    assert value(text, gauge, kind="human_reply", status="signalled") == 1
    assert value(text, gauge, kind="human_reply", status="pending") == 1
    assert value(text, gauge, kind="hard_bounce") == 1 and value(text, gauge, kind="complaint", status="unmatched") == 1
    assert value(text, gauge, kind="not_classified", status="unmatched") == 1
    assert value(text, gauge) == 5
    # every kind and status is a series from the start, at 0 until a message comes
    assert f'{gauge}{{kind="policy_block",status="ignored"}} 0.0' in text
    assert "maria@example.gr" not in text and "yahoo.example" not in text

    async with sessionmaker() as session:
        await erase_in_database(session, None, lead)
        await session.commit()
    text = (await http.get("/metrics")).text
    assert value(text, gauge, kind="human_reply") == 0 and value(text, gauge) == 2  # a gauge: it goes down too


async def test_metrics_are_served_when_the_inbound_count_fails(settings, tmp_path) -> None:
    """A database that cannot be read (here: one without leadloop's tables) still gives the rest of the metrics."""
    from leadloop.infra.db import make_engine, make_sessionmaker

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        async with running(settings, make_sessionmaker(engine)) as http:
            reply = await http.get("/metrics")
    finally:
        await engine.dispose()
    assert reply.status_code == 200 and "leadloop_http_requests_total" in reply.text
    assert "leadloop_inbound_messages{" not in reply.text  # nothing counted: no series made up
