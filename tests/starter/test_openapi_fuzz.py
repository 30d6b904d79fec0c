"""Schemathesis against the real app's OpenAPI: whatever arrives, no 5xx, and every answer is documented
(status, content type, body, headers). A real database; a Temporal that starts workflows and has none running."""

import base64
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowExecutionCount
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.routing import Roster
from leadloop.domain.tokens import Signer, Token
from leadloop.infra.db import Assignment, Lead, Outbox, Rep
from leadloop.services.roster import import_roster
from starter.api import create_app

SECRET, API_KEY, SITE_KEY, CODEC_TOKEN = "fuzz-secret" * 3, "fuzz-api-key", "fuzz-site-key", "fuzz-codec-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: Every provider's webhook configured, so what the fuzzing sends meets the verification, not the missing secret.
WEBHOOK_SECRETS = {
    "ses_topic_arns": ["arn:aws:sns:eu-west-1:123456789012:fuzz"],
    "sendgrid_webhook_public_key": base64.b64encode(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode(),
    "mailgun_signing_key": "fuzz-mailgun-key",
    "postmark_webhook_user": "fuzz",
    "postmark_webhook_password": "fuzz-postmark-password",
}
#: Examples per operation and variant, so the file stays within about a minute on both databases.
EXAMPLES = {"with keys": 10, "invalid": 8, "anything": 5}
#: Operations that never touch the database: fuzzed on SQLite only.
NO_DATABASE = {"/codec/decode", "/codec/encode", "/metrics", "/healthz", "/beacon.js"}


class NoWorkflows:
    """A Temporal client that takes every start and knows no running workflow: signals and updates find none."""

    def get_workflow_handle(self, *args: Any, **kwargs: Any) -> "NoWorkflows":
        return self

    get_workflow_handle_for = get_workflow_handle

    async def start_workflow(self, *args: Any, **kwargs: Any) -> "NoWorkflows":
        return self

    async def _not_found(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")

    signal = execute_update = query = describe = _not_found

    async def count_workflows(self, *args: Any, **kwargs: Any) -> WorkflowExecutionCount:
        return WorkflowExecutionCount(count=0, groups=[])

    async def list_workflows(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        for _ in ():
            yield _


async def seed(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """A lead with a sent email, a rep holding it: real links, so the fuzzing gets past the token checks."""
    rep = {"email": "rep1@sales.example", "name": "Rep 1", "timezone": "Europe/Athens"}
    roster = {"teams": [{"name": "south", "strategy": "round_robin", "sla": "4h", "reps": [rep]}]}
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate(roster))
        lead = Lead(email="maria@example.gr", first_name="Μαρία", attributes={})
        session.add(lead)
        await session.flush()
        rep_id = (await session.execute(select(Rep.id))).scalar_one()
        outbox = f"lead-{lead.id}.c0.welcome"
        session.add(
            Outbox(
                key=outbox,
                lead_id=lead.id,
                cycle=0,
                step_id="welcome",
                cadence="welcome",
                status="sent",
                message_id="<fuzz@x>",
                attempts=1,
            )
        )
        session.add(
            Assignment(
                key=f"lead-{lead.id}.c0.a1",
                lead_id=lead.id,
                cycle=0,
                rep_id=rep_id,
                team="south",
                rule="fuzz",
                status="assigned",
                score=80,
            )
        )
        await session.commit()
    signer, now = Signer([SECRET]), int(time.time())

    def sign(kind: Any, key: str = outbox, url: str = "", extra: str = "") -> str:
        return signer.sign(Token(kind=kind, lead_id=lead.id, key=key, issued_at=now, url=url, extra=extra))

    return {
        "lead_id": lead.id,
        "tokens": {
            "/o/{token}.gif": sign("open"),
            "/c/{token}": sign("click", url="https://site.example/pricing"),
            "/u/{token}": sign("unsubscribe"),
            "/r/{token}": sign("rep", key=f"lead-{lead.id}.c0.a1", extra="reject"),
        },
    }


def fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], path: dict[str, Any] | None, examples: int
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path)

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


async def test_every_operation_answers_as_documented_whatever_it_gets(
    make_settings: Any, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    known = await seed(sessionmaker)
    settings = make_settings(
        database_url=database_url,
        demo=False,
        secret_key=SECRET,
        api_keys=[API_KEY],
        site_keys=[SITE_KEY],
        public_url="http://testserver",
        site_url="https://site.example",
        relay_interval=3600,
        encryption_keys={"k1": base64.b64encode(b"k" * 32).decode()},
        codec_token=CODEC_TOKEN,
        rate_limit_per_minute=0,  # one client sends everything here; test_security floods on purpose
        **WEBHOOK_SECRETS,  # unset, a provider's webhook is a 503 by design (it retries); set, verification is fuzzed
    )
    app = create_app(settings, client=NoWorkflows())  # type: ignore[arg-type]
    # the app runs in Schemathesis's own event loop thread, with its own engine on the same database
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    credentials = {"x-api-key": API_KEY, "x-leadloop-site-key": SITE_KEY, "authorization": f"Bearer {CODEC_TOKEN}"}
    on_sqlite = "sqlite" in database_url
    failures: list[str] = []
    operations = 0
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            if not on_sqlite and operation.path in NO_DATABASE:
                continue  # the same on every database: once is enough
            known_path: dict[str, Any] | None = None
            if "{lead_id}" in operation.path:
                known_path = {"lead_id": known["lead_id"]}
            elif operation.path in known["tokens"]:
                known_path = {"token": known["tokens"][operation.path]}
            variants = [
                ("with keys", GenerationMode.POSITIVE, credentials, known_path),  # past the checks, to the work
                ("invalid", GenerationMode.NEGATIVE, credentials, None),  # schema-violating input with the keys
            ]
            if on_sqlite:  # random keys and tokens: refused before any query, whatever the database
                variants.append(("anything", GenerationMode.POSITIVE, {}, None))
            for name, mode, headers, path in variants:
                if mode == GenerationMode.NEGATIVE and not (operation.body or "{lead_id}" in operation.path):
                    continue  # a path of free-form strings and no body: nothing there can be invalid
                try:
                    fuzz(operation, mode, headers, path, EXAMPLES[name])
                except Exception as exc:  # every operation gets its turn; all failures are reported together
                    failures.append(f"{operation.label} ({name}):\n{''.join(traceback.format_exception(exc))[-4000:]}")
    finally:
        asgi.shutdown_lifespans()
    assert operations >= 17
    assert not failures, "\n\n".join(failures)


@pytest.fixture(autouse=True)
def _fresh_asgi_lifespans() -> Any:
    """Each test's app gets its own lifespan; none outlives the test (the engine and relay close with it)."""
    yield
    asgi.shutdown_lifespans()
