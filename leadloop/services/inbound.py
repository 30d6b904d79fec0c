"""Inbound messages in the database: stored once (by Message-ID and by where they were read), matched, listed, aged."""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.inbound.reports import mask_addresses
from leadloop.domain.mail import email_hash
from leadloop.domain.matching import (
    InboundHeaders,
    Match,
    SentEmail,
    match_inbound,
    message_ids,
    sender_address,
    verp_tokens,
)
from leadloop.domain.times import as_utc
from leadloop.domain.tokens import Signer
from leadloop.infra.db import FormerAddress, InboundMessage, Lead, Outbox, insert_new

#: where a message was read: the IMAP mailbox, a provider's webhook ("webhook:ses"), the demo's local mailbox
_SOURCE = re.compile(r"imap|mailbox|webhook:[a-z0-9_-]{1,40}")
STATUSES = ("pending", "signalled", "unmatched", "ignored")
#: Message-IDs of a thread read for matching: the newest, which are the likeliest to be leadloop's
_THREAD_IDS = 100


@dataclass(frozen=True)
class Stored:
    """The row a message is kept in, and whether this call stored it (False: it was there already)."""

    id: int
    new: bool


def clean_message_id(value: str | None) -> str | None:
    """The Message-ID as stored: its one `<id>`, or the trimmed text; None when empty or longer than a line."""
    found = message_ids(value)
    text = found[0] if found else (value or "").strip()
    return text if text and len(text) <= 998 and text.isprintable() else None


async def store_inbound(
    session: AsyncSession,
    *,
    source: str,
    source_key: str,
    raw: bytes | None,
    message_id: str | None = None,
    sender: str | None = None,
    received_at: datetime | None = None,
    match: Match | None = None,
    kind: str | None = None,
    evidence: dict[str, Any] | None = None,
    return_date: date | None = None,
    status: str = "pending",
    about: str | None = None,
) -> Stored:
    """Keep a message before anything acts on it (the caller commits). A message already stored, under its
    Message-ID or under (source, source_key), is not stored again: the database's constraints decide, so two
    readers of one mailbox, or a crash between store and mark, never keep one message twice.

    Args:
        sender: the From header; only its address's hash is kept.
        match: the send it answers (`match_message`), None when not matched yet.
        about: the address a bounce or complaint is about (its recipient); only its hash is kept, so
            `leadloop forget` finds the message even when no lead was matched.
    """
    if not _SOURCE.fullmatch(source):
        raise ValueError(f"source {source!r}: imap, mailbox or webhook:<provider>")
    if not source_key or len(source_key) > 255:
        raise ValueError("source_key: the message's key where it was read, 1 to 255 characters")
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
    msg_id, digest = clean_message_id(message_id), None
    if (address := sender_address(sender)) is not None:
        digest = email_hash(address)
    about_digest = email_hash(named) if (named := sender_address(about)) is not None else None
    new = await insert_new(
        session,
        InboundMessage,
        message_id=msg_id,
        source=source,
        source_key=source_key,
        received_at=received_at or datetime.now(UTC),
        sender_hash=digest,
        about_hash=about_digest,
        lead_id=match.lead_id if match else None,
        outbox_key=match.outbox_key if match else None,
        match_reason=match.reason if match else None,
        kind=kind,
        evidence=evidence or {},
        return_date=return_date,
        raw=raw,
        raw_size=len(raw or b""),
        status=status,
        signalled_at=None,
    )
    # the row this call wrote, when new; else the one already there: read here before, or by Message-ID
    found = await session.scalar(
        select(InboundMessage.id).where(InboundMessage.source == source, InboundMessage.source_key == source_key)
    )
    if found is None and msg_id is not None:
        found = await session.scalar(select(InboundMessage.id).where(InboundMessage.message_id == msg_id))
    if found is None:  # erased between the insert and this read
        raise LookupError("the message's row is gone")
    return Stored(id=found, new=new)


async def recent_sends(
    session: AsyncSession, headers: InboundHeaders, signer: Signer, *, window_days: int = 30
) -> list[SentEmail]:
    """leadloop's sends that `headers` may answer: the VERP recipient's, the thread's Message-IDs', and the
    sender's leads' sends of the last `window_days` (a lead found by its address now or before a change)."""
    ids = (message_ids(headers.in_reply_to) + message_ids(headers.references))[-_THREAD_IDS:]
    keys = list(verp_tokens(headers.recipients, signer))
    address = sender_address(headers.sender)
    lead_ids: set[int] = set()
    if address is not None:
        lead_ids |= set((await session.execute(select(Lead.id).where(Lead.email == address))).scalars())
        former = select(FormerAddress.lead_id).where(FormerAddress.email_hash == email_hash(address))
        lead_ids |= set((await session.execute(former)).scalars())
    since = as_utc(headers.received_at).astimezone(UTC) - timedelta(days=window_days)  # SQLite compares text
    wanted: list[ColumnElement[bool]] = [Outbox.key.in_(keys), Outbox.message_id.in_(ids)]
    if lead_ids:
        wanted.append(Outbox.lead_id.in_(lead_ids) & (Outbox.sent_at >= since))
    rows = list((await session.execute(select(Outbox).where(or_(*wanted)).order_by(Outbox.created_at))).scalars())
    hashes = await _address_hashes(session, {row.lead_id for row in rows})
    return [
        SentEmail(
            outbox_key=row.key,
            lead_id=row.lead_id,
            message_id=row.message_id,
            sent_at=as_utc(row.sent_at) if row.sent_at else None,  # SQLite hands back naive times
            subject=row.subject,
            to_hashes=hashes[row.lead_id],
        )
        for row in rows
    ]


async def _address_hashes(session: AsyncSession, lead_ids: set[int]) -> dict[int, frozenset[str]]:
    """Each lead's addresses, now and before a change, as hashes (an erased lead's current one is not its own)."""
    found: dict[int, set[str]] = {lead_id: set() for lead_id in lead_ids}
    current = select(Lead.id, Lead.email).where(Lead.id.in_(lead_ids), Lead.erased_at.is_(None))
    for lead_id, address in await session.execute(current):
        found[lead_id].add(email_hash(address))
    former = select(FormerAddress.lead_id, FormerAddress.email_hash).where(FormerAddress.lead_id.in_(lead_ids))
    for lead_id, digest in await session.execute(former):
        found[lead_id].add(digest)
    return {lead_id: frozenset(hashes) for lead_id, hashes in found.items()}


async def match_message(
    session: AsyncSession,
    headers: InboundHeaders,
    signer: Signer,
    *,
    bounce_domain: str | None = None,
    window_days: int = 30,
) -> Match:
    """The send and lead the message answers (or why none), from the sends the database holds."""
    sends = await recent_sends(session, headers, signer, window_days=window_days)
    return match_inbound(headers, sends, signer, bounce_domain=bounce_domain or None, window_days=window_days)


async def list_inbound(
    session: AsyncSession, *, kind: str | None = None, unmatched: bool = False, limit: int = 100
) -> list[InboundMessage]:
    """The newest inbound messages first: of one kind, or only those no lead was named for."""
    query = select(InboundMessage).order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
    if kind is not None:
        query = query.where(InboundMessage.kind == kind)
    if unmatched:
        query = query.where(InboundMessage.lead_id.is_(None))
    return list((await session.execute(query.limit(limit))).scalars())


async def count_inbound(session: AsyncSession) -> dict[tuple[str | None, str], int]:
    """How many inbound messages are stored, by (kind, status); kind None: not classified."""
    rows = await session.execute(
        select(InboundMessage.kind, InboundMessage.status, func.count()).group_by(
            InboundMessage.kind, InboundMessage.status
        )
    )
    return {(kind, status): int(n) for kind, status, n in rows.all()}


async def get_inbound(session: AsyncSession, inbound_id: int) -> InboundMessage | None:
    """One stored inbound message by its id."""
    return await session.get(InboundMessage, inbound_id)


#: kinds whose row may name its person only inside the report (a bounce's or complaint's recipient)
REPORT_KINDS = ("hard_bounce", "soft_bounce", "policy_block", "complaint")
#: what replaces an erased person's address in the evidence other people's messages keep
ERASED_ADDRESS = "[erased address]"
_ANY_ADDRESS = re.compile(r"[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")
#: rows read per round when looking for a person in what was stored
_SCAN_BATCH = 100


async def forget_inbound(
    session: AsyncSession, lead_id: int | None, hashes: Iterable[str], addresses: Iterable[str] = ()
) -> dict[str, int]:
    """Delete a person's inbound messages and scrub their address from others' (the caller commits): the lead's,
    any sent from one of their addresses, and any bounce or complaint about one of them (by hash), matched or
    not; then the evidence other messages keep ("contact jane@… instead") loses `addresses`, the ones known in
    plain text. How many rows were deleted ("inbound_messages") and scrubbed ("inbound_mentions"), when any."""
    wanted = sorted(set(hashes))
    m = InboundMessage
    which: list[ColumnElement[bool]] = [m.sender_hash.in_(wanted), m.about_hash.in_(wanted)]
    if lead_id is not None:
        which.append(m.lead_id == lead_id)
    older = await _reports_naming(session, set(wanted))
    if older:
        which.append(m.id.in_(older))
    done = await session.execute(delete(m).where(or_(*which)).returning(m.id))
    counts = {"inbound_messages": len(done.all())}
    counts["inbound_mentions"] = await _scrub_mentions(session, {a.strip().lower() for a in addresses if a})
    return {name: n for name, n in counts.items() if n}


async def _reports_naming(session: AsyncSession, hashes: set[str]) -> list[int]:
    """Bounces and complaints stored without `about_hash` (before migration 0012, or with no recipient read)
    that name one of the addresses anywhere in their body or evidence."""
    m = InboundMessage
    if not hashes:
        return []
    query = select(m.id, m.raw, m.evidence).where(m.about_hash.is_(None), m.kind.in_(REPORT_KINDS))
    found: list[int] = []
    after = 0
    while True:
        chunk = (await session.execute(query.where(m.id > after).order_by(m.id).limit(_SCAN_BATCH))).all()
        for row_id, raw, evidence in chunk:
            text = (raw or b"").decode("latin-1") + json.dumps(evidence or {})
            if any(email_hash(address) in hashes for address in set(_ANY_ADDRESS.findall(text.lower()))):
                found.append(row_id)
        if len(chunk) < _SCAN_BATCH:
            return found
        after = chunk[-1].id


async def _scrub_mentions(session: AsyncSession, addresses: set[str]) -> int:
    """Replace `addresses` in the evidence of the messages that remain; how many rows changed."""
    m = InboundMessage
    changed = 0
    for address in sorted(addresses):
        like = func.lower(cast(m.evidence, Text)).contains(address, autoescape=True)
        for row_id, evidence in (await session.execute(select(m.id, m.evidence).where(like))).all():
            await session.execute(update(m).where(m.id == row_id).values(evidence=_without(evidence, address)))
            changed += 1
    return changed


def _without(value: Any, address: str) -> Any:
    """`value` (evidence: JSON) with every case of `address` in its strings replaced."""
    if isinstance(value, str):
        return re.sub(re.escape(address), ERASED_ADDRESS, value, flags=re.IGNORECASE)
    if isinstance(value, list):
        return [_without(item, address) for item in value]
    if isinstance(value, dict):
        return {key: _without(item, address) for key, item in value.items()}
    return value


#: what a message's evidence keeps of the person's own words, dropped with the raw body: the reply's text, and the
#: "contact X instead" an auto-reply names (another person)
PERSONAL_EVIDENCE = ("reply_text", "contact_hint")


def _masked(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence with the recipient's mailbox masked in a diagnostic (messages stored before reports masked it)."""
    if isinstance(evidence.get("diagnostic"), str):
        evidence["diagnostic"] = mask_addresses(evidence["diagnostic"])
    reasons = evidence.get("reasons")
    if isinstance(reasons, list):
        evidence["reasons"] = [
            mask_addresses(reason) if isinstance(reason, str) and reason.startswith("diagnostic:") else reason
            for reason in reasons
        ]
    return evidence


#: rows read and cleared per round of `drop_old_raw`, so an old backlog is never loaded at once
RETENTION_BATCH = 500


async def drop_old_raw(
    session: AsyncSession, retention_days: int, *, now: datetime | None = None, batch: int = RETENTION_BATCH
) -> int:
    """Drop what is personal in messages received more than `retention_days` ago (the caller commits): the raw
    body, the reply's own words kept in the evidence (`PERSONAL_EVIDENCE`), and the recipient's mailbox in a
    bounce's diagnostic (masked). What was read from them (kind,
    the lead and send, the return date, the verdict's reasons) stays. A message still waiting for its signal
    keeps everything until it is signalled, so the lead's workflow and the rep get the reply's words. Works
    `batch` rows at a time. How many messages lost something."""
    if retention_days < 1:
        raise ValueError(f"retention_days {retention_days}: at least 1 day (LEADLOOP_INBOUND_RETENTION_DAYS)")
    if batch < 1:
        raise ValueError(f"batch {batch}: at least 1 row")
    before = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    m = InboundMessage
    personal = [m.evidence[key].as_string().is_not(None) for key in PERSONAL_EVIDENCE]
    not_waiting = or_(m.status != "pending", m.lead_id.is_(None))  # what `signal_pending` would still signal
    old = select(m.id, m.evidence).where(m.received_at < before, not_waiting, or_(m.raw.is_not(None), *personal))
    done, after = 0, 0
    while True:
        chunk = (await session.execute(old.where(m.id > after).order_by(m.id).limit(batch))).all()
        for row_id, evidence in chunk:
            kept = _masked({key: value for key, value in (evidence or {}).items() if key not in PERSONAL_EVIDENCE})
            await session.execute(update(m).where(m.id == row_id).values(raw=None, evidence=kept))
        done += len(chunk)
        if len(chunk) < batch:
            return done
        after = chunk[-1].id
