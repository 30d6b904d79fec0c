"""The one inbound pipeline: classify, match, store (and suppress at once), then signal the lead's workflow.

Every channel (the IMAP reader, the provider webhooks, the demo's mailbox) ends here, in two steps with a
commit between them, the same at-least-once, applied-once contract as engagement events:

1. `ingest_message` (raw mail) or `ingest_event` (a provider's verified webhook event) stores the message
   with its verdict and match; a hard bounce, complaint or unsubscribe request puts the address on the
   suppression list in the same transaction, so the very next send stops even before the workflow hears of it;
2. `signal_pending` signals each stored, matched message to its lead's workflow (`LeadClient.inbound`,
   applied once by the row's id) and marks it signalled. A crash between the two re-signals on the next
   pass (`InboundRelay`, which the HTTP service runs); the workflow ignores the repeat.
"""

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.inbound import InboundVerdict, classify
from leadloop.domain.inbound import message as mime
from leadloop.domain.inbound.reports import mask_addresses
from leadloop.domain.intake import normalise_email
from leadloop.domain.mail import REP_NOTIFICATION_CADENCE, email_hash
from leadloop.domain.matching import InboundHeaders, Match, sender_address
from leadloop.domain.models import REPLY_TEXT_CHARS, InboundInput
from leadloop.domain.text import REQUEST_CONTROL
from leadloop.domain.times import as_utc
from leadloop.domain.tokens import Signer
from leadloop.domain.webhooks import ProviderEvent
from leadloop.infra.db import FormerAddress, InboundMessage, Lead, Outbox, suppress
from leadloop.services.events import every
from leadloop.services.inbound import REPORT_KINDS, Stored, clean_message_id, match_message, store_inbound
from leadloop.services.inbound_retention import Retention
from leadloop.services.lead_client import LeadClient

log = logging.getLogger("leadloop.inbound")

#: kinds that put the address on the suppression list as soon as they are stored
SUPPRESSING = frozenset({"hard_bounce", "complaint", "unsubscribe_request"})
#: kinds about one address (a bounce's or complaint's recipient, an unsubscribe request's sender): whose it is
#: decides whether the lead is acted on
NAMED_KINDS = SUPPRESSING | {"soft_bounce"}
#: rows signalled per pass of `signal_pending`
BATCH = 200
#: leads signalled at once in a pass (each lead's messages one after another, in the order they came)
SIGNALS_AT_ONCE = 16
#: how far back a provider's event may name a send by the recipient's address alone
MATCH_WINDOW_DAYS = 30
#: a send minutes "after" the provider's event is clock skew between leadloop and the provider
SEND_SKEW = timedelta(minutes=10)


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
    headers = headers_of(raw, received_at=received_at, envelope_recipients=envelope_recipients)
    already = await stored_before(session, source, source_key, headers.message_id)
    if already is not None:  # read again (a crash before the mark, a second copy): stored and acted on once
        return Stored(id=already, new=False)
    verdict = classify(raw)
    if verdict.answers:  # a DSN or ARF report names the original in its attached headers
        headers = _with_reference(headers, verdict.answers)
    match = await match_message(session, headers, signer, bounce_domain=bounce_domain)
    status = "pending" if match.matched else "unmatched"
    evidence = evidence_of(verdict, headers.subject)
    if match.matched and verdict.challenge:
        status = "ignored"
        evidence["ignored"] = "a challenge-response system's challenge: leadloop never answers one"
    if status == "pending":
        named = sender_address(headers.sender) if verdict.kind == "unsubscribe_request" else verdict.lead_email
        status = await _act_at_once(
            session, verdict.kind, match, evidence, named=named, code=verdict.status, trusted=match.rule == "verp"
        )
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
        about=verdict.lead_email if verdict.kind in REPORT_KINDS else None,
    )


async def ingest_event(
    session: AsyncSession,
    event: ProviderEvent,
    *,
    raw: bytes,
    signer: Signer,
    received_at: datetime | None = None,
    window_days: int = MATCH_WINDOW_DAYS,
) -> Stored:
    """Match and store one verified provider event (a bounce, block or complaint), suppressing at once as a
    mailed DSN would (the caller commits). Stored under `webhook:<provider>` and the provider's event id, so a
    replayed event finds its row and changes nothing more; a matched event is left `pending` for
    `signal_pending`, one no send can be tied to is kept `unmatched`, never guessed onto a lead.

    Args:
        raw: what is kept as the message: the request body, or the one event's JSON of a batch.
        received_at: when leadloop received it (now by default); the matching window counts from when the
            provider says the event happened.
    """
    source, key = f"webhook:{event.provider}", event_key(event.event_id)
    already = await session.scalar(
        select(InboundMessage.id).where(InboundMessage.source == source, InboundMessage.source_key == key)
    )
    if already is not None:  # a provider's retry or a replay: stored and applied once
        return Stored(id=already, new=False)
    address = usable_address(event.recipient)
    match = await match_event(session, event, address, signer, window_days=window_days)
    evidence = event_evidence(event)
    status = "pending" if match.matched else "unmatched"
    if status == "pending":
        status = await _act_at_once(
            session, event.kind, match, evidence, named=address, code=event.status_code, verified=True
        )
    return await store_inbound(
        session,
        source=source,
        source_key=key,
        raw=raw,
        message_id=None,  # the provider's event is no message of its own; the send's Message-ID is in evidence
        sender=address,  # the person the event is about: `leadloop forget` finds it by this address's hash
        received_at=received_at or datetime.now(UTC),
        match=match,
        kind=event.kind,
        evidence=evidence,
        status=status,
        about=address,
    )


def event_key(event_id: str) -> str:
    """The provider's event id as the row's source key; an id too long or unstorable is kept as its hash."""
    if 0 < len(event_id) <= 255 and not REQUEST_CONTROL.search(event_id):
        return event_id
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def usable_address(recipient: str) -> str | None:
    """The event's recipient normalised as leads' addresses are, or None when it is no address."""
    if REQUEST_CONTROL.search(recipient):
        return None
    try:
        return normalise_email(recipient)
    except ValueError:
        return None


def _clean(text: str | None, limit: int) -> str | None:
    """Text a provider sent, as it can be stored in any database (no control characters, no half characters)."""
    return REQUEST_CONTROL.sub(" ", text)[:limit] if text else None


def event_evidence(event: ProviderEvent) -> dict[str, Any]:
    """What is kept of a provider's event beside its raw JSON: who reported what, and the send it names."""
    kept: dict[str, Any] = {
        "provider": event.provider,
        "raw_type": _clean(event.raw_type, 200),
        "status": _clean(event.status_code, 32),
        "diagnostic": _clean(mask_addresses(event.diagnostic) if event.diagnostic else None, 2000),
        "answers": _clean(event.message_id, 998),
        "occurred_at": event.occurred_at.isoformat(),
        "confidence": "high",
        "reasons": [f"{event.provider} reported {_clean(event.raw_type, 200)} (its webhook verified)"],
    }
    return {name: value for name, value in kept.items() if value is not None}


async def match_event(
    session: AsyncSession, event: ProviderEvent, address: str | None, signer: Signer, *, window_days: int
) -> Match:
    """The send a provider's event is about: by leadloop's Message-ID, which providers pass on; else by the
    recipient's address, when exactly one lead has (or had) it and an email went to that lead within
    `window_days` before the event. Anything less certain is no match."""
    if event.message_id:
        headers = InboundHeaders(received_at=event.occurred_at, references=event.message_id)
        found = await match_message(session, headers, signer, window_days=window_days)
        if found.matched or found.reason.startswith("ambiguous"):
            return found
    if address is None:
        return Match(reason="no match: the provider named no send of leadloop's, and no usable recipient address")
    leads = set((await session.execute(select(Lead.id).where(Lead.email == address))).scalars())
    former = select(FormerAddress.lead_id).where(FormerAddress.email_hash == email_hash(address))
    leads |= set((await session.execute(former)).scalars())
    if not leads:
        return Match(reason="no match: no send of leadloop's is named, and no lead has the recipient's address")
    if len(leads) > 1:
        return Match(reason=f"ambiguous: the recipient's address is that of leads {', '.join(map(str, sorted(leads)))}")
    (lead_id,) = leads
    at = as_utc(event.occurred_at).astimezone(UTC)  # SQLite compares text: both sides in UTC
    sends = select(Outbox.key).where(
        Outbox.lead_id == lead_id,
        Outbox.cadence != REP_NOTIFICATION_CADENCE,
        Outbox.sent_at >= at - timedelta(days=window_days),
        Outbox.sent_at <= at + SEND_SKEW,
    )
    last = await session.scalar(sends.order_by(Outbox.sent_at.desc()).limit(1))
    if last is None:
        return Match(reason=f"no match: lead {lead_id} has the address, but no email went to it in {window_days} days")
    return Match(
        reason=f"the recipient's address is lead {lead_id}'s, last sent {last}", outbox_key=last, lead_id=lead_id
    )


def _with_reference(headers: InboundHeaders, message_id: str) -> InboundHeaders:
    return replace(headers, references=f"{headers.references or ''} {message_id}".strip())


async def stored_before(session: AsyncSession, source: str, source_key: str, message_id: str | None) -> int | None:
    """The row a message was stored in before: under where it was read, or under its Message-ID."""
    found = await session.scalar(
        select(InboundMessage.id).where(InboundMessage.source == source, InboundMessage.source_key == source_key)
    )
    if found is None and (cleaned := clean_message_id(message_id)) is not None:
        found = await session.scalar(select(InboundMessage.id).where(InboundMessage.message_id == cleaned))
    return found


async def _act_at_once(
    session: AsyncSession,
    kind: str,
    match: Match,
    evidence: dict[str, Any],
    *,
    named: str | None,
    code: str | None = None,
    trusted: bool = False,
    verified: bool = False,
) -> str:
    """What a matched message does before its workflow hears of it, and the row's status (`pending`: signal it;
    `ignored`: keep it, touch no lead, the reason in its evidence).

    A hard bounce, complaint or unsubscribe request suppresses the lead's address in the same transaction. Mail
    about a notification to a rep is no lead's mail. The address a report names (`named`: a bounce's or
    complaint's recipient, an unsubscribe request's sender) decides whose it is:

    - the lead's current address, or none named (a feedback loop that redacts it): the lead's;
    - one of the lead's former addresses, or any other address a provider's verified webhook names (`verified`:
      the provider knows which recipient bounced): that address is suppressed, the lead goes on;
    - an address the lead never had, in a report tied to the send by the VERP recipient leadloop signed
      (`trusted`): the lead's — her mail was forwarded to where it bounced; any other such report is ignored,
      so a forged one that names a guessed Message-ID suppresses no one.
    """
    if match.lead_id is None:
        return "pending"
    lead = await session.get(Lead, match.lead_id)
    if lead is None or lead.erased_at is not None:
        evidence["ignored"] = "the lead is erased"
        return "ignored"
    if match.outbox_key and await _about_rep_mail(session, match.outbox_key):
        evidence["ignored"] = f"about {match.outbox_key}, a notification to a rep: not the lead's mail"
        return "ignored"
    if kind not in NAMED_KINDS:
        return "pending"
    detail = f"{kind.replace('_', ' ')}" + (f" {code}" if code else "")
    named_hash = email_hash(named) if named else None
    if kind == "unsubscribe_request" and named_hash is None:
        evidence["ignored"] = "an unsubscribe request without a usable sender address: nothing suppressed"
        return "ignored"
    if named_hash is None or named_hash == email_hash(lead.email):
        if kind in SUPPRESSING:
            await suppress(session, lead.email, kind, detail[:500])
        return "pending"
    assert named is not None
    if verified or named_hash in await _former_hashes(session, lead.id):
        if kind in SUPPRESSING:
            await suppress(session, named, kind, detail[:500])
        evidence["ignored"] = "about an address the lead no longer has: " + (
            "that address suppressed, the lead goes on" if kind in SUPPRESSING else "the lead goes on"
        )
        return "ignored"
    if trusted and kind in ("hard_bounce", "soft_bounce", "complaint"):
        evidence["forwarded"] = "the report names an address the lead never had; the send it names went to the lead"
        if kind in SUPPRESSING:
            await suppress(session, lead.email, kind, detail[:500])
        return "pending"
    evidence["ignored"] = "names an address that is not the lead's, and nothing signed ties it to the send"
    return "ignored"


async def _about_rep_mail(session: AsyncSession, outbox_key: str) -> bool:
    """True when the send is a notification to a rep (kept in the outbox under the lead, sent to the rep)."""
    cadence = await session.scalar(select(Outbox.cadence).where(Outbox.key == outbox_key))
    return cadence == REP_NOTIFICATION_CADENCE


async def _former_hashes(session: AsyncSession, lead_id: int) -> set[str]:
    rows = await session.execute(select(FormerAddress.email_hash).where(FormerAddress.lead_id == lead_id))
    return set(rows.scalars())


def signal_of(row: InboundMessage) -> InboundInput:
    """The workflow's signal for one stored, matched message; ValueError when the row cannot be one (no kind:
    a message nobody classified is never taken for a human reply, which would hand the lead over)."""
    if not row.kind:
        raise ValueError("it was never classified: no kind to signal")
    evidence = row.evidence or {}
    return InboundInput(
        id=f"inbound-{row.id}",
        kind=row.kind,  # pydantic checks it is one of the kinds the workflow knows
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


#: RPC statuses that say Temporal (or the way to it) is unwell, not the message: the pass stops and the rows stay
#: pending for the next one. Any other refusal is the row's own (its signal will never go through): it is set aside.
TEMPORAL_UNWELL = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNIMPLEMENTED,
        RPCStatusCode.DATA_LOSS,
        RPCStatusCode.UNAUTHENTICATED,  # leadloop's credentials, not the message: every row would fail alike
        RPCStatusCode.PERMISSION_DENIED,
    }
)


async def signal_pending(
    sessions: async_sessionmaker[AsyncSession], client: Client, *, ids: Sequence[int] | None = None, limit: int = BATCH
) -> int:
    """Signal stored, matched messages to their leads' workflows, oldest first and up to `SIGNALS_AT_ONCE` leads
    at a time; rows are marked signalled after their signals went through (a crash in between signals them again,
    and the workflow applies each once).
    A row that can never be signalled (no running workflow, never classified, refused by Temporal for itself)
    is marked `ignored` with why in its evidence, and the pass goes on; Temporal being unreachable stops the
    pass (RPCError) with the rest left pending. How many were signalled."""
    async with sessions() as session:
        query = select(InboundMessage).where(InboundMessage.status == "pending", InboundMessage.lead_id.is_not(None))
        if ids is not None:
            query = query.where(InboundMessage.id.in_(list(ids)))
        rows = list((await session.execute(query.order_by(InboundMessage.id).limit(limit))).scalars())
        outcomes: dict[int, str | None] = {}  # row id -> None (signalled) or why it never will be
        gate = asyncio.Semaphore(SIGNALS_AT_ONCE)

        async def one_lead(theirs: list[InboundMessage]) -> None:
            async with gate:
                for row in theirs:  # one lead's messages in the order they came
                    outcomes[row.id] = await _deliver(client, row)

        by_lead: dict[int, list[InboundMessage]] = {}
        for row in rows:
            by_lead.setdefault(row.lead_id or 0, []).append(row)
        try:
            failed = [
                exc
                for exc in await asyncio.gather(*map(one_lead, by_lead.values()), return_exceptions=True)
                if isinstance(exc, BaseException)
            ]
        finally:  # what went through is marked even when Temporal went away part way
            for row in rows:
                if row.id not in outcomes:
                    continue
                why_not = outcomes[row.id]
                if why_not is None:
                    row.status, row.signalled_at = "signalled", datetime.now(UTC)
                else:
                    row.status = "ignored"
                    row.evidence = {**(row.evidence or {}), "ignored": why_not}
                log.info("inbound %s (%s) for lead %s: %s", row.id, row.kind, row.lead_id, row.status)
            await session.commit()
        if failed:
            raise failed[0]
        return sum(1 for why_not in outcomes.values() if why_not is None)


async def _deliver(client: Client, row: InboundMessage) -> str | None:
    """Signal one row to its lead's workflow: None when it went through, else why it never will. Raises the
    RPCError of a Temporal that is unwell (`TEMPORAL_UNWELL`), which is no fault of the row."""
    assert row.lead_id is not None
    try:
        message = signal_of(row)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())  # no input values
        return f"cannot be signalled: {problems}"[:1000]
    except ValueError as exc:
        return f"cannot be signalled: {exc}"[:1000]
    try:
        await LeadClient(client, row.lead_id).inbound(message)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "the lead has no running workflow"
        if exc.status in TEMPORAL_UNWELL:
            raise
        log.warning("inbound %s: Temporal refused its signal (%s: %s)", row.id, exc.status.name, exc.message)
        return f"Temporal refused its signal ({exc.status.name}: {exc.message})"[:1000]
    return None


async def has_pending(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether any stored, matched message still waits for its signal."""
    async with sessions() as session:
        query = select(InboundMessage.id).where(InboundMessage.status == "pending", InboundMessage.lead_id.is_not(None))
        return await session.scalar(query.limit(1)) is not None


class InboundRelay:
    """Signals stored inbound messages to their leads' workflows: right after they are stored, and every
    `interval` seconds whatever is still pending (Temporal was down, or the process stopped in between).

    The HTTP service runs one for its provider webhooks; a message stays `pending` in the database until its
    signal went through, so an outage loses nothing.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Callable[[], Awaitable[Client]],
        *,
        retention: Retention | None = None,
    ) -> None:
        """`retention`: the raw bodies past LEADLOOP_INBOUND_RETENTION_DAYS are dropped from the relay's rounds."""
        self.sessions = sessions
        self._client = client
        self.retention = retention
        self._tasks: set[asyncio.Task[int]] = set()

    def notify(self, ids: Sequence[int]) -> None:
        """These rows were just stored and committed: signal them now, without holding up the caller."""
        if not ids:
            return
        task = asyncio.get_running_loop().create_task(self.signal(ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def signal(self, ids: Sequence[int] | None = None) -> int:
        """Signal pending rows (these, or all); a failure is logged and leaves them pending for the next round."""
        try:
            return await signal_pending(self.sessions, await self._client(), ids=ids)
        except Exception as exc:  # Temporal down, the database busy: the rows stay pending
            log.warning("inbound messages stay pending, to be signalled again (%s: %s)", type(exc).__name__, exc)
            return 0

    async def relay(self, interval: float, stop: asyncio.Event) -> None:
        """Signal what is pending every `interval` seconds until `stop` is set."""
        await every(interval, stop, self.round, "pending inbound message(s)")

    async def round(self) -> int:
        """One round of the relay: what is pending signalled, then (once a day) the bodies past retention dropped.
        How many were signalled."""
        sent = await self.signal() if await has_pending(self.sessions) else 0
        if self.retention is not None:
            await self.retention.run()  # a failure is the round's: logged by `every`, tried again next round
        return sent

    async def drain(self) -> None:
        """Wait for the signals under way (shutdown, tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
