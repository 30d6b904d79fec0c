"""Mailgun's webhooks: the HMAC-SHA256 signature over timestamp and token, and its failure and complaint events."""

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from leadloop.domain.webhooks.events import (
    ProviderEvent,
    ProviderEventKind,
    WebhookRefused,
    angle_message_id,
    check_fresh,
    enhanced_code,
    kind_from_status,
    parse_json,
    text_field,
    utc_from_unix,
)

_PROVIDER = "mailgun"
#: A signature made longer ago than this is a replay (Mailgun signs each delivery as it makes it).
MAX_AGE = timedelta(minutes=10)
#: Why Mailgun failed a message without trying it: an address already on one of its suppression lists.
_SUPPRESSED: dict[str, ProviderEventKind] = {
    "suppress-bounce": "hard_bounce",
    "suppress-complaint": "complaint",
    "suppress-unsubscribe": "unsubscribe_request",
}


def _document(body: bytes) -> dict[str, Any]:
    doc = parse_json(body, _PROVIDER)
    if not isinstance(doc, dict) or not isinstance(doc.get("signature"), dict):
        raise WebhookRefused(f"{_PROVIDER}: body is not an object with a 'signature' object")
    if not isinstance(doc.get("event-data"), dict):
        raise WebhookRefused(f"{_PROVIDER}: body has no 'event-data' object")
    return doc


def verify(body: bytes, signing_key: str, now: datetime) -> None:
    """Check the HMAC-SHA256 of timestamp and token (no separator) under the webhook signing key against the
    hex signature, in constant time; WebhookRefused unless it holds and was made within MAX_AGE."""
    if not signing_key:
        raise WebhookRefused(f"{_PROVIDER}: LEADLOOP_MAILGUN_SIGNING_KEY is not set")
    signed = _document(body)["signature"]
    # documented as an int, sent as a string: the digits are what was signed either way
    timestamp = str(signed["timestamp"]) if isinstance(signed.get("timestamp"), int) else ""
    timestamp = timestamp or text_field(signed, "timestamp", _PROVIDER)
    token = text_field(signed, "token", _PROVIDER)
    signature = text_field(signed, "signature", _PROVIDER)
    check_fresh(utc_from_unix(timestamp, _PROVIDER), now, MAX_AGE, _PROVIDER)
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        raise WebhookRefused(f"{_PROVIDER}: the signature does not match timestamp and token")


def events(body: bytes) -> list[ProviderEvent]:
    """The failure, complaint or unsubscribe in a verified request; deliveries, opens, clicks give none."""
    data = _document(body)["event-data"]
    status = _object(data, "delivery-status")
    diagnostic = next((str(status[k]) for k in ("description", "message") if status.get(k)), "")
    code = enhanced_code(str(status.get("enhanced-code", ""))) or enhanced_code(diagnostic)
    kind = _kind(data, code)
    if kind is None:
        return []
    headers = _object(_object(data, "message"), "headers")
    raw_type = "/".join(str(p) for p in (data.get("event"), data.get("severity"), data.get("reason")) if p)
    return [
        ProviderEvent(
            provider=_PROVIDER,
            event_id=text_field(data, "id", _PROVIDER),
            kind=kind,
            recipient=text_field(data, "recipient", _PROVIDER),
            message_id=angle_message_id(headers.get("message-id")),
            occurred_at=utc_from_unix(data.get("timestamp"), _PROVIDER),
            status_code=str(code) if code else (str(status["code"]) if status.get("code") else None),
            diagnostic=diagnostic,
            raw_type=raw_type,
        )
    ]


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _kind(data: dict[str, Any], code: str | None) -> ProviderEventKind | None:
    event = data.get("event")
    if event == "complained":
        return "complaint"
    if event == "unsubscribed":
        return "unsubscribe_request"
    if event != "failed":
        return None  # accepted, delivered, opened, clicked, stored, rejected (never sent)
    reason = str(data.get("reason", ""))
    if reason in _SUPPRESSED:
        return _SUPPRESSED[reason]
    if reason == "espblock":  # the receiving provider blocked the sender, not the address
        return "policy_block"
    severity = data.get("severity")
    if severity == "permanent":
        return "policy_block" if kind_from_status(code) == "policy_block" else "hard_bounce"
    if severity == "temporary":
        return "soft_bounce"
    raise WebhookRefused(f"{_PROVIDER}: a failed event with severity {severity!r}, neither permanent nor temporary")
