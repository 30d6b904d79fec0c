"""The send_email activity: render, claim the outbox row, deliver over SMTP exactly once."""

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import aiosmtplib
from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadloop.cadence import Step
from leadloop.db import Lead, Outbox, Suppression, insert_for
from leadloop.mail import build_message, classify_reply, email_hash, message_id, outbox_key, parse_sender
from leadloop.models import SendEmailInput, SendEmailResult
from leadloop.settings import Settings
from leadloop.templates import LEAD_FIELDS, EmailRenderer, TemplateMissing, email_context, template_error_text

log = logging.getLogger(__name__)


class _Uncertain(Exception):
    """The message data went out but the server's reply never came (RFC 1047)."""


class _Refused(Exception):
    def __init__(self, verdict: str, code: int, text: str) -> None:
        self.verdict, self.code, self.text = verdict, code, text
        super().__init__(f"{code} {text}")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    timeout: float = 20.0

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
        )


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
        self.settings = settings
        self.default_sender = parse_sender(settings.from_address)

    @activity.defn(name="send_email")
    async def send_email(self, input: SendEmailInput) -> SendEmailResult:
        key = outbox_key(input.lead_id, input.cycle, input.step_id)
        sender_name, sender_address = (input.sender.name, input.sender.address) if input.sender else self.default_sender
        msg_id = message_id(key, sender_address)
        async with self.sessionmaker() as session:
            lead = await session.get(Lead, input.lead_id)
            if lead is None:
                raise ApplicationError(
                    f"lead {input.lead_id} is not in the database", type="LeadMissing", non_retryable=True
                )
            row = await self._claim(session, key, input, msg_id)
            if row.status == "sent":
                return SendEmailResult(status="already_sent", outbox_key=key, message_id=msg_id)
            if row.status in {"sending", "uncertain"}:
                # an earlier attempt may have handed the message to the server: never send blindly
                row.status = "uncertain"
                row.error = row.error or "attempt ended between DATA and the server's reply"
                await session.commit()
                activity.logger.warning("send %s uncertain: not sent again", key)
                return SendEmailResult(status="uncertain", outbox_key=key, message_id=msg_id)
            if row.status == "bounced":
                raise ApplicationError(
                    _redact(f"lead {lead.id} bounced: {row.error}", lead.email), type="HardBounce", non_retryable=True
                )
            # rendering is CPU work: keep it off the event loop that other sends' SMTP exchanges share
            message = await asyncio.to_thread(self._render, input, lead, msg_id, sender_name, sender_address)
            # checked last, right before SMTP: an unsubscribe that lands meanwhile still stops this send
            if await session.get(Suppression, email_hash(lead.email)) is not None:
                row.status, row.error = "suppressed", "address on the suppression list"
                await session.commit()
                raise ApplicationError(
                    f"lead {input.lead_id} is on the suppression list", type="Suppressed", non_retryable=True
                )
            row.subject = str(message["Subject"])
            row.attempts += 1
            await session.commit()

            async def mark_sending() -> None:
                row.status = "sending"
                await session.commit()

            try:
                await self._deliver(message, sender_address, lead.email, mark_sending)
            except _Uncertain as exc:
                row.status, row.error = "uncertain", str(exc)
                await session.commit()
                activity.logger.warning("send %s uncertain: %s", key, exc)
                return SendEmailResult(status="uncertain", outbox_key=key, message_id=msg_id)
            except _Refused as exc:
                return await self._refused(session, row, lead, exc)
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                row.status, row.error = "pending", f"{type(exc).__name__}: {exc}"
                await session.commit()
                # temporary: Temporal retries with backoff
                raise ApplicationError(_redact(row.error, lead.email), type="SmtpUnavailable") from None
            row.status, row.error, row.sent_at = "sent", None, datetime.now(UTC)
            await session.commit()
            return SendEmailResult(status="sent", outbox_key=key, message_id=msg_id)

    async def _claim(self, session: AsyncSession, key: str, input: SendEmailInput, msg_id: str) -> Outbox:
        insert = insert_for(session)
        await session.execute(
            insert(Outbox)
            .values(
                key=key,
                lead_id=input.lead_id,
                cycle=input.cycle,
                step_id=input.step_id,
                cadence=input.cadence,
                status="pending",
                message_id=msg_id,
                attempts=0,
                created_at=datetime.now(UTC),
            )
            .on_conflict_do_nothing()
        )
        await session.commit()
        row = (await session.execute(select(Outbox).where(Outbox.key == key))).scalar_one()
        return row

    def _render(
        self, input: SendEmailInput, lead: Lead, msg_id: str, sender_name: str, sender_address: str
    ) -> EmailMessage:
        step = Step(id=input.step_id, wait="0", template=input.template, subject=input.subject)
        postal = (input.sender.postal_address if input.sender else None) or self.settings.postal_address
        context = email_context(
            {f: getattr(lead, f) for f in LEAD_FIELDS} | {"attributes": lead.attributes},
            step=step, step_number=input.step_number, steps_total=input.steps_total, cadence=input.cadence,
            sender_name=sender_name, sender_address=sender_address, postal_address=postal,
            public_url=self.settings.public_url,
        )  # fmt: skip
        try:
            rendered = self.renderer.render(step, lead.locale, input.default_locale, context)
        except (TemplateError, TemplateMissing) as exc:
            raise ApplicationError(template_error_text(exc), type="TemplateError", non_retryable=True) from exc
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p)
        try:
            return build_message(
                rendered, sender_name=sender_name, sender_address=sender_address, to_name=name,
                to_address=lead.email, msg_id=msg_id, date=datetime.now(UTC),
                headers={"X-Leadloop-Outbox-Key": outbox_key(input.lead_id, input.cycle, input.step_id)},
            )  # fmt: skip
        except ValueError as exc:
            raise ApplicationError(
                f"cannot build the message: {exc}", type="TemplateError", non_retryable=True
            ) from exc

    async def _deliver(self, message: EmailMessage, sender: str, recipient: str, before_data: Any) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=self.smtp.host, port=self.smtp.port, timeout=self.smtp.timeout,
            start_tls=self.smtp.starttls if self.smtp.starttls else False, use_tls=self.smtp.use_tls,
        )  # fmt: skip
        await smtp.connect()
        try:
            if self.smtp.username:
                await smtp.login(self.smtp.username, self.smtp.password or "")
            try:
                await smtp.mail(sender)
            except aiosmtplib.SMTPResponseException as exc:
                raise _refusal(exc, "mail") from exc
            try:
                await smtp.rcpt(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                raise _refusal(exc, "rcpt") from exc
            # DATA and its 354 first: a transaction without its final dot is discarded by the server,
            # so dying before the payload goes out is safe to retry. Only then is the row marked
            # "sending", right before the payload: what is lost after that is RFC 1047's gap.
            payload = _dot_stuffed(message)  # built before the mark, so nothing runs between it and the write
            start = await smtp.execute_command(b"DATA")
            if start.code != 354:
                raise _refusal(aiosmtplib.SMTPDataError(start.code, start.message), "data")
            try:
                await before_data()
            except BaseException:
                smtp.close()  # the server waits for message data: QUIT would be read as part of it
                raise
            protocol = smtp.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("connection lost before the message data")
            try:
                protocol.write(payload)
                reply = await protocol.read_response(timeout=self.smtp.timeout)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, ConnectionError) as exc:
                smtp.close()
                raise _Uncertain(f"connection lost after the message data, before the reply: {exc}") from exc
            if reply.code != 250:
                raise _refusal(aiosmtplib.SMTPDataError(reply.code, reply.message), "data")
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()

    async def _refused(self, session: AsyncSession, row: Outbox, lead: Lead, exc: _Refused) -> SendEmailResult:
        if exc.verdict == "retry":
            row.status, row.error = "pending", str(exc)
            await session.commit()
            raise ApplicationError(_redact(f"temporary refusal: {exc}", lead.email), type="SmtpTemporary")
        if exc.verdict == "bounce":
            row.status, row.error = "bounced", str(exc)
            lead.bounced_at = datetime.now(UTC)
            insert = insert_for(session)
            await session.execute(
                insert(Suppression)
                .values(
                    email_hash=email_hash(lead.email),
                    reason="hard_bounce",
                    detail=str(exc),
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing()
            )
            await session.commit()
            raise ApplicationError(
                _redact(f"lead {lead.id} bounced: {exc}", lead.email), type="HardBounce", non_retryable=True
            )
        row.status, row.error = "refused", str(exc)
        await session.commit()
        raise ApplicationError(
            _redact(f"the server refused the send: {exc}", lead.email), type="SendRefused", non_retryable=True
        )


def _dot_stuffed(message: EmailMessage) -> bytes:
    """The message as SMTP DATA payload: CRLF lines, leading dots doubled, the final dot line."""
    data = message.as_bytes(policy=SMTP_POLICY)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


def _redact(text: str, email: str) -> str:
    """Error text bound for Temporal's history, without the lead's address (servers echo it)."""
    return text.replace(email, "<recipient>")


def _refusal(exc: aiosmtplib.SMTPResponseException, stage: str) -> _Refused:
    return _Refused(classify_reply(exc.code, exc.message, stage=stage), exc.code, exc.message)  # type: ignore[arg-type]
