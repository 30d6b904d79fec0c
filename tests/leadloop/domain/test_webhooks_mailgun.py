"""Mailgun's webhooks: requests signed with a local signing key, the documented event-data."""

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadloop.domain.webhooks import WebhookRefused, mailgun

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
KEY = "key-0123456789abcdef0123456789abcdef"
TOKEN = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"


def _data(event: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "G9Bn5sl1TC6nu79C8C0bwg",
        "timestamp": 1796104800.529709,
        "log-level": "error",
        "event": event,
        "recipient": "alice@example.com",
        "message": {
            "headers": {
                "to": "Alice <alice@example.com>",
                "message-id": "lead-7.c0.welcome@leadloop.example",
                "from": "Leadloop <hello@leadloop.example>",
                "subject": "Welcome",
            },
            "size": 111,
        },
        **fields,
    }


FAILED = _data(
    "failed",
    severity="permanent",
    reason="bounce",
    **{
        "delivery-status": {
            "attempt-no": 1,
            "message": "",
            "code": 550,
            "enhanced-code": "5.1.1",
            "description": "550 5.1.1 The email account that you tried to reach does not exist.",
            "session-seconds": 0.0,
        }
    },
)


def _signed(data: dict[str, Any], at: datetime = NOW, key: str = KEY, as_int: bool = False) -> bytes:
    timestamp = str(int(at.timestamp()))
    signature = hmac.new(key.encode(), (timestamp + TOKEN).encode(), hashlib.sha256).hexdigest()
    signed = {"timestamp": int(timestamp) if as_int else timestamp, "token": TOKEN, "signature": signature}
    return json.dumps({"signature": signed, "event-data": data}).encode()


@pytest.mark.parametrize("as_int", [False, True])
def test_a_signed_failure_is_accepted_and_read(as_int: bool) -> None:
    body = _signed(FAILED, as_int=as_int)
    mailgun.verify(body, KEY, NOW)
    [event] = mailgun.events(body)
    assert event.provider == "mailgun"
    assert event.kind == "hard_bounce"
    assert event.event_id == "G9Bn5sl1TC6nu79C8C0bwg"
    assert event.recipient == "alice@example.com"
    assert event.message_id == "<lead-7.c0.welcome@leadloop.example>"
    assert event.status_code == "5.1.1"
    assert event.diagnostic.startswith("550 5.1.1")
    assert event.occurred_at == datetime.fromtimestamp(1796104800.529709, UTC)
    assert event.raw_type == "failed/permanent/bounce"


def test_a_changed_signed_field_is_refused() -> None:
    doc = json.loads(_signed(FAILED))
    doc["signature"]["token"] = TOKEN[:-1] + "4"
    with pytest.raises(WebhookRefused, match="signature does not match"):
        mailgun.verify(json.dumps(doc).encode(), KEY, NOW)


def test_a_wrong_key_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="signature does not match"):
        mailgun.verify(_signed(FAILED, key="key-other"), KEY, NOW)


def test_no_signing_key_refuses_everything() -> None:
    with pytest.raises(WebhookRefused, match="LEADLOOP_MAILGUN_SIGNING_KEY"):
        mailgun.verify(_signed(FAILED), "", NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=11), timedelta(days=-1)])
def test_a_timestamp_outside_ten_minutes_is_refused(offset: timedelta) -> None:
    with pytest.raises(WebhookRefused, match="signed"):
        mailgun.verify(_signed(FAILED, at=NOW - offset), KEY, NOW)


def test_a_nine_minute_old_signature_is_accepted() -> None:
    mailgun.verify(_signed(FAILED, at=NOW - timedelta(minutes=9)), KEY, NOW)


@pytest.mark.parametrize("missing", ["timestamp", "token", "signature"])
def test_a_missing_signature_field_is_refused(missing: str) -> None:
    doc = json.loads(_signed(FAILED))
    del doc["signature"][missing]
    with pytest.raises(WebhookRefused, match=f"'{missing}' is missing"):
        mailgun.verify(json.dumps(doc).encode(), KEY, NOW)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"signature=abc&token=def", "not JSON"),
        (b"[]", "'signature' object"),
        (b'{"signature": {}}', "'event-data' object"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(WebhookRefused, match=reason):
        mailgun.verify(body, KEY, NOW)
    with pytest.raises(WebhookRefused, match=reason):
        mailgun.events(body)


def _failed(severity: str, reason: str, code: str = "", description: str = "") -> dict[str, Any]:
    status = {"code": 550, "enhanced-code": code, "description": description, "message": ""}
    return _data("failed", severity=severity, reason=reason, **{"delivery-status": status})


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (FAILED, "hard_bounce"),
        (_failed("permanent", "bounce", "5.7.1", "550 5.7.1 rejected by policy"), "policy_block"),
        (_failed("permanent", "generic", "", "550 5.7.26 unauthenticated mail is prohibited"), "policy_block"),
        (_failed("permanent", "suppress-bounce", "", "Not delivering to previously bounced address"), "hard_bounce"),
        (_failed("permanent", "suppress-complaint"), "complaint"),
        (_failed("permanent", "suppress-unsubscribe"), "unsubscribe_request"),
        (_failed("permanent", "espblock"), "policy_block"),
        (_failed("temporary", "generic", "4.2.2", "452 4.2.2 mailbox full"), "soft_bounce"),
        (_data("complained"), "complaint"),
        (_data("unsubscribed"), "unsubscribe_request"),
        (_data("accepted"), None),
        (_data("delivered"), None),
        (_data("opened"), None),
        (_data("clicked", url="https://example.com"), None),
        (_data("rejected", reject={"reason": "sandbox"}), None),
        (_data("stored"), None),
    ],
)
def test_event_kinds(data: dict[str, Any], kind: str | None) -> None:
    assert [e.kind for e in mailgun.events(_signed(data))] == ([kind] if kind else [])


def test_a_failure_without_severity_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="severity"):
        mailgun.events(_signed(_data("failed", reason="bounce")))


def test_a_failure_without_id_or_recipient_is_refused() -> None:
    with pytest.raises(WebhookRefused, match="'id' is missing"):
        mailgun.events(_signed({**FAILED, "id": ""}))
    with pytest.raises(WebhookRefused, match="'recipient' is missing"):
        mailgun.events(_signed({k: v for k, v in FAILED.items() if k != "recipient"}))
