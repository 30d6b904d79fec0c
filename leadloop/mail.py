"""Building marketing email messages and reading SMTP replies (pure helpers)."""

import hashlib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

from leadloop.cadence import CONTROL_RE
from leadloop.templates import RenderedEmail, one_line

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

Verdict = Literal["retry", "bounce", "refuse"]


def outbox_key(lead_id: int, cycle: int, step_id: str) -> str:
    """The business key of one email: (lead, cycle, step)."""
    return f"lead-{lead_id}.c{cycle}.{step_id}"


def message_id(key: str, sender_address: str) -> str:
    """A Message-ID that derives from the outbox key alone, so every retry carries the same one."""
    domain = sender_address.rpartition("@")[2] or "leadloop.invalid"
    return f"<{key}@{domain}>"


def email_hash(email: str) -> str:
    """The suppression list's key: a normalised address, hashed, so it outlives erasure."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def parse_sender(value: str) -> tuple[str, str]:
    """'Name <a@b>' -> ('Name', 'a@b')."""
    name, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"{value!r} is not an address such as 'Name <hello@example.com>'")
    return name, address


def _address(display_name: str, address: str, role: str) -> Address:
    if CONTROL_RE.search(address) or any(c.isspace() for c in address):
        # the address itself stays out of the message: it ends up in Temporal's history
        raise ValueError(f"the {role} address contains spaces or control characters")
    local, _, domain = address.rpartition("@")
    return Address(display_name=one_line(display_name), username=local, domain=domain)


def build_message(
    rendered: RenderedEmail,
    *,
    sender_name: str,
    sender_address: str,
    to_name: str,
    to_address: str,
    msg_id: str,
    date: datetime,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A multipart/alternative (text, HTML) message with exactly the headers given.

    The subject and display names are flattened onto one line (`one_line`); an address or extra header
    value with a control character in it raises ValueError rather than go out. (EmailMessage itself
    refuses CR and LF, but lets NUL and the other controls through.)
    """
    message = EmailMessage()
    message["Subject"] = one_line(rendered.subject)
    message["From"] = _address(sender_name, sender_address, "sender")
    message["To"] = _address(to_name, to_address, "recipient")
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msg_id
    for name, value in (headers or {}).items():
        if CONTROL_RE.search(name) or CONTROL_RE.search(value):
            raise ValueError(f"the {name.strip()[:40]!r} header contains control characters")
        message[name] = value
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    # set_content drops Content-* headers, so this one goes last
    message["Content-Language"] = rendered.locale
    return message


def classify_reply(code: int, text: str, *, stage: Literal["mail", "rcpt", "data"]) -> Verdict:
    """What an SMTP refusal means for the lead, read through its enhanced status code (RFC 3463).

    4xx is temporary. A 5.1.x for the recipient (no such mailbox, bad address) is a hard bounce,
    except 5.1.7/5.1.8, which concern the sender. Every other 5xx (5.7.x policy, a refused sender)
    is the sender's problem: the send fails visibly and the lead is not blamed.
    """
    if 400 <= code < 500:
        return "retry"
    match = _ENHANCED.match(text)
    if stage != "mail" and match and match.group(1) == "5" and match.group(2) == "1":
        if match.group(3) not in {"7", "8"}:
            return "bounce"
    return "refuse"
