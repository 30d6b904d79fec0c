"""Amazon SES through SNS: the SNS message signature, the subscription handshake, bounce and complaint notices."""

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from leadloop.domain.webhooks.events import (
    ProviderEvent,
    ProviderEventKind,
    WebhookRefused,
    angle_message_id,
    enhanced_code,
    kind_from_status,
    parse_json,
    text_field,
    utc_from_iso,
)

_PROVIDER = "ses"
#: The hosts SNS signs from and serves its subscription links on, in every partition (China's ends .com.cn).
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
#: The fields signed, in the byte order AWS documents; a Notification's Subject only when present.
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
#: Transient bounces SES names after the message's content: the receiver refused what was sent, not the address.
_CONTENT_SUBTYPES = frozenset({"ContentRejected", "AttachmentRejected"})


@dataclass(frozen=True)
class SnsMessage:
    """An SNS HTTP(S) delivery whose shape, topic and certificate URL are checked; its signature is not yet."""

    fields: dict[str, str]

    @property
    def type(self) -> str:
        return self.fields["Type"]

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]

    @property
    def signing_cert_url(self) -> str:
        """The certificate to verify the signature with: https on an SNS host, fetched (and cached) by the caller."""
        return self.fields["SigningCertURL"]

    def string_to_sign(self) -> bytes:
        """The canonical string: each signed field's name and value on their own lines, in AWS's order."""
        names = _NOTIFICATION_FIELDS if self.type == "Notification" else _CONFIRMATION_FIELDS
        return "".join(f"{name}\n{self.fields[name]}\n" for name in names if name in self.fields).encode()


def sns_url(url: str, what: str) -> str:
    """The URL if it is https on an SNS host (no credentials, no other port), else WebhookRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookRefused(f"{_PROVIDER}: {what} {url!r} is not a URL") from None
    if parts.scheme != "https":
        raise WebhookRefused(f"{_PROVIDER}: {what} {url!r} is not https")
    if parts.username is not None or port not in (None, 443) or not _SNS_HOST.fullmatch(parts.hostname or ""):
        raise WebhookRefused(f"{_PROVIDER}: {what} {url!r} is not on an sns.<region>.amazonaws.com host")
    return url


def read_message(body: bytes, topic_arns: Collection[str]) -> SnsMessage:
    """The SNS message in a request body, refused before anything is fetched when its topic is not allowed,
    its certificate URL is not SNS's, or a field the signature covers is missing."""
    doc = parse_json(body, _PROVIDER)
    if not isinstance(doc, dict):
        raise WebhookRefused(f"{_PROVIDER}: body is not a JSON object")
    kind = text_field(doc, "Type", _PROVIDER)
    if kind not in _TYPES:
        raise WebhookRefused(f"{_PROVIDER}: SNS message type {kind!r} is not one of {', '.join(_TYPES)}")
    required = _NOTIFICATION_FIELDS if kind == "Notification" else _CONFIRMATION_FIELDS
    names = [n for n in required if n != "Subject"] + ["Signature", "SignatureVersion", "SigningCertURL"]
    fields = {name: text_field(doc, name, _PROVIDER) for name in names}
    if kind == "Notification" and "Subject" in doc:
        fields["Subject"] = text_field(doc, "Subject", _PROVIDER)
    if fields["TopicArn"] not in topic_arns:
        raise WebhookRefused(f"{_PROVIDER}: topic {fields['TopicArn']!r} is not in LEADLOOP_SES_TOPIC_ARNS")
    if fields["SignatureVersion"] not in _HASHES:
        raise WebhookRefused(f"{_PROVIDER}: SignatureVersion {fields['SignatureVersion']!r} is not 1 or 2")
    sns_url(fields["SigningCertURL"], "SigningCertURL")
    return SnsMessage(fields)


def verify_signature(message: SnsMessage, cert_pem: bytes, now: datetime) -> None:
    """Check the message's signature with the certificate at its SigningCertURL (SHA1withRSA for
    SignatureVersion 1, SHA256withRSA for 2); WebhookRefused unless it holds.

    The certificate is trusted for where it came from: the caller fetches it over https with the server's
    certificate verified, only from a URL read_message accepted (an SNS host), as AWS's own SDKs do.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise WebhookRefused(f"{_PROVIDER}: the signing certificate is not a PEM certificate") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise WebhookRefused(f"{_PROVIDER}: the signing certificate is not valid at {now.isoformat()}")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRefused(f"{_PROVIDER}: the signing certificate's key is not RSA")
    try:
        signature = base64.b64decode(message.fields["Signature"], validate=True)
    except binascii.Error:
        raise WebhookRefused(f"{_PROVIDER}: Signature is not base64") from None
    algorithm = _HASHES[message.fields["SignatureVersion"]]()
    try:
        key.verify(signature, message.string_to_sign(), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookRefused(f"{_PROVIDER}: the SNS signature does not match the message") from None


def subscribe_url(message: SnsMessage) -> str:
    """The SubscribeURL of a verified SubscriptionConfirmation: visiting it confirms the subscription."""
    if message.type != "SubscriptionConfirmation":
        raise WebhookRefused(f"{_PROVIDER}: a {message.type} has no SubscribeURL to visit")
    return sns_url(message.fields["SubscribeURL"], "SubscribeURL")


def events(message: SnsMessage) -> list[ProviderEvent]:
    """The bounces and complaints of a verified Notification carrying an SES notice, one per recipient;
    deliveries, sends, opens, clicks and delays give none."""
    if message.type != "Notification":
        return []
    doc = parse_json(message.fields["Message"].encode(), _PROVIDER)
    if not isinstance(doc, dict):
        raise WebhookRefused(f"{_PROVIDER}: the notification's Message is not a JSON object")
    # notificationType from identity notifications, eventType from a configuration set's event publishing
    notice = doc.get("notificationType") or doc.get("eventType")
    mail = doc.get("mail")
    message_id = _original_message_id(mail) if isinstance(mail, dict) else None
    if notice == "Bounce":
        return _bounces(_object(doc, "bounce"), message_id)
    if notice == "Complaint":
        return _complaints(_object(doc, "complaint"), message_id)
    return []


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise WebhookRefused(f"{_PROVIDER}: the notice has no {key!r} object")
    return value


def _recipients(notice: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = notice.get(key)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise WebhookRefused(f"{_PROVIDER}: {key!r} is not a list of objects")
    return entries


def _bounce_kind(bounce_type: str, sub_type: str, status: str | None) -> ProviderEventKind:
    by_code = kind_from_status(status)
    if bounce_type == "Permanent":
        return "policy_block" if by_code == "policy_block" else "hard_bounce"
    if bounce_type == "Transient":
        return "policy_block" if sub_type in _CONTENT_SUBTYPES or by_code == "policy_block" else "soft_bounce"
    # Undetermined: the DSN's own code when it gave one; else counted as soft, never suppressing at once
    return by_code or "soft_bounce"


def _bounces(bounce: dict[str, Any], message_id: str | None) -> list[ProviderEvent]:
    bounce_type = text_field(bounce, "bounceType", _PROVIDER)
    sub_type = str(bounce.get("bounceSubType") or "")
    feedback_id = text_field(bounce, "feedbackId", _PROVIDER)
    occurred_at = utc_from_iso(bounce.get("timestamp"), _PROVIDER)
    found = []
    for entry in _recipients(bounce, "bouncedRecipients"):
        recipient = text_field(entry, "emailAddress", _PROVIDER)
        diagnostic = entry.get("diagnosticCode") if isinstance(entry.get("diagnosticCode"), str) else ""
        status = entry.get("status") if isinstance(entry.get("status"), str) else None
        code = enhanced_code(status) or enhanced_code(diagnostic)
        found.append(
            ProviderEvent(
                provider=_PROVIDER,
                event_id=f"{feedback_id}/{recipient}",
                kind=_bounce_kind(bounce_type, sub_type, code),
                recipient=recipient,
                message_id=message_id,
                occurred_at=occurred_at,
                status_code=code,
                diagnostic=diagnostic,
                raw_type=f"Bounce/{bounce_type}/{sub_type}",
            )
        )
    return found


def _complaints(complaint: dict[str, Any], message_id: str | None) -> list[ProviderEvent]:
    feedback_type = complaint.get("complaintFeedbackType")
    if feedback_type == "not-spam":  # an ARF report saying the message is wanted is no complaint
        return []
    feedback_id = text_field(complaint, "feedbackId", _PROVIDER)
    occurred_at = utc_from_iso(complaint.get("timestamp"), _PROVIDER)
    return [
        ProviderEvent(
            provider=_PROVIDER,
            event_id=f"{feedback_id}/{recipient}",
            kind="complaint",
            recipient=recipient,
            message_id=message_id,
            occurred_at=occurred_at,
            diagnostic=feedback_type if isinstance(feedback_type, str) else "",
            raw_type=f"Complaint/{feedback_type or ''}",
        )
        for recipient in (
            text_field(entry, "emailAddress", _PROVIDER) for entry in _recipients(complaint, "complainedRecipients")
        )
    ]


def _original_message_id(mail: dict[str, Any]) -> str | None:
    """The Message-ID leadloop gave the send, from the original headers SES includes when asked to."""
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if isinstance(header, dict) and str(header.get("name", "")).lower() == "message-id":
                return angle_message_id(header.get("value"))
    common = mail.get("commonHeaders")
    return angle_message_id(common.get("messageId")) if isinstance(common, dict) else None
