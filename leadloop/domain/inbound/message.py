"""Reading a raw message that may be broken: headers, addresses, Message-IDs and body text, never raising."""

import email
import email.errors
import email.header
import email.policy
import html
import re
from collections.abc import Collection, Iterable
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

#: Bytes of a raw message read at all: enough for any report or reply; a 20 MB attachment is cut, not parsed.
MAX_RAW_BYTES = 4_000_000
#: Characters of body text the wording rules look at.
MAX_TEXT_CHARS = 1_000_000
#: leadloop's deterministic Message-ID (leadloop/domain/mail.py: `<lead-<id>.c<cycle>.<step>@<domain>>`).
LEADLOOP_MESSAGE_ID = re.compile(r"<lead-\d+\.c\d+\.[^<>@\s]+@[^<>\s]+>")
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_BREAK = re.compile(r"<(br|/p|/div|/tr|/li)\b[^>]*>", re.IGNORECASE)


def parse(raw: bytes, evidence: list[str]) -> Message:
    """The message as compat32 reads it (the most forgiving policy); a cut or defects noted in evidence."""
    if len(raw) > MAX_RAW_BYTES:
        evidence.append(f"message of {len(raw)} bytes: only the first {MAX_RAW_BYTES} read")
        raw = raw[:MAX_RAW_BYTES]
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if not msg.keys():
        evidence.append("no headers")
    defects = [type(defect).__name__ for part in msg.walk() for defect in part.defects]
    if defects:
        evidence.append("malformed MIME: " + ", ".join(sorted(set(defects))[:4]))
    return msg


def header(msg: Message, name: str) -> str:
    """A header's value decoded and unfolded, "" when absent or unreadable.

    RFC 2047 encoded words are decoded; raw 8-bit bytes (RFC 6532, or a client that never encoded its subject),
    which compat32 would turn into U+FFFD, are read as UTF-8, else as Latin-1 (every byte is a Latin-1 letter).
    """
    value = _raw_value(msg, name)
    if value is None:
        return ""
    if value.isascii():
        try:
            text = str(email.header.make_header(email.header.decode_header(value)))
        except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
            text = value
    else:  # decode_header cannot mix raw 8-bit text with encoded words: each encoded word is decoded alone
        text = _ENCODED_WORD.sub(_decoded_word, value)
    return " ".join(text.split())


_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _raw_value(msg: Message, name: str) -> str | None:
    """The first `name` header as received, its raw 8-bit bytes decoded (UTF-8, else Latin-1)."""
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() != wanted:
            continue
        if not isinstance(value, str):  # a Header object, on a message built in code
            return str(value)
        try:  # the bytes parser keeps 8-bit header bytes as surrogate escapes
            data = value.encode("ascii", "surrogateescape")
        except UnicodeEncodeError:  # already text (a message parsed from a string)
            return value
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return None


def _decoded_word(match: re.Match[str]) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(match.group(0))))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return match.group(0)


def address(msg: Message, name: str) -> str | None:
    """The first mailbox of an address header, lower-cased, or None."""
    for _, addr in getaddresses([header(msg, name)]):
        if "@" in addr:
            return addr.strip().lower()
    return None


def sent_at(msg: Message) -> datetime | None:
    """The Date header as an aware datetime, or None when missing or unreadable."""
    try:
        value = parsedate_to_datetime(header(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    return value if value.tzinfo is not None else None


def message_ids(text: str) -> list[str]:
    """Every `<id@domain>` in a header or a body, in order."""
    return _MESSAGE_ID.findall(text)


def pick_answered(candidates: Iterable[str], sent_message_ids: Collection[str] | None) -> str | None:
    """The first candidate leadloop sent: one of sent_message_ids when given, else any of leadloop's form."""
    for candidate in candidates:
        if sent_message_ids is not None:
            if candidate in sent_message_ids:
                return candidate
        elif LEADLOOP_MESSAGE_ID.fullmatch(candidate):
            return candidate
    return None


def decode_part(part: Message, evidence: list[str]) -> str:
    """A leaf part's text: its charset when Python knows it, else UTF-8 with replacement (noted in evidence)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset)
    except LookupError:
        evidence.append(f"unknown charset {charset!r}: read as UTF-8")
    except UnicodeDecodeError:
        evidence.append(f"text not valid {charset}: read as UTF-8")
    return payload.decode("utf-8", errors="replace")


def body_text(msg: Message, evidence: list[str]) -> str:
    """The message's own text (first text/plain, else text/html without tags), attached messages excluded."""
    plain: str | None = None
    rich: str | None = None
    for part in _own_parts(msg):
        kind = part.get_content_type()
        if part.get_content_disposition() == "attachment":
            continue
        if kind == "text/plain" and plain is None:
            plain = decode_part(part, evidence)
        elif kind == "text/html" and rich is None:
            rich = html_to_text(decode_part(part, evidence))
    text = plain if plain is not None and plain.strip() else rich or plain or ""
    if len(text) > MAX_TEXT_CHARS:
        evidence.append(f"body text cut to its first {MAX_TEXT_CHARS} characters")
        text = text[:MAX_TEXT_CHARS]
    return text.replace("\r\n", "\n")


def html_to_text(markup: str) -> str:
    """Rough text of an HTML part: enough for wording rules, not for display."""
    return html.unescape(_TAG.sub("", _BREAK.sub("\n", markup)))


def _own_parts(msg: Message) -> Iterable[Message]:
    """Leaf parts of the message itself, not of messages attached to it."""
    if msg.is_multipart():
        if msg.get_content_maintype() == "message":
            return
        for sub in msg.get_payload():
            if isinstance(sub, Message):
                yield from _own_parts(sub)
    elif msg.get_content_maintype() == "text":
        yield msg


def attached_headers(msg: Message) -> Message | None:
    """The original message a report or bounce carries (message/rfc822 or text/rfc822-headers), or None."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822" and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                return inner
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            text = decode_part(part, [])
            return email.message_from_string(text.lstrip(), policy=email.policy.compat32)
    return None
