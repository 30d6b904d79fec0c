"""SendGrid's signed Event Webhook: the ECDSA P-256 signature over timestamp and body, and its bounce events."""

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from leadloop.domain.webhooks.events import (
    ProviderEvent,
    ProviderEventKind,
    WebhookRefused,
    angle_message_id,
    check_fresh,
    enhanced_code,
    parse_json,
    text_field,
    utc_from_unix,
)
from leadloop.domain.webhooks.headers import header

_PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: SendGrid signs each POST as it sends it; one signed longer ago than this is a replay.
MAX_AGE = timedelta(minutes=10)
#: SendGrid's bounce_classification values that blame what was sent or who sent it, not the address.
_POLICY_CLASSES = frozenset({"Content", "Reputation"})
_SOFT_CLASSES = frozenset({"Technical", "Frequency or Volume Too High", "Mailbox Unavailable"})
#: Why SendGrid dropped a message without trying: an address it already knows bounced or complained.
_DROPPED: dict[str, ProviderEventKind] = {
    "Bounced Address": "hard_bounce",
    "Invalid": "hard_bounce",
    "Spam Reporting Address": "complaint",
    "Unsubscribed Address": "unsubscribe_request",
}


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid's settings show it (base64 DER), or PEM; ValueError unless it is P-256."""
    try:
        key = (
            serialization.load_pem_public_key(value.encode())
            if value.lstrip().startswith("-----BEGIN")
            else serialization.load_der_public_key(base64.b64decode(value.strip(), validate=True))
        )
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise ValueError("not a base64 DER (or PEM) public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key, which SendGrid signs with")
    return key


def verify(body: bytes, headers: Mapping[str, str], public_key: str, now: datetime) -> None:
    """Check the request's ECDSA signature over the timestamp header followed by the raw body; WebhookRefused
    unless it holds and was made within MAX_AGE."""
    signature_b64 = header(headers, SIGNATURE_HEADER, _PROVIDER)
    timestamp = header(headers, TIMESTAMP_HEADER, _PROVIDER)
    try:
        key = load_public_key(public_key)
    except ValueError as exc:
        raise WebhookRefused(f"{_PROVIDER}: LEADLOOP_SENDGRID_WEBHOOK_PUBLIC_KEY is {exc}") from None
    check_fresh(utc_from_unix(timestamp, _PROVIDER), now, MAX_AGE, _PROVIDER)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except binascii.Error:
        raise WebhookRefused(f"{_PROVIDER}: {SIGNATURE_HEADER} is not base64") from None
    try:
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WebhookRefused(f"{_PROVIDER}: the signature does not match the body") from None


def events(body: bytes) -> list[ProviderEvent]:
    """The bounces, blocks, drops, spam reports and unsubscribes in a verified batch; other events give none."""
    batch = parse_json(body, _PROVIDER)
    if not isinstance(batch, list) or not all(isinstance(item, dict) for item in batch):
        raise WebhookRefused(f"{_PROVIDER}: body is not a JSON array of event objects")
    return [event for event in map(_event, batch) if event is not None]


def _kind(item: dict[str, Any]) -> ProviderEventKind | None:
    event = item.get("event")
    classification = item.get("bounce_classification")
    if event == "bounce":
        # type "bounce": the receiver refused the address; "blocked": it refused this sender or content for now
        if classification in _POLICY_CLASSES:
            return "policy_block"
        if item.get("type") == "blocked":
            return "soft_bounce" if classification in _SOFT_CLASSES else "policy_block"
        return "soft_bounce" if classification in _SOFT_CLASSES else "hard_bounce"
    if event == "dropped":
        return _DROPPED.get(str(item.get("reason", "")))
    if event == "spamreport":
        return "complaint"
    if event in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribe_request"
    return None  # processed, deferred (SendGrid retries), delivered, open, click, group_resubscribe


def _event(item: dict[str, Any]) -> ProviderEvent | None:
    kind = _kind(item)
    if kind is None:
        return None
    reason = item.get("reason") if isinstance(item.get("reason"), str) else ""
    status = item.get("status") if isinstance(item.get("status"), str) else None
    raw_type = "/".join(str(part) for part in (item["event"], item.get("type")) if part)
    return ProviderEvent(
        provider=_PROVIDER,
        event_id=text_field(item, "sg_event_id", _PROVIDER),
        kind=kind,
        recipient=text_field(item, "email", _PROVIDER),
        message_id=angle_message_id(item.get("smtp-id")),
        occurred_at=utc_from_unix(item.get("timestamp"), _PROVIDER),
        status_code=enhanced_code(status) or enhanced_code(reason) or status,
        diagnostic=reason,
        raw_type=raw_type,
    )
