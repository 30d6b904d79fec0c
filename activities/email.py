"""The send_email activity: render, claim the outbox row, deliver over SMTP exactly once."""

import asyncio
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiosmtplib
from jinja2 import TemplateError
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadloop.domain.cadence import Step
from leadloop.domain.mail import (
    REP_NOTIFICATION_CADENCE,
    Envelope,
    build_message,
    classify_reply,
    email_hash,
    message_id,
    outbox_key,
    parse_sender,
    wire_bytes,
)
from leadloop.domain.metrics import EMAIL_FAILURES, EMAILS_SENT, REP_NOTIFICATION_FAILURES, REP_NOTIFICATIONS
from leadloop.domain.models import NotifyRepInput, NotifyRepResult, SendEmailInput, SendEmailResult
from leadloop.domain.templates import (
    LEAD_FIELDS,
    EmailRenderer,
    RenderedEmail,
    TemplateMissing,
    email_context,
    template_error_text,
)
from leadloop.domain.tokens import Signer, Token
from leadloop.domain.tracking import TrackingLinks, track_html, track_text, tracked_links, urls_in
from leadloop.domain.verp import bounce_address
from leadloop.domain.visits import shown_page
from leadloop.infra.db import Assignment, EngagementEvent, Lead, Outbox, Rep, Suppression, Team, insert_or_get, suppress
from leadloop.infra.settings import Settings

log = logging.getLogger(__name__)


class _Uncertain(Exception):
    """The message data went out but the server's reply never came (RFC 1047)."""


class _Refused(Exception):
    def __init__(self, verdict: str, code: int, text: str) -> None:
        self.verdict, self.code, self.text = verdict, code, text
        super().__init__(f"{code} {text}")


class _Unsendable(_Refused):
    """Refused here, before any of the message went out: no server reply would change (an address this relay
    cannot carry). Handled like a server's permanent refusal: the send is blocked until an operator retries."""

    def __init__(self, text: str) -> None:
        super().__init__("refuse", 0, text)
        self.args = (text,)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 20.0
    messages_per_connection: int = 100  # 1: a new connection for every message
    idle_seconds: float = 10.0  # an idle connection older than this is closed, not reused

    @classmethod
    def from_settings(cls, settings: Settings) -> "SmtpConfig":
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            timeout=settings.smtp_timeout,
            messages_per_connection=settings.smtp_messages_per_connection,
            idle_seconds=settings.smtp_idle_seconds,
        )


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0
    reused: bool = False


class SmtpPool:
    """SMTP connections kept open between messages: one transaction at a time on each, at most
    `messages_per_connection` messages on one, none reused after `idle_seconds` idle or after any error.

    Reuse never weakens "never twice": a connection found closed fails at MAIL FROM, before any message
    data, and the message is retried on a fresh connection at once.
    """

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._idle: list[_Connection] = []
        self.opened = 0  # connections opened, for tests and the benchmark

    async def _open(self) -> _Connection:
        config = self.config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            timeout=config.timeout,
            start_tls=config.starttls if config.starttls else False,
            use_tls=config.use_tls,
        )
        await smtp.connect()
        try:
            if config.username:
                await smtp.login(config.username, config.password or "")
        except BaseException:
            smtp.close()
            raise
        self.opened += 1
        return _Connection(smtp)

    async def fresh(self) -> _Connection:
        """A new connection, never one from the pool."""
        return await self._open()

    async def acquire(self) -> _Connection:
        """An idle connection still young and open, or a new one."""
        now = time.monotonic()
        fresh = [c for c in self._idle if c.smtp.is_connected and now - c.idle_since < self.config.idle_seconds]
        for stale in self._idle:
            if stale not in fresh:
                stale.smtp.close()  # no QUIT: a hung server must not hold up this send
        self._idle = fresh
        if self._idle:
            conn = self._idle.pop()
            conn.reused = True
            return conn
        return await self._open()

    async def release(self, conn: _Connection, reusable: bool) -> None:
        """Back to the pool after a completed transaction, or closed."""
        conn.sent += 1 if reusable else 0
        if reusable and conn.smtp.is_connected and conn.sent < self.config.messages_per_connection:
            conn.idle_since, conn.reused = time.monotonic(), False
            self._idle.append(conn)
        else:
            await _quit(conn.smtp)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _quit(conn.smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


class EmailActivities:
    """Holds what sending needs: the sessionmaker, the renderer and the SMTP relay's settings."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        renderer: EmailRenderer,
        smtp: SmtpConfig,
        settings: Settings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.renderer = renderer
        self.smtp = smtp
        self.smtp_pool = SmtpPool(smtp)
        self.settings = settings
        self.default_sender = parse_sender(settings.from_address)
        self.signer = Signer(settings.signing_keys())
        self._site_origins = frozenset().union(*settings.site_origins().values())

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendEmailResult:
        labels = {"cadence": input.cadence, "step": input.step_id}
        try:
            result = await self._send_email(input)
        except ApplicationError as err:
            EMAIL_FAILURES.add(activity.metric_meter(), error=err.type or "other", **labels)
            raise
        if result.status != "already_sent":  # counted by the attempt that sent it
            EMAILS_SENT.add(activity.metric_meter(), status=result.status, **labels)
        return result

    async def _send_email(self, input: SendEmailInput) -> SendEmailResult:
        key = outbox_key(input.lead_id, input.cycle, input.step_id)
        sender_name, sender_address = (input.sender.name, input.sender.address) if input.sender else self.default_sender
        async with self.sessionmaker() as session:
            lead = await session.get(Lead, input.lead_id)
            if lead is None:
                raise ApplicationError(
                    f"lead {input.lead_id} is not in the database", type="LeadMissing", non_retryable=True
                )
            reply_to, note = None, None
            if input.send_as_owner and lead.owner:
                owner = await owner_rep(session, lead.owner)
                gone = departed(owner) if owner is not None else None
                if owner is not None and gone is None:
                    # relationship selling: the owner writes, replies reach the owner
                    sender_name, sender_address, reply_to = owner.name, owner.email, owner.email
                elif owner is not None:
                    # a rep who left must not write to leads, nor collect their replies
                    note = f"sent as the cadence's sender: the lead's owner (rep-{owner.id}) is {gone}"
                    activity.logger.info("lead %s: %s", lead.id, note)
            msg_id = message_id(key, sender_address)
            row = await self._claim(session, key, input.lead_id, input.cycle, input.step_id, input.cadence, msg_id)
            msg_id = row.message_id  # the first attempt's, even if the sender changed since
            earlier = await self._resume(session, row)
            if earlier is not None:
                return SendEmailResult(status=earlier, outbox_key=key, message_id=msg_id, note=note)
            if row.status == "bounced":
                raise ApplicationError(
                    _redact(f"lead {lead.id} bounced: {row.error}", lead.email), type="HardBounce", non_retryable=True
                )
            # rendering is CPU work: keep it off the event loop that other sends' SMTP exchanges share
            message, row.tracked_links = await asyncio.to_thread(
                self._render, input, lead, msg_id, (sender_name, sender_address, reply_to)
            )
            # checked last, right before SMTP: an unsubscribe that lands meanwhile still stops this send
            if await session.get(Suppression, email_hash(lead.email)) is not None:
                row.status, row.error = "suppressed", "address on the suppression list"
                await session.commit()
                raise ApplicationError(
                    f"lead {input.lead_id} is on the suppression list", type="Suppressed", non_retryable=True
                )
            try:
                envelope = Envelope.of(self._envelope_sender(key, sender_address), [lead.email])
            except ValueError as exc:  # a domain IDNA cannot encode: no server could take it
                return await self._refused(session, row, lead, _Unsendable(f"an address cannot be sent to: {exc}"))
            try:
                status = await self._transmit(session, row, message, envelope, lead.email, note)
            except _Refused as exc:
                return await self._refused(session, row, lead, exc)
            return SendEmailResult(status=status, outbox_key=key, message_id=msg_id, note=note)

    @activity.defn(name="notify_rep")
    async def notify_rep(self, input: NotifyRepInput) -> NotifyRepResult:
        """Email the assigned rep the lead's profile, score and signed Accept / Reject links, once."""
        try:
            result = await self._notify_rep(input)
        except ApplicationError as err:
            REP_NOTIFICATION_FAILURES.add(activity.metric_meter(), error=err.type or "other")
            raise
        if result.status != "already_sent":
            REP_NOTIFICATIONS.add(activity.metric_meter(), status=result.status)
        return result

    async def _notify_rep(self, input: NotifyRepInput) -> NotifyRepResult:
        kind = "remind" if input.reminder else "notify"
        if input.reply_only and input.reply is not None:
            kind = f"reply-{input.reply.id}"  # one note per reply, however often the workflow asks
        key = f"{input.assignment_key}.{kind}"
        sender_address = self.default_sender[1]
        msg_id = message_id(key, sender_address)
        async with self.sessionmaker() as session:
            assignment = await session.get(Assignment, input.assignment_key)
            lead = await session.get(Lead, input.lead_id)
            if assignment is None or lead is None or assignment.rep_id is None:
                raise ApplicationError(
                    f"assignment {input.assignment_key} or its lead is gone", type="LeadMissing", non_retryable=True
                )
            rep = await session.get(Rep, assignment.rep_id)
            team = await session.get(Team, assignment.team) if assignment.team else None
            if rep is None:
                raise ApplicationError(f"rep of {input.assignment_key} is gone", type="LeadMissing", non_retryable=True)
            row = await self._claim(
                session, key, lead.id, input.cycle, f"{kind}-a{input.attempt}", REP_NOTIFICATION_CADENCE, msg_id
            )
            earlier = await self._resume(session, row)
            if earlier is not None:
                return NotifyRepResult(status=earlier, outbox_key=key)
            events = (
                await session.execute(
                    select(EngagementEvent)
                    .where(
                        EngagementEvent.lead_id == lead.id,
                        EngagementEvent.human.is_(True),
                        # a click's confirmation is that click again, already shown when it was judged human
                        or_(EngagementEvent.confirms.is_(None), EngagementEvent.machine_class.is_not(None)),
                    )
                    .order_by(EngagementEvent.occurred_at.desc())
                    .limit(10)
                )
            ).scalars()
            zone = ZoneInfo(rep.timezone)
            recent = [self._shown_event(e, zone) for e in events]
            reply = await self._shown_reply(session, input, zone)
            copy = input.copy_manager and team is not None and team.manager_email is not None
            recipients = [rep.email] + ([team.manager_email] if copy and team and team.manager_email else [])
            message = await asyncio.to_thread(
                self._render_notification, input, lead, rep, team, recent, msg_id, recipients, assignment.rule, reply
            )
            try:
                envelope = Envelope.of(self._envelope_sender(key, sender_address), recipients)
                status = await self._transmit(session, row, message, envelope, lead.email)
            except _Refused as exc:
                row.status, row.error = "refused", str(exc)
                await session.commit()
                if exc.verdict == "retry":
                    raise ApplicationError(f"temporary refusal: {exc}", type="SmtpTemporary") from None
                what = "cannot send" if isinstance(exc, _Unsendable) else "the server refused"
                raise ApplicationError(
                    f"{what} the rep's notification: {exc}", type="SendRefused", non_retryable=True
                ) from None
            return NotifyRepResult(status=status, outbox_key=key)

    def _envelope_sender(self, key: str, sender_address: str) -> str:
        """MAIL FROM: the send's VERP address when LEADLOOP_BOUNCE_DOMAIN is set (a bounce then names the send
        even when its report is mangled), else the From address. The From header is the same either way."""
        if not self.settings.bounce_domain:
            return sender_address
        return bounce_address(self.signer, key, self.settings.bounce_domain)

    async def _shown_reply(self, session: AsyncSession, input: NotifyRepInput, zone: ZoneInfo) -> dict[str, str] | None:
        """The lead's reply as the rep reads it: her words, when, and the thread (our email it answers, by subject,
        step and Message-ID, and the reply's own Message-ID)."""
        reply = input.reply
        if reply is None:
            return None
        answered = await session.get(Outbox, reply.answers) if reply.answers else None
        if answered is not None:
            subject = f"“{answered.subject}” " if answered.subject else ""
            thread = f"{subject}(step '{answered.step_id}', {answered.message_id})"
        else:
            thread = "an email of ours (which one is not known)"
        return {
            "text": reply.text.strip() or "(no words of its own: the reply only quoted our email)",
            "subject": reply.subject,
            "answers": thread,
            "message_id": reply.message_id or "",
            "at": f"{reply.received_at.astimezone(zone):%a %d %b %H:%M}" if reply.received_at else "",
        }

    def _shown_event(self, event: EngagementEvent, zone: ZoneInfo) -> dict[str, str]:
        """One line of the rep's 'Recent engagement': a click shows the link sealed in our own email; a visit,
        whose address came from the beacon's request, only its path on the site's own origin, never a link."""
        url = event.url or ""
        where = shown_page(url, self._site_origins, event.title) if event.kind == "visit" else url
        return {
            "at": f"{event.occurred_at.astimezone(zone):%a %d %b %H:%M}",
            "kind": event.kind,
            "where": where,
            "url": url if event.kind == "click" else "",
        }

    def _render_notification(
        self,
        input: NotifyRepInput,
        lead: Lead,
        rep: Rep,
        team: Team | None,
        recent: list[dict[str, str]],
        msg_id: str,
        recipients: list[str],
        rule: str,
        reply: dict[str, str] | None = None,
    ) -> EmailMessage:
        now = int(time.time())
        kind = "remind" if input.reminder else "notify"
        if input.reply_only and input.reply is not None:
            kind = f"reply-{input.reply.id}"
        msg_key = f"{input.assignment_key}.{kind}"

        def link(action: str) -> str:
            token = Token(kind="rep", lead_id=lead.id, key=input.assignment_key, issued_at=now, extra=action)
            return f"{self.settings.public_url}/r/{self.signer.sign(token)}"

        name = " ".join(p for p in (lead.first_name, lead.last_name) if p)
        fields = (
            ("Email", lead.email),
            ("Title", lead.title),
            ("Company", lead.company),
            ("Industry", lead.industry),
            ("Company size", lead.company_size),
            ("Country", lead.country),
            ("Region", lead.region),
            ("Product interest", lead.product_interest),
            ("Owner", lead.owner),
        )
        deadline = (
            f"{input.deadline.astimezone(ZoneInfo(rep.timezone)):%a %d %b %H:%M} ({rep.timezone})"
            if input.deadline
            else "as soon as you can"
        )
        context = {
            "rep": {"name": rep.name, "email": rep.email},
            "manager": {"name": team.manager_name if team else None},
            "copy_manager": len(recipients) > 1,
            "lapses": input.lapses,
            "lead": {"name": name, "company": lead.company},
            "profile": [(label, value) for label, value in fields if value],
            "score": input.score,
            "events": recent,
            "accept_url": link("accept"),
            "reject_url": link("reject"),
            "deadline": deadline,
            "note": input.note,
            "rule": rule,
            "team": team.name if team else "",
            "reminder": input.reminder,
            "reply": reply,
            "reply_only": input.reply_only,
        }
        env = self.renderer.env
        who = f"{name or 'a lead'}" + (f" ({lead.company})" if lead.company else "")
        if input.reply_only:
            subject = f"{who} replied: {reply['subject'] if reply else ''}".rstrip(": ")
        else:
            subject = ("Reminder: " if input.reminder else "") + f"Lead for you: {who}, score {input.score.total}"
            if reply is not None:
                subject += " (replied)"
        rendered = RenderedEmail(
            subject=subject,
            text=env.get_template("_rep/notify.txt.j2").render(context),
            html=env.get_template("_rep/notify.html.j2").render(context),
            locale="en",
        )
        message = build_message(
            rendered,
            sender_name=self.default_sender[0],
            sender_address=self.default_sender[1],
            to_name=rep.name,
            to_address=rep.email,
            msg_id=msg_id,
            date=datetime.now(UTC),
            headers={"X-Leadloop-Outbox-Key": msg_key},
        )
        if len(recipients) > 1 and team and team.manager_email:
            message["Cc"] = f"{team.manager_name or ''} <{team.manager_email}>"
        return message

    async def _transmit(
        self,
        session: AsyncSession,
        row: Outbox,
        message: EmailMessage,
        envelope: Envelope,
        secret: str,
        note: str | None = None,
    ) -> Literal["sent", "uncertain"]:
        """Deliver a claimed outbox row's message; the row records every outcome. Refusals are raised.

        Args:
            secret: an address to keep out of error texts bound for Temporal's history.
            note: kept on the row once sent: how this send differs from what was asked (the lead's history
                shows it).
        """
        await session.commit()  # ends the read transaction: no database connection held through SMTP
        seen = row.status
        # written with the first outcome below ("sending", or why nothing went out)
        row.subject = str(message["Subject"])
        row.attempts += 1

        async def mark_sending() -> None:
            # compare-and-set on the status this attempt saw: of two attempts that overlap (one outlived its
            # timeout and Temporal started the next), only the first to get here sends the message data
            marked = await session.execute(
                update(Outbox).where(Outbox.key == row.key, Outbox.status == seen).values(status="sending"),
                execution_options={"synchronize_session": False},
            )
            await session.commit()
            if marked.rowcount != 1:  # type: ignore[attr-defined]
                raise ApplicationError(
                    "another attempt of this send is in flight; this one stopped before the message data",
                    type="SendInFlight",
                )
            set_committed_value(row, "status", "sending")

        try:
            await self._deliver(message, envelope, mark_sending)
        except _Uncertain as exc:
            row.status, row.error = "uncertain", str(exc)
            await session.commit()
            activity.logger.warning("send %s uncertain: %s", row.key, exc)
            return "uncertain"
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            row.status, row.error = "pending", f"{type(exc).__name__}: {exc}"
            await session.commit()
            # temporary: Temporal retries with backoff
            raise ApplicationError(_redact(row.error, secret), type="SmtpUnavailable") from None
        row.status, row.error, row.sent_at = "sent", note, datetime.now(UTC)
        await session.commit()
        return "sent"

    async def _resume(self, session: AsyncSession, row: Outbox) -> Literal["already_sent", "uncertain"] | None:
        """What an earlier attempt left: sent, or possibly sent (never sent blindly again), or nothing."""
        if row.status == "sent":
            return "already_sent"
        if row.status in {"sending", "uncertain"}:
            row.status = "uncertain"
            row.error = row.error or "attempt ended between DATA and the server's reply"
            await session.commit()
            activity.logger.warning("send %s uncertain: not sent again", row.key)
            return "uncertain"
        return None

    async def _claim(
        self, session: AsyncSession, key: str, lead_id: int, cycle: int, step_id: str, cadence: str, msg_id: str
    ) -> Outbox:
        """The outbox row of `key`, inserted by the first attempt, as it stands: one round trip and a commit."""
        row = await insert_or_get(
            session,
            Outbox,
            key=key,
            lead_id=lead_id,
            cycle=cycle,
            step_id=step_id,
            cadence=cadence,
            status="pending",
            message_id=msg_id,
            attempts=0,
            created_at=datetime.now(UTC),
        )
        await session.commit()
        return row

    def _render(
        self, input: SendEmailInput, lead: Lead, msg_id: str, sender: tuple[str, str, str | None]
    ) -> tuple[EmailMessage, int]:
        """The message, and how many links it tracks (the click classifier's 'every link followed')."""
        sender_name, sender_address, reply_to = sender
        key = outbox_key(input.lead_id, input.cycle, input.step_id)
        links = TrackingLinks(self.signer, self.settings.public_url, lead.id, key, int(time.time()))
        step = Step(id=input.step_id, wait="0", template=input.template, subject=input.subject)
        postal = (input.sender.postal_address if input.sender else None) or self.settings.postal_address
        context = email_context(
            {f: getattr(lead, f) for f in LEAD_FIELDS} | {"attributes": lead.attributes},
            step=step,
            step_number=input.step_number,
            steps_total=input.steps_total,
            cadence=input.cadence,
            sender_name=sender_name,
            sender_address=sender_address,
            postal_address=postal,
            public_url=self.settings.public_url,
            site_url=self.settings.site_url,
            unsubscribe_url=links.unsubscribe_url,
        )
        try:
            rendered = self.renderer.render(step, lead.locale, input.default_locale, context)
        except (TemplateError, TemplateMissing) as exc:
            raise ApplicationError(template_error_text(exc), type="TemplateError", non_retryable=True) from exc
        typed = urls_in([getattr(lead, f) for f in LEAD_FIELDS if isinstance(getattr(lead, f), str)])
        rendered = replace(
            rendered, html=track_html(rendered.html, links, typed), text=track_text(rendered.text, links, typed)
        )
        tracked = tracked_links(links, rendered.html, rendered.text)
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p)
        headers = {
            "List-Unsubscribe": f"<{links.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Leadloop-Outbox-Key": key,
        }
        if reply_to:
            headers["Reply-To"] = reply_to
        try:
            message = build_message(
                rendered,
                sender_name=sender_name,
                sender_address=sender_address,
                to_name=name,
                to_address=lead.email,
                msg_id=msg_id,
                date=datetime.now(UTC),
                headers=headers,
            )
            return message, tracked
        except ValueError as exc:
            raise ApplicationError(
                f"cannot build the message: {exc}", type="TemplateError", non_retryable=True
            ) from exc

    async def _deliver(self, message: EmailMessage, envelope: Envelope, before_data: Any) -> None:
        # built before the mark, so nothing runs between it and the write
        payload = _dot_stuffed(message, utf8=envelope.utf8 is not None)
        encoding = "utf-8" if envelope.utf8 else "ascii"
        conn = await self.smtp_pool.acquire()
        reusable = False
        try:
            if not await self._mail_from(conn, envelope):
                # the server had closed the idle connection (or said 421 on it): nothing of this message
                # went out, so a fresh connection is as safe as the first try
                conn.smtp.close()
                conn = await self.smtp_pool.fresh()
                await self._mail_from(conn, envelope)
            for recipient in envelope.recipients:
                try:
                    await conn.smtp.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPResponseException as exc:
                    raise _refusal(exc, "rcpt") from exc
            # DATA and its 354 first: a transaction without its final dot is discarded by the server,
            # so dying before the payload goes out is safe to retry. Only then is the row marked
            # "sending", right before the payload: what is lost after that is RFC 1047's gap.
            start = await conn.smtp.execute_command(b"DATA")
            if start.code != 354:
                raise _refusal(aiosmtplib.SMTPDataError(start.code, start.message), "data")
            try:
                await before_data()
            except BaseException:
                conn.smtp.close()  # the server waits for message data: QUIT would be read as part of it
                raise
            protocol = conn.smtp.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before the message data")
            try:
                protocol.write(payload)
                reply = await protocol.read_response(timeout=self.smtp.timeout)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError) as exc:
                conn.smtp.close()
                raise _Uncertain(f"connection lost after the message data, before the reply: {exc}") from exc
            if reply.code != 250:
                raise _refusal(aiosmtplib.SMTPDataError(reply.code, reply.message), "data")
            reusable = True
        finally:
            # after a refusal or an error the connection is closed, not reused: its state is unknown
            await self.smtp_pool.release(conn, reusable)

    async def _mail_from(self, conn: _Connection, envelope: Envelope) -> bool:
        """MAIL FROM (with SMTPUTF8 when an address needs it); False when a reused connection turns out closed.
        Refusals are raised, and so is an address this server cannot carry (`_Unsendable`)."""
        try:
            options: list[str] = []
            if envelope.utf8:
                await conn.smtp._ehlo_or_helo_if_needed()  # what mail() does first: the extensions are then known
                if not conn.smtp.supports_extension("smtputf8"):
                    raise _Unsendable(
                        f"{envelope.utf8} address has non-ASCII characters before the @, and the SMTP server does "
                        "not offer SMTPUTF8 (RFC 6531) to carry them: use a relay that does, or fix the address"
                    )
                options.append("SMTPUTF8")
            await conn.smtp.mail(envelope.sender, options=options, encoding="utf-8" if envelope.utf8 else "ascii")
            return True
        except aiosmtplib.SMTPServerDisconnected:
            if conn.reused:
                return False
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if conn.reused and exc.code == 421:  # "closing the connection" (an idle timeout)
                return False
            raise _refusal(exc, "mail") from exc

    async def _refused(self, session: AsyncSession, row: Outbox, lead: Lead, exc: _Refused) -> SendEmailResult:
        if exc.verdict == "retry":
            row.status, row.error = "pending", str(exc)
            await session.commit()
            raise ApplicationError(_redact(f"temporary refusal: {exc}", lead.email), type="SmtpTemporary")
        if exc.verdict == "bounce":
            row.status, row.error = "bounced", str(exc)
            lead.bounced_at = datetime.now(UTC)
            await suppress(session, lead.email, "hard_bounce", str(exc))
            await session.commit()
            raise ApplicationError(
                _redact(f"lead {lead.id} bounced: {exc}", lead.email), type="HardBounce", non_retryable=True
            )
        row.status, row.error = "refused", str(exc)
        await session.commit()
        what = "cannot send" if isinstance(exc, _Unsendable) else "the server refused the send"
        raise ApplicationError(_redact(f"{what}: {exc}", lead.email), type="SendRefused", non_retryable=True)


def departed(rep: Rep) -> str | None:
    """Why a rep may no longer send as themselves ("inactive", "erased"), or None."""
    # an erased rep keeps no deliverable address (RFC 2606's .invalid), whatever else erasure records
    if getattr(rep, "erased_at", None) is not None or rep.email.lower().endswith(".invalid"):
        return "erased"
    if not rep.active:
        return "inactive"
    return None


async def owner_rep(session: AsyncSession, owner: str) -> Rep | None:
    """The rep a lead's owner field names (by address, any case)."""
    return (
        await session.execute(select(Rep).where(func.lower(Rep.email) == owner.strip().lower()))
    ).scalar_one_or_none()


def _dot_stuffed(message: EmailMessage, *, utf8: bool) -> bytes:
    """The message as SMTP DATA payload: CRLF lines, leading dots doubled, the final dot line."""
    data = wire_bytes(message, utf8=utf8)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


def _redact(text: str, email: str) -> str:
    """Error text bound for Temporal's history, without the lead's address (servers echo it)."""
    return text.replace(email, "<recipient>")


def _refusal(exc: aiosmtplib.SMTPResponseException, stage: str) -> _Refused:
    return _Refused(classify_reply(exc.code, exc.message, stage=stage), exc.code, exc.message)  # type: ignore[arg-type]
