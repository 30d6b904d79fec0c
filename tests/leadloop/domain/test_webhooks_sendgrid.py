"""SendGrid's signed Event Webhook: batches signed with a locally generated P-256 key, the documented events."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from leadloop.domain.webhooks import WebhookRefused, sendgrid

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def _public(key: Any) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


PUBLIC = _public(KEY)


def _signed(
    batch: list[dict[str, Any]], at: datetime = NOW, key: ec.EllipticCurvePrivateKey = KEY
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(batch).encode()
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return body, headers


def _event(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": "jane@example.com",
        "timestamp": 1796104800,
        "smtp-id": "<lead-7.c0.welcome@leadloop.example>",
        "event": event,
        "category": ["welcome"],
        "sg_event_id": f"sg-{event}-{len(fields)}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


BOUNCE = _event(
    "bounce",
    type="bounce",
    status="5.1.1",
    reason="550 5.1.1 The email account that you tried to reach does not exist.",
    bounce_classification="Invalid Address",
)


def test_a_signed_batch_is_accepted_and_read() -> None:
    body, headers = _signed([_event("processed"), BOUNCE, _event("delivered", response="250 OK")])
    sendgrid.verify(body, headers, PUBLIC, NOW)
    [event] = sendgrid.events(body)
    assert event.provider == "sendgrid"
    assert event.kind == "hard_bounce"
    assert event.event_id == BOUNCE["sg_event_id"]
    assert event.recipient == "jane@example.com"
    assert event.message_id == "<lead-7.c0.welcome@leadloop.example>"
    assert event.status_code == "5.1.1"
    assert event.diagnostic.startswith("550 5.1.1")
    assert event.occurred_at == datetime.fromtimestamp(1796104800, UTC)
    assert event.raw_type == "bounce/bounce"


def test_headers_are_found_whatever_their_case() -> None:
    body, headers = _signed([BOUNCE])
    sendgrid.verify(body, {k.lower(): v for k, v in headers.items()}, PUBLIC, NOW)


def test_a_pem_public_key_is_accepted_too() -> None:
    body, headers = _signed([BOUNCE])
    pem = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    sendgrid.verify(body, headers, pem.decode(), NOW)


def test_one_changed_byte_is_refused() -> None:
    body, headers = _signed([BOUNCE])
    with pytest.raises(WebhookRefused, match="signature does not match"):
        sendgrid.verify(body.replace(b"jane@", b"jake@"), headers, PUBLIC, NOW)


def test_a_changed_timestamp_is_refused() -> None:
    body, headers = _signed([BOUNCE])
    headers["X-Twilio-Email-Event-Webhook-Timestamp"] = str(int(NOW.timestamp()) + 1)
    with pytest.raises(WebhookRefused, match="signature does not match"):
        sendgrid.verify(body, headers, PUBLIC, NOW)


def test_a_wrong_key_is_refused() -> None:
    body, headers = _signed([BOUNCE], key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(WebhookRefused, match="signature does not match"):
        sendgrid.verify(body, headers, PUBLIC, NOW)


@pytest.mark.parametrize("missing", [sendgrid.SIGNATURE_HEADER, sendgrid.TIMESTAMP_HEADER])
def test_a_missing_header_is_refused(missing: str) -> None:
    body, headers = _signed([BOUNCE])
    del headers[missing]
    with pytest.raises(WebhookRefused, match=f"missing {missing}"):
        sendgrid.verify(body, headers, PUBLIC, NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=11), timedelta(minutes=-11)])
def test_a_timestamp_outside_ten_minutes_is_refused(offset: timedelta) -> None:
    body, headers = _signed([BOUNCE], at=NOW - offset)
    with pytest.raises(WebhookRefused, match="signed"):
        sendgrid.verify(body, headers, PUBLIC, NOW)


def test_a_garbled_signature_or_timestamp_is_refused() -> None:
    body, headers = _signed([BOUNCE])
    with pytest.raises(WebhookRefused, match="not base64"):
        sendgrid.verify(body, {**headers, sendgrid.SIGNATURE_HEADER: "%%%"}, PUBLIC, NOW)
    with pytest.raises(WebhookRefused, match="not a Unix time"):
        sendgrid.verify(body, {**headers, sendgrid.TIMESTAMP_HEADER: "yesterday"}, PUBLIC, NOW)


@pytest.mark.parametrize(
    "key",
    [
        "not base64!",
        base64.b64encode(b"not der").decode(),
        _public(ec.generate_private_key(ec.SECP384R1())),
        _public(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ],
)
def test_a_public_key_that_is_not_p256_is_refused(key: str) -> None:
    body, headers = _signed([BOUNCE])
    with pytest.raises(WebhookRefused, match="LEADLOOP_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        sendgrid.verify(body, headers, key, NOW)
    with pytest.raises(ValueError):
        sendgrid.load_public_key(key)


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (BOUNCE, "hard_bounce"),
        (_event("bounce", type="bounce", bounce_classification="Reputation", status="5.7.1"), "policy_block"),
        (_event("bounce", type="bounce", bounce_classification="Mailbox Unavailable", status="5.2.2"), "soft_bounce"),
        (_event("bounce", type="blocked", bounce_classification="Content", status="5.7.1"), "policy_block"),
        (_event("bounce", type="blocked", bounce_classification="Unclassified", status="4.0.0"), "policy_block"),
        (_event("bounce", type="blocked", bounce_classification="Technical", status="4.4.1"), "soft_bounce"),
        (_event("bounce", type="blocked", bounce_classification="Frequency or Volume Too High"), "soft_bounce"),
        (_event("dropped", reason="Bounced Address"), "hard_bounce"),
        (_event("dropped", reason="Invalid"), "hard_bounce"),
        (_event("dropped", reason="Spam Reporting Address"), "complaint"),
        (_event("dropped", reason="Unsubscribed Address"), "unsubscribe_request"),
        (_event("dropped", reason="Spam Content (if spam checker app enabled)"), None),
        (_event("spamreport"), "complaint"),
        (_event("unsubscribe"), "unsubscribe_request"),
        (_event("group_unsubscribe", asm_group_id=1), "unsubscribe_request"),
        (_event("processed"), None),
        (_event("deferred", response="400 try again later", attempt="5"), None),
        (_event("delivered", response="250 OK"), None),
        (_event("open", useragent="Mozilla/5.0", ip="255.255.255.255"), None),
        (_event("click", url="http://www.sendgrid.com/"), None),
        (_event("group_resubscribe", asm_group_id=1), None),
    ],
)
def test_event_kinds(event: dict[str, Any], kind: str | None) -> None:
    found = sendgrid.events(json.dumps([event]).encode())
    assert [e.kind for e in found] == ([kind] if kind else [])


def test_an_smtp_id_that_is_not_a_message_id_is_dropped() -> None:
    [event] = sendgrid.events(json.dumps([{**BOUNCE, "smtp-id": "garbage"}]).encode())
    assert event.message_id is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[{", "not JSON"),
        (b'{"event": "bounce"}', "not a JSON array"),
        (b"[1, 2]", "not a JSON array"),
        (json.dumps([{**BOUNCE, "sg_event_id": None}]).encode(), "'sg_event_id' is missing"),
        (json.dumps([{k: v for k, v in BOUNCE.items() if k != "email"}]).encode(), "'email' is missing"),
        (json.dumps([{**BOUNCE, "timestamp": "soon"}]).encode(), "not a Unix time"),
    ],
)
def test_malformed_batches_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        sendgrid.events(body)
