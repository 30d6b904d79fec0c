"""Postmark's webhooks: Basic credentials on the webhook URL (Postmark signs nothing), bounces and spam complaints."""

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from leadloop.domain.webhooks.events import (
    ProviderEvent,
    ProviderEventKind,
    WebhookRefused,
    angle_message_id,
    enhanced_code,
    parse_json,
    text_field,
    utc_from_iso,
)
from leadloop.domain.webhooks.headers import header

_PROVIDER = "postmark"
#: Postmark's bounce types (its Bounce API's list) as leadloop's kinds; a type not named gives no event:
#: auto-responders, address changes, challenge-response and the like are not bounces, and an Unknown is not
#: guessed at.
_BOUNCE_KINDS: dict[str, ProviderEventKind] = {
    "HardBounce": "hard_bounce",
    "BadEmailAddress": "hard_bounce",
    "Transient": "soft_bounce",
    "SoftBounce": "soft_bounce",
    "DnsError": "soft_bounce",
    "Blocked": "policy_block",
    "SpamNotification": "policy_block",
    "VirusNotification": "policy_block",
    "DMARCPolicy": "policy_block",
    "SpamComplaint": "complaint",
    "Unsubscribe": "unsubscribe_request",
}


def verify(headers: Mapping[str, str], user: str, password: str) -> None:
    """Check the request's Basic credentials against the ones set on the webhook URL, in constant time;
    WebhookRefused unless both match."""
    if not user or not password:
        raise WebhookRefused(f"{_PROVIDER}: LEADLOOP_POSTMARK_WEBHOOK_USER and _PASSWORD are not both set")
    scheme, _, encoded = header(headers, "Authorization", _PROVIDER).partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRefused(f"{_PROVIDER}: Authorization is not Basic")
    try:
        given_user, colon, given_password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except binascii.Error:
        raise WebhookRefused(f"{_PROVIDER}: Basic credentials are not base64") from None
    # both compared whatever the first gives, so the time taken tells nothing about which one is wrong
    user_ok = hmac.compare_digest(given_user, user.encode())
    password_ok = hmac.compare_digest(given_password, password.encode())
    if not (colon and user_ok and password_ok):
        raise WebhookRefused(f"{_PROVIDER}: wrong Basic credentials")


def events(body: bytes) -> list[ProviderEvent]:
    """The bounce or spam complaint in a verified request; deliveries, opens, clicks give none."""
    doc = parse_json(body, _PROVIDER)
    if not isinstance(doc, dict):
        raise WebhookRefused(f"{_PROVIDER}: body is not a JSON object")
    record_type = doc.get("RecordType")
    if record_type not in ("Bounce", "SpamComplaint"):
        return []
    bounce_type = text_field(doc, "Type", _PROVIDER)
    kind = _BOUNCE_KINDS.get(bounce_type)
    if kind is None:
        return []
    record_id = doc.get("ID")
    if isinstance(record_id, bool) or not isinstance(record_id, int | str) or record_id == "":
        raise WebhookRefused(f"{_PROVIDER}: field 'ID' is missing or not a number")
    details = doc.get("Details") if isinstance(doc.get("Details"), str) else ""
    return [
        ProviderEvent(
            provider=_PROVIDER,
            event_id=f"{record_type}/{record_id}",
            kind=kind,
            recipient=text_field(doc, "Email", _PROVIDER),
            message_id=_original_message_id(doc),
            occurred_at=utc_from_iso(doc.get("BouncedAt"), _PROVIDER),
            status_code=enhanced_code(details),
            diagnostic=details or str(doc.get("Description") or ""),
            raw_type=f"{record_type}/{bounce_type}",
        )
    ]


def _original_message_id(doc: dict[str, Any]) -> str | None:
    """leadloop's Message-ID when the payload carries the original headers; `MessageID` is Postmark's own id."""
    headers = doc.get("Headers")
    if isinstance(headers, list):
        for entry in headers:
            if isinstance(entry, dict) and str(entry.get("Name", "")).lower() == "message-id":
                return angle_message_id(entry.get("Value"))
    return None
