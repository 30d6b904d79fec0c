"""Machine reports: delivery status notifications (RFC 3464, and the non-standard ones) and feedback (RFC 5965)."""

import base64
import binascii
import email
import quopri
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from email.message import Message

from leadloop.domain.inbound import message as mime
from leadloop.domain.inbound.verdict import Confidence, InboundKind

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC = re.compile(r"\b([45])\d\d[ -]")
_ADDRESS = re.compile(r"<?([\w.+=-]+@[\w-]+(?:\.[\w-]+)+)>?")
#: Diagnostic wording when the code says only 5.0.0 (or nothing): the address is gone, the sender is refused, or
#: the mailbox cannot take mail now.
_DEAD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|doesn't exist|"
    r"recipient (address )?(rejected|not found)|invalid (recipient|mailbox)|mailbox (unavailable|not found)|"
    r"address (rejected|not found|couldn't be found)|RecipientNotFound|account (has been )?disabled|"
    r"unrout(e)?able address|no such domain|host or domain name not found",
    re.IGNORECASE,
)
_POLICY_WORDS = re.compile(
    r"spam|blocked|block ?list|blacklist|reputation|policy|dmarc|\bspf\b|dkim|rejected for policy|not authori[sz]ed",
    re.IGNORECASE,
)
_FULL_WORDS = re.compile(r"quota|mailbox (is )?full|over ?quota|insufficient (system )?storage", re.IGNORECASE)
#: Subjects and senders of bounces that do not follow RFC 3464 (Exim, qmail, old Exchange, Gmail's text part).
BOUNCE_SUBJECT = re.compile(
    r"undeliver(able|ed)|delivery (status notification|failure|has failed)|mail delivery (failed|failure|subsystem)|"
    r"returned mail|failure notice|non[- ]?delivery|unzustellbar|no se puede entregar|niedostarczon|"
    r"kézbesíthetetlen|μη παραδοθέν",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail delivery (sub)?system)\b", re.IGNORECASE)
#: RFC 5965 feedback types that mean the recipient (or her provider for her) called the mail unwanted.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})


@dataclass
class Finding:
    """What a report says: a kind, the enhanced status, the recipient and leadloop's message it is about."""

    kind: InboundKind
    confidence: Confidence = "high"
    status: str | None = None
    lead_email: str | None = None
    answers: str | None = None
    evidence: list[str] = field(default_factory=list)


_MASKABLE = re.compile(r"[\w.+=-]+@([\w-]+(?:\.[\w-]+)+)")


def mask_addresses(text: str) -> str:
    """`text` with each address's mailbox hidden (`jane@example.net` -> `…@example.net`): a report's reasons
    outlive its raw body, and the domain is what tells operators which provider answered."""
    return _MASKABLE.sub(r"…@\1", text)


def status_kind(status: str | None, diagnostic: str) -> tuple[InboundKind, Confidence, str]:
    """RFC 3463: what an enhanced status code (helped by the diagnostic words) says about the address."""
    if status is None or status.startswith("5.0.") or status == "5.1.0":
        if _POLICY_WORDS.search(diagnostic):
            return "policy_block", "medium", "diagnostic names a policy or spam block"
        if _FULL_WORDS.search(diagnostic):
            return "soft_bounce", "medium", "diagnostic says the mailbox is full"
        if status is not None and status.startswith("4."):
            return "soft_bounce", "high", f"{status}: transient (RFC 3463 4.x.x)"
        if _DEAD_WORDS.search(diagnostic):
            return "hard_bounce", "medium", "diagnostic says the address does not exist"
        return "hard_bounce", "low", "permanent failure with no detail: taken as a dead address"
    klass, subject, detail = status.split(".")
    if klass == "4":
        return "soft_bounce", "high", f"{status}: transient (RFC 3463 4.x.x)"
    if klass == "2":
        return "soft_bounce", "low", f"{status}: delivered or relayed, not a failure"
    if (subject, detail) in (("2", "2"),):
        return "soft_bounce", "high", f"{status}: mailbox full (transient per RFC 3463)"
    if subject == "1" and detail in ("7", "8"):
        return "policy_block", "high", f"{status}: the sender's address is refused, not the recipient's"
    if subject == "1" or (subject, detail) in (("2", "1"), ("4", "4")):
        return "hard_bounce", "high", f"{status}: the address is dead (RFC 3463)"
    if subject in ("5", "6", "7") or (subject, detail) in (("2", "3"), ("3", "4")):
        return "policy_block", "high", f"{status}: the sender's message or standing is refused, not the address"
    return "soft_bounce", "medium", f"{status}: a mail system problem on the recipient's side"


def find_part(msg: Message, content_type: str) -> Message | None:
    """The first part of a content type, anywhere in the message."""
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def fields(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part (even if sent encoded)."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [block for block in payload if isinstance(block, Message)]
    # the parser splits blocks before decoding, so an encoded report is one headerless block of encoded text
    parts = payload if isinstance(payload, list) else [payload]
    text = "".join(str(block.get_payload()) if isinstance(block, Message) else str(block) for block in parts)
    if encoding in ("base64", "quoted-printable"):
        try:
            data = base64.b64decode(text) if encoding == "base64" else quopri.decodestring(text.encode())
        except (ValueError, binascii.Error):
            return []
        text = data.decode("utf-8", errors="replace")
    return [email.message_from_string(chunk.strip() + "\n") for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


def _typed_address(value: str) -> str | None:
    """`rfc822; jane@example.com` -> jane@example.com."""
    match = _ADDRESS.search(value.rpartition(";")[2] or value)
    return match.group(1).lower() if match else None


def original_ids(msg: Message, text: str) -> list[str]:
    """Message-IDs a report carries for the original: the attached headers first, then any in the text."""
    attached = mime.attached_headers(msg)
    ids: list[str] = []
    if attached is not None:
        ids += mime.message_ids(mime.header(attached, "Message-ID"))
    return ids + mime.message_ids(text)


def read_dsn(msg: Message, text: str, sent_ids: Collection[str] | None) -> Finding | None:
    """RFC 3464: the first failed (else delayed) recipient of a multipart/report; report-type=delivery-status."""
    part = find_part(msg, "message/delivery-status")
    if part is None:
        return None
    recipients = [block for block in fields(part) if block.get("Final-Recipient") or block.get("Action")]
    chosen = next((b for b in recipients if str(b.get("Action", "")).strip().lower() == "failed"), None)
    chosen = chosen or next(iter(recipients), None)
    if chosen is None:
        return None
    action = str(chosen.get("Action", "")).strip().lower()
    code = _ENHANCED.search(str(chosen.get("Status", "")))
    diagnostic = " ".join(str(chosen.get("Diagnostic-Code", "")).split())
    status = code.group(0) if code else None
    kind, confidence, why = status_kind(status, diagnostic)
    if action == "delayed" and kind == "hard_bounce":
        kind, why = "soft_bounce", "Action: delayed (still being retried)"
    recipient = _typed_address(str(chosen.get("Original-Recipient") or chosen.get("Final-Recipient") or ""))
    evidence = [f"RFC 3464 delivery status, Action: {action or 'missing'}", why]
    if diagnostic:  # kept past the retention period: the recipient's address masked
        evidence.append(f"diagnostic: {mask_addresses(diagnostic)[:160]}")
    answers = mime.pick_answered(original_ids(msg, text), sent_ids)
    return Finding(kind, confidence, status, recipient, answers, evidence)


def read_arf(msg: Message, text: str, sent_ids: Collection[str] | None) -> Finding | None:
    """RFC 5965 (Yahoo, Microsoft JMRP, SES, AOL): abuse, fraud and virus reports are complaints."""
    part = find_part(msg, "message/feedback-report")
    if part is None:
        return None
    report = next(iter(fields(part)), None)
    feedback = str(report.get("Feedback-Type", "")).strip().lower() if report is not None else ""
    attached = mime.attached_headers(msg)
    recipient = _typed_address(str(report.get("Original-Rcpt-To", ""))) if report is not None else None
    if recipient is None and attached is not None:
        recipient = mime.address(attached, "To")
    answers = mime.pick_answered(original_ids(msg, text), sent_ids)
    evidence = [f"RFC 5965 feedback report, Feedback-Type: {feedback or 'missing'}"]
    if feedback == "auth-failure":
        evidence.append("an authentication failure report: the sender's setup, not the recipient's wish")
        return Finding("policy_block", "high", None, recipient, answers, evidence)
    confidence: Confidence = "high" if feedback in COMPLAINT_TYPES else "medium"
    if confidence != "high":
        evidence.append("feedback type not abuse/fraud/virus/other: still a complaint report")
    return Finding("complaint", confidence, None, recipient, answers, evidence)


def read_jmrp(msg: Message, text: str, sent_ids: Collection[str] | None) -> Finding | None:
    """Microsoft's older JMRP format: the complained-of message attached, X-HmXmrOriginalRecipient on it."""
    attached = mime.attached_headers(msg)
    if attached is None or not attached.get("X-HmXmrOriginalRecipient"):
        return None
    recipient = _typed_address(str(attached.get("X-HmXmrOriginalRecipient", "")))
    answers = mime.pick_answered(original_ids(msg, text), sent_ids)
    return Finding("complaint", "high", None, recipient, answers, ["Microsoft JMRP report (X-HmXmrOriginalRecipient)"])


def looks_like_bounce(msg: Message) -> str | None:
    """Why a message outside RFC 3464 looks like a bounce (null sender, a daemon's address, a bounce subject)."""
    if mime.header(msg, "Return-Path").strip() == "<>":
        return "null envelope sender (Return-Path: <>)"
    if msg.get("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients header"
    sender = mime.address(msg, "From") or ""
    if _BOUNCE_SENDER.search(sender) or _BOUNCE_SENDER.search(mime.header(msg, "From")):
        return f"sent by {sender or 'a mail daemon'}"
    subject = mime.header(msg, "Subject")
    if BOUNCE_SUBJECT.search(subject):
        return f"bounce subject {subject[:60]!r}"
    return None


def read_other_bounce(msg: Message, text: str, sent_ids: Collection[str] | None) -> Finding | None:
    """Bounces outside RFC 3464, for a message that looks like one: flufl.bounce's detectors, then a code in text.

    flufl.bounce's loose detectors are not run on other mail: a person's reply quoting "550" is not a bounce.
    """
    looks_like = looks_like_bounce(msg)
    if looks_like is None:
        return None
    import flufl.bounce

    evidence: list[str] = []
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception as exc:
        evidence.append(f"flufl.bounce could not read it ({type(exc).__name__})")
        temporary, permanent = frozenset(), frozenset()
    found = sorted(permanent) or sorted(temporary)
    recipient = found[0].decode("utf-8", "replace").strip("<>").lower() if found else _recipient_in_text(text)
    code = _ENHANCED.search(text)
    status = code.group(0) if code else None
    if status is None and temporary and not permanent:
        status = "4.0.0"
    diagnostic = text[:4000]
    kind, confidence, why = status_kind(status, diagnostic)
    basic = _BASIC.search(text)
    if status is None and not permanent and basic is not None and basic.group(1) == "4":
        kind, why = "soft_bounce", "a 4xx SMTP reply: transient"
    detector = (
        "flufl.bounce found a " + ("permanent" if permanent else "temporary") + " failure" if found else looks_like
    )
    evidence += [f"non-RFC 3464 bounce ({detector})", why]
    answers = mime.pick_answered(original_ids(msg, text), sent_ids)
    return Finding(kind, "medium" if confidence == "high" else confidence, status, recipient, answers, evidence)


def _recipient_in_text(text: str) -> str | None:
    match = _ADDRESS.search(text)
    return match.group(1).lower() if match else None
