"""Postmark's webhooks: Basic credentials on the URL, the documented bounce and spam complaint payloads."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from leadloop.domain.webhooks import WebhookRefused, postmark

USER, PASSWORD = "postmark", "s3cret-pässword"
BOUNCE: dict[str, Any] = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
    "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2026-12-01T05:58:10.2735393-04:00",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
}
COMPLAINT: dict[str, Any] = {
    **BOUNCE,
    "RecordType": "SpamComplaint",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Description": "",
    "Details": "Test spam complaint details",
    "BouncedAt": "2026-12-01T05:33:54.9070259Z",
    "Content": "<Abuse report dump>",
}


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_right_credentials_are_accepted() -> None:
    postmark.verify(_basic(USER, PASSWORD), USER, PASSWORD)
    postmark.verify({"authorization": _basic(USER, PASSWORD)["Authorization"]}, USER, PASSWORD)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (_basic(USER, "wrong"), "wrong Basic credentials"),
        (_basic("someone", PASSWORD), "wrong Basic credentials"),
        (_basic(USER, PASSWORD + "x"), "wrong Basic credentials"),
        ({"Authorization": "Basic " + base64.b64encode(USER.encode()).decode()}, "wrong Basic credentials"),
        ({"Authorization": "Bearer abc"}, "not Basic"),
        ({"Authorization": "Basic ***"}, "not base64"),
        ({}, "missing Authorization"),
    ],
)
def test_wrong_or_missing_credentials_are_refused(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        postmark.verify(headers, USER, PASSWORD)


def test_unset_credentials_refuse_everything() -> None:
    with pytest.raises(WebhookRefused, match="not both set"):
        postmark.verify(_basic("", ""), "", "")


def test_a_hard_bounce_is_read() -> None:
    [event] = postmark.events(json.dumps(BOUNCE).encode())
    assert event.provider == "postmark"
    assert event.kind == "hard_bounce"
    assert event.event_id == "Bounce/4323372036854775807"
    assert event.recipient == "john@example.com"
    assert event.message_id is None  # MessageID is Postmark's own id, not leadloop's Message-ID
    assert event.status_code == "5.1.1"
    assert event.occurred_at == datetime(2026, 12, 1, 9, 58, 10, 273539, tzinfo=UTC)
    assert event.raw_type == "Bounce/HardBounce"


def test_the_original_message_id_is_kept_when_the_payload_has_the_header() -> None:
    body = {**BOUNCE, "Headers": [{"Name": "Message-ID", "Value": "<lead-7.c0.welcome@leadloop.example>"}]}
    [event] = postmark.events(json.dumps(body).encode())
    assert event.message_id == "<lead-7.c0.welcome@leadloop.example>"


def test_a_spam_complaint_is_read() -> None:
    [event] = postmark.events(json.dumps(COMPLAINT).encode())
    assert (event.kind, event.event_id, event.raw_type) == (
        "complaint",
        "SpamComplaint/42",
        "SpamComplaint/SpamComplaint",
    )
    assert event.diagnostic == "Test spam complaint details"


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("HardBounce", "hard_bounce"),
        ("BadEmailAddress", "hard_bounce"),
        ("Transient", "soft_bounce"),
        ("SoftBounce", "soft_bounce"),
        ("DnsError", "soft_bounce"),
        ("Blocked", "policy_block"),
        ("SpamNotification", "policy_block"),
        ("VirusNotification", "policy_block"),
        ("DMARCPolicy", "policy_block"),
        ("SpamComplaint", "complaint"),
        ("Unsubscribe", "unsubscribe_request"),
        ("Subscribe", None),
        ("AutoResponder", None),
        ("AddressChange", None),
        ("OpenRelayTest", None),
        ("Unknown", None),
        ("ChallengeVerification", None),
        ("ManuallyDeactivated", None),
        ("Unconfirmed", None),
        ("SMTPApiError", None),
        ("InboundError", None),
        ("TemplateRenderingFailed", None),
    ],
)
def test_bounce_kinds(bounce_type: str, kind: str | None) -> None:
    found = postmark.events(json.dumps({**BOUNCE, "Type": bounce_type}).encode())
    assert [e.kind for e in found] == ([kind] if kind else [])


@pytest.mark.parametrize("record_type", ["Delivery", "Open", "Click", "SubscriptionChange"])
def test_other_records_give_no_event(record_type: str) -> None:
    assert postmark.events(json.dumps({"RecordType": record_type, "MessageID": "x"}).encode()) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<xml/>", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({**BOUNCE, "ID": None}).encode(), "'ID' is missing"),
        (json.dumps({**BOUNCE, "ID": True}).encode(), "'ID' is missing"),
        (json.dumps({**BOUNCE, "Email": ""}).encode(), "'Email' is missing"),
        (json.dumps({**BOUNCE, "Type": 1}).encode(), "'Type' is missing"),
        (json.dumps({**BOUNCE, "BouncedAt": "yesterday"}).encode(), "not ISO 8601"),
    ],
)
def test_malformed_payloads_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        postmark.events(body)
