"""Lifecycle webhooks to the CRM (pure): endpoint fields checked, the stable webhook-id, the body each endpoint gets."""

import hashlib
import json
import re
from collections.abc import Collection, Mapping
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
    "notes",
)
#: Of those, the lead's own columns (`notes` is the free text below, not a column).
LEAD_FIELDS: tuple[str, ...] = PERSONAL_FIELDS[:-1]
#: The free text about a lead that `notes` opts in to: a rep's note, the reasons written out (`why`, what a lead
#: waits for), a lead's reply. Codes (a reason such as `not_ready`, a goal's kind) are not free text.
FREE_TEXT_KEYS: frozenset[str] = frozenset({"note", "why", "waiting_for", "reason_text", "reply"})
#: Profile fields whose value a score item names (`country=GR`, `title buyer 'cto'`, `company_size 51-200`); an
#: endpoint that may not receive the field gets the item's field and points, not the value.
SCORED_PROFILE_FIELDS: frozenset[str] = frozenset(
    {"industry", "region", "country", "product_interest", "company_size", "title"}
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


def score_label(rule: str, allowed: Collection[str]) -> str:
    """A score item's label as an endpoint may see it: `country=GR` stays only for one that may receive `country`;
    otherwise `country`. Engagement items (`click pricing`, `reply`) name no one's data and stay."""
    field, sep, _ = rule.partition("=")
    if sep:  # a profile field or a qualifying answer (`budget=yes`): the value is the lead's own
        return rule if field in allowed else field
    head = rule.split(" ", 1)[0]
    if head in SCORED_PROFILE_FIELDS and head != rule:
        return rule if head in allowed else head
    return rule


def redacted(payload: Mapping[str, object], allowed: Collection[str]) -> dict[str, object]:
    """The event as an endpoint allowed `allowed` of PERSONAL_FIELDS may receive it: free text only with `notes`,
    score items without the values of profile fields it may not see; everything else (type, ids, stage, score
    totals, cadence, rep, actor, codes) as it is."""
    out = dict(payload)
    data = payload.get("data")
    if isinstance(data, Mapping) and "notes" not in allowed:
        out["data"] = {key: value for key, value in data.items() if key not in FREE_TEXT_KEYS}
    breakdown = payload.get("score_breakdown")
    if isinstance(breakdown, Mapping) and isinstance(breakdown.get("items"), list):
        items = [
            {**item, "rule": score_label(str(item.get("rule", "")), allowed)} if isinstance(item, Mapping) else item
            for item in breakdown["items"]
        ]
        out["score_breakdown"] = {**breakdown, "items": items}
    return out


def webhook_body(
    payload: Mapping[str, object],
    *,
    external_id: str | None,
    owner: str | None,
    person: Mapping[str, object],
    allowed: Collection[str] = (),
) -> str:
    """The JSON an endpoint receives, in Standard Webhooks' shape: `type`, `timestamp` (when it happened) and
    `data` (the event as `redacted` for the fields in `allowed`, the lead's external id and owner, and `person`
    only with the fields this endpoint may receive)."""
    data: dict[str, object] = {**redacted(payload, allowed), "external_id": external_id, "owner": owner}
    if person:
        data["person"] = dict(person)
    body = {"type": payload["type"], "timestamp": payload["occurred_at"], "data": data}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def answer_excerpt(text: str) -> str:
    """The first words of a receiver's answer, on one line, for the attempt's record."""
    return " ".join(text.split())[:ANSWER_CHARS]
