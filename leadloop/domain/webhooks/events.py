"""What a provider's webhook tells leadloop: bounces and complaints in the vocabulary of mailed DSNs and ARF."""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ProviderName = Literal["ses", "sendgrid", "mailgun", "postmark"]
#: The same kinds a mailed DSN (RFC 3464) or ARF report (RFC 5965) is classified as; deliveries, opens and
#: clicks a provider also reports are not among them (leadloop counts its own).
ProviderEventKind = Literal["hard_bounce", "soft_bounce", "policy_block", "complaint", "unsubscribe_request"]
#: A body larger than this is no provider's webhook (SendGrid batches stay well under it).
MAX_BODY_BYTES = 4 * 1024 * 1024
_ENHANCED_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


class WebhookRefused(Exception):
    """A webhook request that is not its provider's, or not readable: nothing of it may be stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderEvent(BaseModel):
    """One bounce, block or complaint a provider reports about one recipient of one send."""

    model_config = ConfigDict(frozen=True)

    provider: ProviderName
    event_id: str  # the provider's id of this event, for applying it once
    kind: ProviderEventKind
    recipient: str
    message_id: str | None = None  # leadloop's Message-ID of the original send, when the provider passes it on
    occurred_at: datetime
    status_code: str | None = None  # the RFC 3463 enhanced code (5.1.1), else the SMTP reply code
    diagnostic: str = ""
    raw_type: str  # the provider's own name for the event, e.g. "Bounce/Permanent/General"


def parse_json(body: bytes, provider: str) -> Any:
    """The body as JSON, or WebhookRefused naming what is wrong with it."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRefused(f"{provider}: body of {len(body)} bytes is larger than {MAX_BODY_BYTES}")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRefused(f"{provider}: body is not JSON ({exc})") from None


def text_field(doc: Any, key: str, provider: str) -> str:
    """A required, non-empty string field of a JSON object."""
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, str) or not value:
        raise WebhookRefused(f"{provider}: field {key!r} is missing or not a string")
    return value


def enhanced_code(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code (5.1.1) in a status or diagnostic, if any."""
    match = _ENHANCED_CODE.search(text or "")
    return match.group(0) if match else None


def kind_from_status(status: str | None) -> ProviderEventKind | None:
    """RFC 3463 read as leadloop reads mailed DSNs: 5.7.x is the sender's problem (policy), other 5.x.x the
    address's (hard), 4.x.x transient (soft); None when there is no code to read."""
    code = enhanced_code(status)
    if code is None:
        return None
    if code.startswith("4."):
        return "soft_bounce"
    if code.startswith("5.7."):
        return "policy_block"
    return "hard_bounce" if code.startswith("5.") else None


def angle_message_id(value: Any) -> str | None:
    """A Message-ID in the `<local@domain>` form leadloop sends, or None when there is none to read."""
    if not isinstance(value, str):
        return None
    inner = value.strip().removeprefix("<").removesuffix(">")
    if not inner or "@" not in inner or any(c in inner for c in "<> \t\r\n"):
        return None
    return f"<{inner}>"


def utc_from_unix(value: Any, provider: str) -> datetime:
    """A Unix timestamp (seconds, possibly fractional, possibly as a string) as an aware UTC datetime."""
    try:
        seconds = float(value)
        return datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise WebhookRefused(f"{provider}: timestamp {value!r} is not a Unix time") from None


def utc_from_iso(value: Any, provider: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime (a time without offset is taken as UTC, as SES and SNS mean it)."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise WebhookRefused(f"{provider}: time {value!r} is not ISO 8601") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def check_fresh(signed_at: datetime, now: datetime, max_age: timedelta, provider: str) -> None:
    """Refuse a signed timestamp older than max_age (a replay) or further than max_age in the future."""
    age = now - signed_at
    if age > max_age:
        raise WebhookRefused(f"{provider}: signed {int(age.total_seconds())} s ago, older than {max_age} (a replay?)")
    if -age > max_age:
        raise WebhookRefused(f"{provider}: signed {int(-age.total_seconds())} s in the future")
