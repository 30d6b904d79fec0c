"""The one inbound pipeline: classify, match, store (and suppress at once), then signal the lead's workflow.

Every channel (the IMAP reader, the provider webhooks, the demo's mailbox) ends here, in two steps with a
commit between them, the same at-least-once, applied-once contract as engagement events:

1. `ingest_message` (or a webhook's own ingest) stores the message with its verdict and match; a hard
   bounce, complaint or unsubscribe request puts the address on the suppression list in the same
   transaction, so the very next send stops even before the workflow hears of it;
2. `signal_pending` signals each stored, matched message to its lead's workflow (`LeadClient.inbound`,
   applied once by the row's id) and marks it signalled. A crash between the two re-signals on the next
   pass; the workflow ignores the repeat.
"""

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.inbound import InboundVerdict, classify
from leadloop.domain.inbound import message as mime
from leadloop.domain.mail import email_hash
from leadloop.domain.matching import InboundHeaders, Match
from leadloop.domain.models import REPLY_TEXT_CHARS, InboundInput
from leadloop.domain.tokens import Signer
from leadloop.infra.db import InboundMessage, Lead, suppress
from leadloop.services.inbound import Stored, match_message, store_inbound
from leadloop.services.lead_client import LeadClient

log = logging.getLogger("leadloop.inbound")

#: kinds that put the address on the suppression list as soon as they are stored
SUPPRESSING = frozenset({"hard_bounce", "complaint", "unsubscribe_request"})
#: rows signalled per pass of `signal_pending`
BATCH = 200


def headers_of(raw: bytes, *, received_at: datetime, envelope_recipients: Sequence[str] = ()) -> InboundHeaders:
    """What matching reads of a raw message (never raises: a broken message has fewer headers)."""
    evidence: list[str] = []
    try:
        msg = mime.parse(raw, evidence)
    except Exception:  # the classifier records why; matching then has nothing to go on
        return InboundHeaders(received_at=received_at, recipients=tuple(envelope_recipients))
    recipients = [*envelope_recipients]
    for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
        recipients += [found for found in (mime.address(msg, name),) if found]
    return InboundHeaders(
        received_at=received_at,
        message_id=mime.header(msg, "Message-ID") or None,
        in_reply_to=mime.header(msg, "In-Reply-To") or None,
        references=mime.header(msg, "References") or None,
        sender=mime.header(msg, "From") or None,
        recipients=tuple(dict.fromkeys(recipients)),
        subject=mime.header(msg, "Subject") or None,
    )


def evidence_of(verdict: InboundVerdict, subject: str | None) -> dict[str, Any]:
    """What is kept of a verdict beside the raw body (the reply's own words go when the body does)."""
    kept: dict[str, Any] = {"confidence": verdict.confidence, "reasons": list(verdict.evidence)}
    optional = {
        "answers": verdict.answers,
        "status": verdict.status,
        "left_company": verdict.left_company or None,
        "contact_hint": verdict.contact_hint,
        "challenge": verdict.challenge or None,
        "subject": (subject or "")[:998] or None,
        "reply_text": verdict.reply_text[:20_000] or None,
    }
    kept.update({key: value for key, value in optional.items() if value is not None})
    return kept


async def ingest_message(
    session: AsyncSession,
    raw: bytes,
    *,
    source: str,
    source_key: str,
    signer: Signer,
    bounce_domain: str | None = None,
    received_at: datetime | None = None,
    envelope_recipients: Sequence[str] = (),
) -> Stored:
    """Classify, match and store one raw message (the caller commits). Matched messages are left `pending`
    for `signal_pending`; a challenge-response is kept but `ignored` (leadloop never answers one); a message
    no rule ties to a lead is kept `unmatched`, never guessed onto one."""
    received_at = received_at or datetime.now(UTC)
    verdict = classify(raw)
    headers = headers_of(raw, received_at=received_at, envelope_recipients=envelope_recipients)
    if verdict.answers:  # a DSN or ARF report names the original in its attached headers
        headers = _with_reference(headers, verdict.answers)
    match = await match_message(session, headers, signer, bounce_domain=bounce_domain)
    status = "pending" if match.matched else "unmatched"
    evidence = evidence_of(verdict, headers.subject)
    if match.matched and verdict.challenge:
        status = "ignored"
        evidence["ignored"] = "a challenge-response system's challenge: leadloop never answers one"
    if status == "pending":
        status = await _suppress_at_once(session, verdict, match, evidence)
    return await store_inbound(
        session,
        source=source,
        source_key=source_key,
        raw=raw,
        message_id=headers.message_id,
        sender=headers.sender,
        received_at=received_at,
        match=match,
        kind=verdict.kind,
        evidence=evidence,
        return_date=verdict.return_date,
        status=status,
    )


def _with_reference(headers: InboundHeaders, message_id: str) -> InboundHeaders:
    return replace(headers, references=f"{headers.references or ''} {message_id}".strip())


async def _suppress_at_once(
    session: AsyncSession, verdict: InboundVerdict, match: Match, evidence: dict[str, Any]
) -> str:
    """Suppress the address a hard bounce, complaint or unsubscribe request is about; the row's status.

    A bounce naming another address than the lead's current one (the lead changed it since that send) suppresses
    the bounced address and leaves the lead alone: the row is `ignored`, with the reason in its evidence.
    """
    if verdict.kind not in SUPPRESSING or match.lead_id is None:
        return "pending"
    lead = await session.get(Lead, match.lead_id)
    if lead is None or lead.erased_at is not None:
        evidence["ignored"] = "the lead is erased"
        return "ignored"
    address = verdict.lead_email if verdict.kind == "hard_bounce" and verdict.lead_email else lead.email
    detail = f"{verdict.kind.replace('_', ' ')}" + (f" {verdict.status}" if verdict.status else "")
    await suppress(session, address, verdict.kind, detail[:500])
    if email_hash(address) != email_hash(lead.email):
        evidence["ignored"] = "the bounced address is no longer the lead's: suppressed, the lead goes on"
        return "ignored"
    return "pending"


def signal_of(row: InboundMessage) -> InboundInput:
    """The workflow's signal for one stored, matched message."""
    evidence = row.evidence or {}
    return InboundInput(
        id=f"inbound-{row.id}",
        kind=row.kind or "human_reply",
        received_at=row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC),
        source=row.source,
        outbox_key=row.outbox_key,
        message_id=row.message_id,
        subject=str(evidence.get("subject") or "")[:998],
        reply_text=str(evidence.get("reply_text") or "")[:REPLY_TEXT_CHARS],
        return_date=row.return_date,
        left_company=bool(evidence.get("left_company")),
        contact_hint=(str(evidence["contact_hint"])[:500] if evidence.get("contact_hint") else None),
        challenge=bool(evidence.get("challenge")),
        status=(str(evidence["status"])[:32] if evidence.get("status") else None),
        confidence=evidence.get("confidence") if evidence.get("confidence") in ("high", "medium", "low") else "high",
    )


async def signal_pending(
    sessions: async_sessionmaker[AsyncSession], client: Client, *, ids: Sequence[int] | None = None, limit: int = BATCH
) -> int:
    """Signal stored, matched messages to their leads' workflows, oldest first; each row is marked signalled
    after its signal went through (a crash in between signals it again, and the workflow applies it once).
    A lead without a workflow is marked `ignored`. How many were signalled."""
    async with sessions() as session:
        query = select(InboundMessage).where(InboundMessage.status == "pending", InboundMessage.lead_id.is_not(None))
        if ids is not None:
            query = query.where(InboundMessage.id.in_(list(ids)))
        rows = list((await session.execute(query.order_by(InboundMessage.id).limit(limit))).scalars())
        done = 0
        for row in rows:
            assert row.lead_id is not None
            try:
                await LeadClient(client, row.lead_id).inbound(signal_of(row))
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                row.status = "ignored"
                row.evidence = {**(row.evidence or {}), "ignored": "the lead has no running workflow"}
            else:
                row.status, row.signalled_at = "signalled", datetime.now(UTC)
                done += 1
            await session.commit()
            log.info("inbound %s (%s) for lead %s: %s", row.id, row.kind, row.lead_id, row.status)
        return done
