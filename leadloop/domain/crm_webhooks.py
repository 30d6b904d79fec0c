"""Lifecycle webhooks to the CRM (pure): endpoint fields checked, the stable webhook-id, the body each endpoint gets."""

import hashlib
import json
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from leadloop.domain.crm import LIFECYCLE_TYPES, CrmInputError

#: The lead's fields an endpoint may be allowed to receive (none by default): the person, not the process.
PERSONAL_FIELDS: tuple[str, ...] = (
    "email",
    "first_name",
    "last_name",
    "company",
    "title",
    "country",
    "region",
    "locale",
)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
#: The delivery workflow's type name and its signal (names on the wire).
DELIVERY_WORKFLOW = "WebhookDeliveryWorkflow"
DELIVERY_SIGNAL = "webhook_delivery"
#: the first characters of an answer kept per attempt: enough to see why, never a whole page
ANSWER_CHARS = 500


class WebhookInputError(CrmInputError):
    """An endpoint's name, URL, event types or personal data that cannot be taken; nothing was changed."""


def check_name(name: str) -> str:
    """An endpoint's name as the operator types it in commands: lower case letters, digits and `_.-`."""
    if not NAME_PATTERN.fullmatch(name):
        raise WebhookInputError(
            f"endpoint name {name!r} is not allowed: 1-100 of a-z, 0-9 and _ . - (starting with a letter or digit)"
        )
    return name


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, no credentials in it, no spaces or control characters."""
    cleaned = url.strip()
    if not cleaned or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in cleaned):
        raise WebhookInputError(f"URL {url!r} is not a URL (empty, or holds spaces or control characters)")
    try:
        parts = urlsplit(cleaned)
        _ = parts.port  # a port out of range or not a number raises here
    except ValueError as exc:
        raise WebhookInputError(f"URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookInputError(f"URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise WebhookInputError(f"URL {url!r} names no host")
    if parts.username or parts.password:
        raise WebhookInputError(f"URL {url!r} holds credentials: the signature authenticates leadloop instead")
    if len(cleaned) > 2000:
        raise WebhookInputError("URL is longer than 2,000 characters")
    return cleaned


def check_event_types(types: list[str] | tuple[str, ...]) -> list[str]:
    """Known lifecycle types, de-duplicated, in LIFECYCLE_TYPES' order; empty means every type."""
    unknown = [t for t in types if t not in LIFECYCLE_TYPES]
    if unknown:
        raise WebhookInputError(f"unknown event type {unknown[0]!r}; one of: {', '.join(LIFECYCLE_TYPES)}")
    return [t for t in LIFECYCLE_TYPES if t in types]


def check_personal_data(fields: list[str] | tuple[str, ...]) -> list[str]:
    """Fields of PERSONAL_FIELDS, de-duplicated, in its order; empty (the default) means none."""
    unknown = [f for f in fields if f not in PERSONAL_FIELDS]
    if unknown:
        raise WebhookInputError(f"unknown personal-data field {unknown[0]!r}; one of: {', '.join(PERSONAL_FIELDS)}")
    return [f for f in PERSONAL_FIELDS if f in fields]


def subscribed(event_types: list[str], event_type: str) -> bool:
    """Whether an endpoint with these types gets an event of `event_type` (no types: every one)."""
    return not event_types or event_type in event_types


def message_id(event_key: str, endpoint_id: int) -> str:
    """The webhook-id: the same for every attempt and replay of one event to one endpoint, and for nothing else."""
    digest = hashlib.sha256(f"{event_key}\x00{endpoint_id}".encode()).hexdigest()
    return f"msg_{digest[:40]}"


def delivery_workflow_id(endpoint_id: int, lead_id: int) -> str:
    """One delivery workflow per (endpoint, lead): what keeps a lead's events in order at one endpoint."""
    return f"webhook-{endpoint_id}-lead-{lead_id}"


def webhook_body(
    payload: Mapping[str, object],
    *,
    external_id: str | None,
    owner: str | None,
    person: Mapping[str, object],
) -> str:
    """The JSON an endpoint receives, in Standard Webhooks' shape: `type`, `timestamp` (when it happened) and
    `data` (the event, the lead's external id and owner, and `person` only with the fields this endpoint may
    receive)."""
    data: dict[str, object] = {**payload, "external_id": external_id, "owner": owner}
    if person:
        data["person"] = dict(person)
    body = {"type": payload["type"], "timestamp": payload["occurred_at"], "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def answer_excerpt(text: str) -> str:
    """The first words of a receiver's answer, on one line, for the attempt's record."""
    return " ".join(text.split())[:ANSWER_CHARS]
