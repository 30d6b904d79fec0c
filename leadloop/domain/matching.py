"""Which of leadloop's sends an inbound message answers: VERP, the thread, then sender and subject; never a guess."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import getaddresses
from typing import Literal

from leadloop.domain.intake import normalise_email
from leadloop.domain.mail import email_hash
from leadloop.domain.tokens import Signer, Token
from leadloop.domain.verp import bounce_token

Rule = Literal["verp", "in_reply_to", "references", "sender_subject"]

#: reply prefixes in the languages leadloop writes in and their mail programs' habits ("Re[2]:", "AW:", "ΑΠ:")
_REPLY_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]{1,40}\]\s*)?(?:re|aw|antw|odp|vá|válasz|απ|σχετ|rv|res|sv|r)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*",
    re.IGNORECASE,
)
_MSG_ID = re.compile(r"<([^<>\s]+)>")
#: a send some minutes "after" the message is clock skew between servers, not a later send
_SKEW = timedelta(minutes=10)


@dataclass(frozen=True)
class InboundHeaders:
    """What matching reads of an inbound message (the classifier reads the rest)."""

    received_at: datetime
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    sender: str | None = None  # the From header
    recipients: tuple[str, ...] = ()  # To, Delivered-To, X-Original-To and the envelope recipient
    subject: str | None = None


@dataclass(frozen=True)
class SentEmail:
    """One of leadloop's sends, as the lookup hands it over."""

    outbox_key: str
    lead_id: int
    message_id: str
    sent_at: datetime | None
    subject: str | None = None
    to_hashes: frozenset[str] = field(default_factory=frozenset)  # email_hash of each address the lead has or had


@dataclass(frozen=True)
class Match:
    """The send (and lead) a message answers, or why none is named."""

    reason: str
    outbox_key: str | None = None
    lead_id: int | None = None
    rule: Rule | None = None

    @property
    def matched(self) -> bool:
        return self.lead_id is not None


def message_ids(header: str | None) -> list[str]:
    """The Message-IDs in an In-Reply-To or References header, in order, each as `<id>`."""
    return [f"<{found}>" for found in _MSG_ID.findall(header or "")]


def reply_topic(subject: str | None) -> str | None:
    """The subject without its reply prefixes (casefolded, spaces collapsed), or None when it is no reply's."""
    text, stripped = subject or "", False
    while (prefix := _REPLY_PREFIX.match(text)) is not None:
        text, stripped = text[prefix.end() :], True
    return " ".join(text.split()).casefold() if stripped else None


def sender_address(sender: str | None) -> str | None:
    """The From header's one address, normalised as intake stores leads' addresses, or None."""
    addresses = [a for _, a in getaddresses([sender or ""]) if a]
    if len(addresses) != 1:
        return None
    try:
        return normalise_email(addresses[0])
    except ValueError:
        return None


def sender_hash(sender: str | None) -> str | None:
    """The suppression-list hash of the From header's address, or None when it holds no usable address."""
    address = sender_address(sender)
    return email_hash(address) if address is not None else None


def _one_lead(sends: Sequence[SentEmail], rule: Rule, what: str) -> Match:
    """The last of `sends` if they are all one lead's, else no match naming the leads."""
    leads = sorted({s.lead_id for s in sends})
    if len(leads) > 1:
        return Match(reason=f"ambiguous: {what} names sends to leads {', '.join(map(str, leads))}")
    last = sends[-1]
    return Match(reason=f"{what} names {last.outbox_key}", outbox_key=last.outbox_key, lead_id=last.lead_id, rule=rule)


def _by_verp(headers: InboundHeaders, sends: Sequence[SentEmail], signer: Signer, domain: str | None) -> Match | None:
    tokens = verp_tokens(headers.recipients, signer, domain)
    if not tokens:
        return None
    if len(tokens) > 1:
        return Match(reason=f"ambiguous: the recipients name {len(tokens)} sends")
    ((key, token),) = tokens.items()
    known = [s for s in sends if s.outbox_key == key]
    lead_id = known[0].lead_id if known else token.lead_id  # signed by us: the lead is ours even if the send aged out
    return Match(reason=f"the VERP recipient names {key}", outbox_key=key, lead_id=lead_id, rule="verp")


def verp_tokens(recipients: Iterable[str], signer: Signer, domain: str | None = None) -> dict[str, Token]:
    """The verified VERP tokens among the recipient addresses, by outbox key."""
    found = (bounce_token(signer, a, domain) for a in _addresses(recipients))
    return {token.key: token for token in found if token is not None}


def _addresses(values: Iterable[str]) -> list[str]:
    return [address for _, address in getaddresses(list(values)) if address]


def _by_thread(headers: InboundHeaders, sends: Sequence[SentEmail]) -> Match | None:
    by_id = {s.message_id: s for s in sends}
    rules: tuple[tuple[Rule, str, str | None], ...] = (
        ("in_reply_to", "In-Reply-To", headers.in_reply_to),
        ("references", "References", headers.references),
    )
    for rule, name, header in rules:
        found = [by_id[i] for i in message_ids(header) if i in by_id]
        if found:
            return _one_lead(found, rule, name)
    return None


def _by_sender(headers: InboundHeaders, sends: Sequence[SentEmail], window: timedelta) -> Match:
    digest = sender_hash(headers.sender)
    if digest is None:
        return Match(reason="no match: the From header holds no single usable address")
    since, until = headers.received_at - window, headers.received_at + _SKEW
    theirs = [s for s in sends if digest in s.to_hashes]
    leads = sorted({s.lead_id for s in theirs})
    if not leads:
        return Match(reason="no match: not a reply to leadloop's emails, and the sender is no lead")
    if len(leads) > 1:
        return Match(reason=f"ambiguous: the sender's address is that of leads {', '.join(map(str, leads))}")
    topic = reply_topic(headers.subject)
    if topic is None:
        return Match(reason=f"no match: lead {leads[0]} wrote, but the subject is not a reply's")
    recent = [s for s in theirs if s.sent_at is not None and since <= s.sent_at <= until]
    same = sorted(
        (s for s in recent if " ".join((s.subject or "").split()).casefold() == topic),
        key=lambda s: s.sent_at or headers.received_at,
    )
    if not same:
        days = window.days
        return Match(reason=f"no match: lead {leads[0]} wrote, but no email of the last {days} days had this subject")
    return _one_lead(same, "sender_subject", "the sender and a reply's subject")


def match_inbound(
    headers: InboundHeaders,
    sends: Sequence[SentEmail],
    signer: Signer,
    *,
    bounce_domain: str | None = None,
    window_days: int = 30,
) -> Match:
    """The send `headers` answers, by the first rule that names one: the VERP recipient (a bounce), the
    In-Reply-To then References Message-IDs (leadloop's are derived from the outbox key), then the sender's
    address with a reply's subject against the lead's sends of the last `window_days`. A rule that names
    several leads ends the search unmatched: the message is kept and listed, never put on a lead by guess.

    Args:
        sends: leadloop's sends the lookup found for this message (by key, by Message-ID, by the sender's hash).
        bounce_domain: VERP addresses of only this domain count; None: any domain.
    """
    for found in (_by_verp(headers, sends, signer, bounce_domain), _by_thread(headers, sends)):
        if found is not None:
            return found
    return _by_sender(headers, sends, timedelta(days=window_days))
