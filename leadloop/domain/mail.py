"""Building marketing email messages and reading SMTP replies (pure helpers)."""

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8, Policy
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from typing import Literal

import idna

from leadloop.domain.templates import RenderedEmail, one_line
from leadloop.domain.text import CONTROL_RE

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

Verdict = Literal["retry", "bounce", "refuse"]
#: the outbox's "cadence" of the notifications to reps (kept under the lead they are about, sent to the rep)
REP_NOTIFICATION_CADENCE = "_sales"


def outbox_key(lead_id: int, cycle: int, step_id: str) -> str:
    """The business key of one email: (lead, cycle, step)."""
    return f"lead-{lead_id}.c{cycle}.{step_id}"


def message_id(key: str, sender_address: str) -> str:
    """A Message-ID that derives from the outbox key alone, so every retry carries the same one."""
    domain = sender_address.rpartition("@")[2]
    try:
        domain = ascii_domain(domain) if domain else "leadloop.invalid"
    except ValueError:
        domain = "leadloop.invalid"
    return f"<{key}@{domain}>"


def ascii_domain(domain: str) -> str:
    """An internationalised domain as SMTP and headers without SMTPUTF8 carry it: IDNA A-labels (punycode).

    Raises ValueError for a domain IDNA cannot encode.
    """
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"the domain cannot be written in ASCII (IDNA: {exc})") from None


def wire_address(address: str) -> str:
    """The address as it goes into the envelope and the headers: the domain in A-labels, the local part as is."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


def needs_smtputf8(address: str) -> bool:
    """Whether the address's local part (before the @) is not ASCII: only SMTPUTF8 (RFC 6531) carries it."""
    return not address.rpartition("@")[0].isascii()


@dataclass(frozen=True)
class Envelope:
    """SMTP's MAIL FROM and RCPT TO for one message, in the form they go on the wire."""

    sender: str
    recipients: tuple[str, ...]
    utf8: str | None = None  # whose address needs SMTPUTF8 ("the recipient's"), None when none does

    @classmethod
    def of(cls, sender: str, recipients: list[str]) -> "Envelope":
        """Raises ValueError for an address whose domain cannot be written in ASCII."""
        utf8 = None
        if any(needs_smtputf8(r) for r in recipients):
            utf8 = "the recipient's"
        elif needs_smtputf8(sender):
            utf8 = "the sender's"
        return cls(wire_address(sender), tuple(wire_address(r) for r in recipients), utf8)


class LiteralHeader(UnstructuredHeader, BaseHeader):
    """A header carrying URLs or addresses (List-Unsubscribe): written as it is, folded only at its own
    whitespace, never RFC 2047-encoded. Python's policies encode any header line over 78 characters that has
    no space to fold at; mailbox providers do not decode List-Unsubscribe, so one-click unsubscribe (RFC 8058)
    would be lost."""

    def fold(self, *, policy: Policy) -> str:
        value = str(self)
        if not (value.isascii() or getattr(policy, "utf8", False)):
            return super().fold(policy=policy)  # encoded words: raw 8-bit would be worse
        limit = policy.max_line_length or 0
        lines, line, words = [], f"{self.name}:", 0
        for word in value.split():
            if words and limit and len(line) + 1 + len(word) > limit:
                lines.append(line)
                line, words = "", 0
            line, words = f"{line} {word}", words + 1
        lines.append(line)
        return policy.linesep.join(lines) + policy.linesep


#: Headers written by `LiteralHeader`.
LITERAL_HEADERS = ("list-unsubscribe", "list-unsubscribe-post", "list-help", "list-subscribe", "archived-at")
_REGISTRY = HeaderRegistry()
for _name in LITERAL_HEADERS:
    _REGISTRY.map_to_type(_name, LiteralHeader)
#: The policy messages are built with: the default one, with `LITERAL_HEADERS` written literally.
MESSAGE_POLICY = default_policy.clone(header_factory=_REGISTRY)


def wire_bytes(message: EmailMessage, *, utf8: bool) -> bytes:
    """The message as SMTP carries it (CRLF lines): UTF-8 headers only in an SMTPUTF8 transaction."""
    return message.as_bytes(policy=SMTPUTF8 if utf8 else SMTP)


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
    # the domain in A-labels: a header without SMTPUTF8 cannot carry a U-label (the email package would
    # write an RFC 2047 encoded word, which no reader takes for a domain)
    return Address(display_name=one_line(display_name), username=local, domain=ascii_domain(domain))


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
    message = EmailMessage(policy=MESSAGE_POLICY)
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
