"""Provider webhooks against the real app and database: each provider's signed request accepted, stored once and
suppressing a hard-bounced address; forged, stale, oversized or unreadable requests refused with nothing stored;
the SNS subscription handshake; and a webhook hard bounce reaching the lead's real workflow."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.mail import email_hash, message_id
from leadloop.domain.webhooks import ses
from leadloop.infra.db import InboundMessage, Lead, Outbox, Suppression
from starter.api import create_app
from tests.leadloop.domain.test_webhooks_ses import _certificate as certificate

SENDER = "hello@leadloop.example"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
POSTMARK = ("postmark-hook", "a-long-postmark-password")


SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SNS_CERT = certificate(SNS_KEY)
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC = ec.generate_private_key(ec.SECP256R1())


def _public_der(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class Sns:
    """What the app fetches from SNS, served locally: the signing certificate; every URL visited is recorded."""

    def __init__(self) -> None:
        self.visited: list[str] = []
        self.down = False

    async def __call__(self, url: str) -> bytes:
        self.visited.append(url)
        if self.down:
            raise httpx.ConnectError("SNS unreachable")
        if url == CERT_URL:
            return SNS_CERT
        if url.startswith("https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription"):
            return b"<ConfirmSubscriptionResponse/>"
        raise httpx.HTTPStatusError("404", request=httpx.Request("GET", url), response=httpx.Response(404))


class TemporalDown:
    """A Temporal client whose every signal fails as an outage would: the stored rows must stay pending."""

    def get_workflow_handle_for(self, *args: Any, **kwargs: Any) -> "TemporalDown":
        return self

    async def signal(self, *args: Any, **kwargs: Any) -> None:
        raise RPCError("Temporal is unavailable", RPCStatusCode.UNAVAILABLE, b"")


# ---------------------------------------------------------------- requests as each provider signs them


Request = tuple[bytes, dict[str, str]]


def ses_request(doc: dict[str, Any], key: rsa.RSAPrivateKey = SNS_KEY, cert_url: str = CERT_URL) -> Request:
    fields = {**doc, "SignatureVersion": "2", "SigningCertURL": cert_url}
    signature = key.sign(ses.SnsMessage(fields).string_to_sign(), padding.PKCS1v15(), hashes.SHA256())
    body = json.dumps({**fields, "Signature": base64.b64encode(signature).decode()}).encode()
    return body, {"content-type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": doc["Type"]}


def ses_bounce(address: str, msg_id: str, feedback: str = "0100018c-bounce-1") -> Request:
    notice = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
            "timestamp": datetime.now(UTC).isoformat(),
            "feedbackId": feedback,
        },
        "mail": {"headers": [{"name": "Message-ID", "value": msg_id}], "destination": [address]},
    }
    return ses_request(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Message": json.dumps(notice),
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )


def ses_confirmation(
    kind: str = "SubscriptionConfirmation", url: str = SUBSCRIBE_URL, topic: str = TOPIC, cert_url: str = CERT_URL
) -> Request:
    return ses_request(
        {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": "2336",
            "TopicArn": topic,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": url,
            "Timestamp": datetime.now(UTC).isoformat(),
        },
        cert_url=cert_url,
    )


def sendgrid_request(batch: list[dict[str, Any]], key: ec.EllipticCurvePrivateKey = SENDGRID_KEY) -> Request:
    body = json.dumps(batch).encode()
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "content-type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def sendgrid_event(address: str, msg_id: str, event: str = "bounce", event_id: str = "sg-1") -> dict[str, Any]:
    return {
        "email": address,
        "timestamp": int(time.time()),
        "smtp-id": msg_id,
        "event": event,
        "type": "bounce",
        "status": "5.1.1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "bounce_classification": "Invalid Address",
        "sg_event_id": event_id,
    }


def mailgun_request(address: str, msg_id: str, key: str = MAILGUN_KEY, event_id: str = "mg-1") -> Request:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    doc = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "id": event_id,
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "recipient": address,
            "timestamp": time.time(),
            "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "550 5.1.1 no such user"},
            "message": {"headers": {"message-id": msg_id.strip("<>")}},
        },
    }
    return json.dumps(doc).encode(), {"content-type": "application/json"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def postmark_request(address: str, record_id: int = 4323372036854775807, password: str = POSTMARK[1]) -> Request:
    doc = {
        "RecordType": "Bounce",
        "ID": record_id,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": address,
        "BouncedAt": datetime.now(UTC).isoformat(),
    }
    return json.dumps(doc).encode(), {"content-type": "application/json", "authorization": basic(POSTMARK[0], password)}


def valid(provider: str, address: str, msg_id: str) -> Request:
    """One hard bounce of `address`, signed as the provider signs it (Postmark passes no Message-ID on)."""
    if provider == "ses":
        return ses_bounce(address, msg_id)
    if provider == "sendgrid":
        return sendgrid_request([sendgrid_event(address, msg_id), {**sendgrid_event(address, msg_id, "delivered")}])
    if provider == "mailgun":
        return mailgun_request(address, msg_id)
    return postmark_request(address)


def forged(provider: str, address: str, msg_id: str) -> Request:
    """The same bounce signed with a key that is not the provider's (Postmark: the wrong password)."""
    if provider == "ses":
        doc = json.loads(ses_bounce(address, msg_id)[0])
        return ses_request({k: v for k, v in doc.items() if k not in ("Signature",)}, key=OTHER_RSA)
    if provider == "sendgrid":
        return sendgrid_request([sendgrid_event(address, msg_id)], key=OTHER_EC)
    if provider == "mailgun":
        return mailgun_request(address, msg_id, key="key-someone-else")
    return postmark_request(address, password="not-the-password")


def changed_byte(request: Request) -> Request:
    """The signed body with one byte of the bounced address changed after signing."""
    body, headers = request
    at = body.index(b"@example.com")
    return body[: at - 1] + (b"x" if body[at - 1 : at] != b"x" else b"y") + body[at:], headers


# ---------------------------------------------------------------- the app and its database

PROVIDERS = ["ses", "sendgrid", "mailgun", "postmark"]
SECRETS: dict[str, Any] = {
    "ses_topic_arns": [TOPIC],
    "sendgrid_webhook_public_key": _public_der(SENDGRID_KEY),
    "mailgun_signing_key": MAILGUN_KEY,
    "postmark_webhook_user": POSTMARK[0],
    "postmark_webhook_password": POSTMARK[1],
}


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Any:
    return make_settings(database_url=database_url, public_url="http://t.test", relay_interval=3600, **SECRETS)


@pytest.fixture
def sns() -> Sns:
    return Sns()


@asynccontextmanager
async def running(settings: Any, sessionmaker: Any, fetch: Any, client: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, sessionmaker=sessionmaker, client=client or TemporalDown(), fetch=fetch)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test") as http:
            yield http
        await app.state.leadloop.inbound.drain()


@pytest.fixture
async def http(settings: Any, sessionmaker: Any, sns: Sns) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings, sessionmaker, sns) as client:
        yield client


async def add_lead(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> tuple[int, str]:
    """A lead whose welcome email went out an hour ago; its id and the send's Message-ID."""
    async with sessionmaker() as session:
        lead = Lead(email=email, first_name="Anna", attributes={})
        session.add(lead)
        await session.flush()
        key = f"lead-{lead.id}.c0.welcome"
        msg_id = message_id(key, SENDER)
        sent = datetime.now(UTC) - timedelta(hours=1)
        session.add(
            Outbox(
                key=key,
                lead_id=lead.id,
                cycle=0,
                step_id="welcome",
                cadence="welcome",
                status="sent",
                message_id=msg_id,
                attempts=1,
                created_at=sent,
                sent_at=sent,
            )
        )
        await session.commit()
        return lead.id, msg_id


async def inbound(sessionmaker: Any) -> list[InboundMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


async def suppressed(sessionmaker: Any) -> dict[str, str]:
    async with sessionmaker() as session:
        return {row.email_hash: row.reason for row in (await session.execute(select(Suppression))).scalars()}


async def post(http: httpx.AsyncClient, provider: str, request: Request) -> httpx.Response:
    body, headers = request
    return await http.post(f"/webhooks/{provider}", content=body, headers=headers)


async def nothing_stored(sessionmaker: Any) -> None:
    assert await inbound(sessionmaker) == []
    assert await suppressed(sessionmaker) == {}


# ---------------------------------------------------------------- accepted, stored once, suppressing


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_signed_hard_bounce_is_stored_once_and_suppresses_the_address(
    http: httpx.AsyncClient, sessionmaker: Any, provider: str
) -> None:
    lead_id, msg_id = await add_lead(sessionmaker, "anna@example.com")
    request = valid(provider, "anna@example.com", msg_id)
    answer = await post(http, provider, request)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": 1, "stored": 1, "note": None}
    [row] = await inbound(sessionmaker)
    assert (row.source, row.kind, row.lead_id, row.outbox_key) == (
        f"webhook:{provider}",
        "hard_bounce",
        lead_id,
        f"lead-{lead_id}.c0.welcome",
    )
    assert row.status == "pending"  # Temporal is down: kept for the relay, not lost
    assert row.evidence["provider"] == provider and row.evidence["status"] == "5.1.1"
    assert row.raw and b"anna@example.com" in row.raw
    assert row.message_id is None  # the send's Message-ID is evidence, not the row's own
    if provider != "postmark":  # Postmark passes no Message-ID on: matched by the one lead with the address
        assert row.evidence["answers"] == msg_id
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}

    # the provider retries: Mailgun signs each delivery afresh (the same signed request again is refused below)
    retry = mailgun_request("anna@example.com", msg_id) if provider == "mailgun" else request
    again = await post(http, provider, retry)
    assert again.status_code == 200 and again.json()["stored"] == 0
    assert [r.id for r in await inbound(sessionmaker)] == [row.id]
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}
    metrics = (await http.get("/metrics")).text
    for result in ("new", "repeat"):
        labels = f'kind="hard_bounce",provider="{provider}",result="{result}"'
        assert f"leadloop_webhook_events_total{{{labels}}} 1.0" in metrics


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_forged_or_altered_request_is_refused_and_nothing_is_stored(
    http: httpx.AsyncClient, sessionmaker: Any, provider: str
) -> None:
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    refused = 401 if provider == "postmark" else 403
    answer = await post(http, provider, forged(provider, "anna@example.com", msg_id))
    assert answer.status_code == refused, answer.text
    assert answer.json()["detail"]
    problem = "unauthenticated" if provider == "postmark" else "refused"
    refusals = f'leadloop_webhooks_refused_total{{problem="{problem}",provider="{provider}"}} 1.0'
    assert refusals in (await http.get("/metrics")).text
    if provider in ("ses", "sendgrid"):  # the signature covers the body (Mailgun's, Postmark's do not: see below)
        altered = await post(http, provider, changed_byte(valid(provider, "anna@example.com", msg_id)))
        assert altered.status_code == 403 and "signature" in altered.json()["detail"]
    await nothing_stored(sessionmaker)


async def test_a_mailgun_signature_copied_onto_another_body_is_refused(
    http: httpx.AsyncClient, sessionmaker: Any
) -> None:
    anna, msg_id = await add_lead(sessionmaker, "anna@example.com")
    await add_lead(sessionmaker, "bob@example.com")
    body, headers = mailgun_request("anna@example.com", msg_id)
    assert (await post(http, "mailgun", (body, headers))).status_code == 200
    # Mailgun signs timestamp and token, not the body: a captured request re-sent with Bob's address instead
    copy = await post(http, "mailgun", (body.replace(b"anna@example.com", b"bob@example.com"), headers))
    assert copy.status_code == 403 and "used before" in copy.json()["detail"]
    assert (await post(http, "mailgun", (body, headers))).status_code == 403  # the very same request, replayed
    assert [row.lead_id for row in await inbound(sessionmaker)] == [anna]
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}


async def test_postmark_without_credentials_gets_a_basic_challenge(http: httpx.AsyncClient, sessionmaker: Any) -> None:
    body, _ = postmark_request("anna@example.com")
    answer = await http.post("/webhooks/postmark", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Basic ")
    assert "Authorization" in answer.json()["detail"]
    await nothing_stored(sessionmaker)


async def test_a_stale_signature_is_refused_as_a_replay(http: httpx.AsyncClient, sessionmaker: Any) -> None:
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    body, headers = sendgrid_request([sendgrid_event("anna@example.com", msg_id)])
    old = str(int(time.time()) - 3600)
    signature = SENDGRID_KEY.sign(old.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers |= {
        "X-Twilio-Email-Event-Webhook-Timestamp": old,
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
    }
    answer = await post(http, "sendgrid", (body, headers))
    assert answer.status_code == 403 and "replay" in answer.json()["detail"]
    await nothing_stored(sessionmaker)


# ---------------------------------------------------------------- bad input: a clear 4xx, nothing stored


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_body_that_is_not_json_is_a_400(http: httpx.AsyncClient, sessionmaker: Any, provider: str) -> None:
    _, headers = valid(provider, "anna@example.com", "<x@leadloop.example>")
    answer = await http.post(f"/webhooks/{provider}", content=b"{not json", headers=headers)
    assert answer.status_code == 400 and "not JSON" in answer.json()["detail"]
    await nothing_stored(sessionmaker)


@pytest.mark.parametrize("missing", [f"X-Twilio-Email-Event-Webhook-{name}" for name in ("Signature", "Timestamp")])
async def test_a_sendgrid_request_without_its_signature_headers_is_a_400(
    http: httpx.AsyncClient, sessionmaker: Any, missing: str
) -> None:
    body, headers = valid("sendgrid", "anna@example.com", "<x@leadloop.example>")
    kept = {name: value for name, value in headers.items() if name != missing}
    answer = await http.post("/webhooks/sendgrid", content=body, headers=kept)
    assert answer.status_code == 400 and missing in answer.json()["detail"]
    await nothing_stored(sessionmaker)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_body_larger_than_a_provider_sends_is_a_413(
    http: httpx.AsyncClient, sessionmaker: Any, provider: str
) -> None:
    _, headers = valid(provider, "anna@example.com", "<x@leadloop.example>")
    body = b"[" + b" " * (4 * 1024 * 1024) + b"]"
    answer = await http.post(f"/webhooks/{provider}", content=body, headers=headers)
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]
    await nothing_stored(sessionmaker)


async def test_a_signed_body_leadloop_cannot_read_is_a_400(http: httpx.AsyncClient, sessionmaker: Any) -> None:
    answer = await post(http, "sendgrid", sendgrid_request([{"event": "bounce", "type": "bounce"}]))  # no email, id
    assert answer.status_code == 400 and "missing" in answer.json()["detail"]
    await nothing_stored(sessionmaker)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_provider_without_its_secret_set_is_a_503_naming_the_setting(
    make_settings: Any, database_url: str, sessionmaker: Any, sns: Sns, provider: str
) -> None:
    bare = make_settings(database_url=database_url, relay_interval=3600)
    async with running(bare, sessionmaker, sns) as http:
        answer = await post(http, provider, valid(provider, "anna@example.com", "<x@leadloop.example>"))
    assert answer.status_code == 503 and "LEADLOOP_" in answer.json()["detail"]
    await nothing_stored(sessionmaker)
    assert sns.visited == []


# ---------------------------------------------------------------- matching: never a guess


async def test_a_bounce_for_an_address_no_lead_has_is_kept_unmatched_and_suppresses_nothing(
    http: httpx.AsyncClient, sessionmaker: Any
) -> None:
    await add_lead(sessionmaker, "anna@example.com")
    answer = await post(http, "postmark", postmark_request("stranger@example.com"))
    assert answer.status_code == 200 and answer.json()["stored"] == 1
    [row] = await inbound(sessionmaker)
    assert (row.lead_id, row.status, row.kind) == (None, "unmatched", "hard_bounce")
    assert "no lead has the recipient's address" in (row.match_reason or "")
    assert row.sender_hash == email_hash("stranger@example.com")  # `leadloop forget` finds it
    assert await suppressed(sessionmaker) == {}


async def test_an_address_without_a_recent_send_is_not_matched(http: httpx.AsyncClient, sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        session.add(Lead(email="anna@example.com", first_name="Anna", attributes={}))  # never mailed
        await session.commit()
    assert (await post(http, "postmark", postmark_request("anna@example.com"))).status_code == 200
    [row] = await inbound(sessionmaker)
    assert row.status == "unmatched" and "no email went to it" in (row.match_reason or "")
    assert await suppressed(sessionmaker) == {}


async def test_a_sendgrid_batch_keeps_each_event_apart(http: httpx.AsyncClient, sessionmaker: Any) -> None:
    anna, anna_msg = await add_lead(sessionmaker, "anna@example.com")
    bob, bob_msg = await add_lead(sessionmaker, "bob@example.com")
    batch = [
        sendgrid_event("anna@example.com", anna_msg, event_id="sg-a"),
        sendgrid_event("bob@example.com", bob_msg, event="spamreport", event_id="sg-b"),
        sendgrid_event("bob@example.com", bob_msg, event="open", event_id="sg-c"),
    ]
    answer = await post(http, "sendgrid", sendgrid_request(batch))
    assert answer.json() == {"events": 2, "stored": 2, "note": None}
    rows = {row.source_key: row for row in await inbound(sessionmaker)}
    assert (rows["sg-a"].lead_id, rows["sg-a"].kind) == (anna, "hard_bounce")
    assert (rows["sg-b"].lead_id, rows["sg-b"].kind) == (bob, "complaint")
    assert rows["sg-a"].raw and b"bob@" not in rows["sg-a"].raw  # one person's row keeps no one else's address
    assert await suppressed(sessionmaker) == {
        email_hash("anna@example.com"): "hard_bounce",
        email_hash("bob@example.com"): "complaint",
    }


# ---------------------------------------------------------------- SNS: certificates and the handshake


async def test_sns_subscription_is_confirmed_by_visiting_its_link_and_stores_nothing(
    http: httpx.AsyncClient, sessionmaker: Any, sns: Sns
) -> None:
    answer = await post(http, "ses", ses_confirmation())
    assert answer.status_code == 200
    assert answer.json() == {"events": 0, "stored": 0, "note": f"subscription to {TOPIC} confirmed"}
    assert sns.visited == [CERT_URL, SUBSCRIBE_URL]
    unsubscribed = await post(http, "ses", ses_confirmation("UnsubscribeConfirmation"))
    assert unsubscribed.status_code == 200 and "acknowledged" in unsubscribed.json()["note"]
    assert sns.visited == [CERT_URL, SUBSCRIBE_URL]  # the certificate was kept; an unsubscribe visits nothing
    await nothing_stored(sessionmaker)


@pytest.mark.parametrize(
    "request_of",
    [
        lambda: ses_confirmation(url="https://evil.example/?Action=ConfirmSubscription"),
        lambda: ses_confirmation(topic="arn:aws:sns:eu-west-1:999999999999:not-ours"),
        lambda: ses_confirmation(cert_url="https://evil.example/SimpleNotificationService-0.pem"),
        lambda: ses_confirmation(cert_url="https://sns.eu-west-1.amazonaws.com/?Action=Publish&evil=1"),
    ],
    ids=["subscribe-url-off-sns", "topic-not-allowed", "certificate-off-sns", "certificate-not-a-certificate"],
)
async def test_sns_visits_no_link_off_sns_and_takes_no_other_topic(
    http: httpx.AsyncClient, sessionmaker: Any, sns: Sns, request_of: Callable[[], Request]
) -> None:
    answer = await post(http, "ses", request_of())
    assert answer.status_code == 403
    assert sns.visited in ([], [CERT_URL])  # the certificate only, when the message got as far as its signature
    await nothing_stored(sessionmaker)


async def test_sns_certificate_unreachable_is_a_503_and_nothing_is_kept(
    http: httpx.AsyncClient, sessionmaker: Any, sns: Sns
) -> None:
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    sns.down = True
    answer = await post(http, "ses", ses_bounce("anna@example.com", msg_id))
    assert answer.status_code == 503 and "certificate" in answer.json()["detail"]
    await nothing_stored(sessionmaker)
    sns.down = False  # SNS retries: the certificate is fetched now (a failure was not cached)
    assert (await post(http, "ses", ses_bounce("anna@example.com", msg_id))).status_code == 200
    assert len(await inbound(sessionmaker)) == 1


async def test_a_pending_webhook_event_is_signalled_by_the_relay_once_temporal_is_back(
    settings: Any, sessionmaker: Any, sns: Sns
) -> None:
    _, msg_id = await add_lead(sessionmaker, "anna@example.com")
    async with running(settings, sessionmaker, sns) as http:  # Temporal down
        assert (await post(http, "mailgun", mailgun_request("anna@example.com", msg_id))).status_code == 200
    [row] = await inbound(sessionmaker)
    assert row.status == "pending"

    signals: list[Any] = []

    class TemporalBack(TemporalDown):
        async def signal(self, signal: Any, arg: Any, *args: Any, **kwargs: Any) -> None:
            signals.append(arg)

    async with running(settings, sessionmaker, sns, client=TemporalBack()):
        for _ in range(100):  # the relay's first round runs as the app starts
            if (await inbound(sessionmaker))[0].status == "signalled":
                break
            await asyncio.sleep(0.02)
    [row] = await inbound(sessionmaker)
    assert row.status == "signalled"
    assert [(s.id, s.kind) for s in signals] == [(f"inbound-{row.id}", "hard_bounce")]


async def test_a_signed_batch_with_half_characters_is_stored_not_a_crash(
    http: httpx.AsyncClient, sessionmaker: Any
) -> None:
    anna, msg_id = await add_lead(sessionmaker, "anna@example.com")
    event = sendgrid_event("anna@example.com", msg_id) | {"reason": "550 5.1.1 unknown \udc00 user\x00"}
    body, headers = sendgrid_request([event])
    assert b"\\udc00" in body  # JSON carries the half character as an escape
    answer = await post(http, "sendgrid", (body, headers))
    assert answer.status_code == 200 and answer.json()["stored"] == 1
    [row] = await inbound(sessionmaker)
    assert row.lead_id == anna and row.evidence["diagnostic"] == "550 5.1.1 unknown   user "
    assert row.raw is not None and b"\\udc00" in row.raw
