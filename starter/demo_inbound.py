"""The demo's leads writing back: one replies to her welcome email, one's mail server answers it with an
out-of-office; each message is built and sent over SMTP to the local mailbox, as a mail client or server would."""

import asyncio
import email
import email.policy
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path

import aiosmtplib

from leadloop.domain.mail import wire_address

log = logging.getLogger("leadloop.demo")

#: what the replying lead writes (her mail client quotes the welcome email below it)
REPLY_TEXT = "Yes, call me on Tuesday."
#: how long the demo's out-of-office lead is away
AWAY = timedelta(days=9)


@dataclass(frozen=True)
class DemoLead:
    """One of the demo's leads, as its mail client knows it."""

    name: str
    email: str
    locale: str = "en"


@dataclass(frozen=True)
class Received:
    """A welcome email as the lead's mail client shows it."""

    message: EmailMessage
    path: Path

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def address(self, header: str) -> str | None:
        found = getaddresses([str(value) for value in self.message.get_all(header, [])])
        return next((address for _, address in found if "@" in address), None)


def find_welcome(mail_dir: Path, lead_email: str) -> Received | None:
    """The lead's welcome email in the mailbox's folder, if it went out yet."""
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if not isinstance(message, EmailMessage) or "welcome" not in path.name:
            continue
        if lead_email.lower() in str(message["To"]).lower():
            return Received(message, path)
    return None


def _quoted(welcome: Received) -> str:
    """The welcome email's text as a mail client quotes it under a reply (its first lines)."""
    part = welcome.message.get_body(("plain",))
    text = part.get_content() if isinstance(part, EmailMessage) else ""
    lines = [line for line in text.splitlines() if line.strip()][:6]
    return "\n".join(f"> {line}" for line in lines)


def build_reply(welcome: Received, name: str, lead_email: str, text: str = REPLY_TEXT) -> EmailMessage:
    """A person's reply to the welcome email: to its Reply-To (or From), in its thread, the original quoted."""
    reply = EmailMessage()
    reply["From"] = f"{name} <{lead_email}>"
    reply["To"] = welcome.address("Reply-To") or welcome.address("From") or ""
    reply["Subject"] = f"Re: {welcome.subject}"
    reply["Date"] = format_datetime(datetime.now().astimezone())
    reply["Message-ID"] = make_msgid("reply", domain=lead_email.rpartition("@")[2])
    reply["In-Reply-To"] = welcome.message_id
    reply["References"] = welcome.message_id
    sent = str(welcome.message["Date"] or "earlier")
    reply.set_content(
        f"{text}\n\n{name.split()[0]}\n\nOn {sent}, {welcome.message['From']} wrote:\n{_quoted(welcome)}\n"
    )
    return reply


#: an out-of-office's subject prefix and text, as Outlook writes them in the lead's language: away until the day
#: before `back`, reachable again on `back`
OUT_OF_OFFICE = {
    "en": (
        "Automatic reply",
        "Thank you for your message. I am out of the office until {until:%d %B %Y} with no access to email.\n"
        "I will be back on {back:%A, %d %B %Y}.",
    ),
    "de": (
        "Automatische Antwort",
        "Vielen Dank für Ihre Nachricht. Ich bin bis zum {until:%d.%m.%Y} nicht im Büro und habe keinen Zugriff "
        "auf meine E-Mails.\nAb dem {back:%d.%m.%Y} bin ich wieder erreichbar.",
    ),
}


def build_out_of_office(welcome: Received, name: str, lead_email: str, back: date, locale: str = "en") -> EmailMessage:
    """An out-of-office answer (RFC 3834) to the welcome email, sent where auto-replies go: its Return-Path (the
    send's VERP bounce address when LEADLOOP_BOUNCE_DOMAIN is set), else its From."""
    prefix, text = OUT_OF_OFFICE.get(locale, OUT_OF_OFFICE["en"])
    reply = EmailMessage()
    reply["From"] = f"{name} <{lead_email}>"
    reply["To"] = welcome.address("Return-Path") or welcome.address("From") or ""
    reply["Subject"] = f"{prefix}: {welcome.subject}"
    reply["Date"] = format_datetime(datetime.now().astimezone())
    reply["Message-ID"] = make_msgid("ooo", domain=lead_email.rpartition("@")[2])
    reply["In-Reply-To"] = welcome.message_id
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply.set_content(text.format(until=back - timedelta(days=1), back=back) + f"\n\n{name}\n")
    return reply


async def send(message: EmailMessage, host: str, port: int) -> None:
    """Hand `message` to the SMTP server at host:port, its From as the envelope sender."""
    sender = getaddresses([str(message["From"])])[0][1]
    recipients = [address for _, address in getaddresses([str(message["To"])])]
    await aiosmtplib.send(
        message, hostname=host, port=port, sender=wire_address(sender), recipients=recipients, timeout=30
    )


async def wait_for_welcome(mail_dir: Path, lead_email: str, stop: asyncio.Event, every: float = 0.5) -> Received | None:
    """The lead's welcome email once it arrived (None: stopped first)."""
    while not stop.is_set():
        found = find_welcome(mail_dir, lead_email)
        if found is not None:
            return found
        await asyncio.sleep(every)
    return None


async def play_replies(
    mail_dir: Path,
    host: str,
    port: int,
    replier: "DemoLead",
    away: "DemoLead",
    stop: asyncio.Event,
    today: date | None = None,
) -> list[EmailMessage]:
    """After each lead's welcome email arrived: `replier` answers it, `away`'s mail server sends an out-of-office
    with a return date. The messages sent, in that order."""
    back = (today or date.today()) + AWAY
    sent: list[EmailMessage] = []
    for lead, build in ((replier, "reply"), (away, "out-of-office")):
        welcome = await wait_for_welcome(mail_dir, lead.email, stop)
        if welcome is None:
            return sent
        name, address = lead.name, lead.email
        message = (
            build_reply(welcome, name, address)
            if build == "reply"
            else build_out_of_office(welcome, name, address, back, lead.locale)
        )
        await send(message, host, port)
        log.info("demo: %s sent %s to %s", address, build, message["To"])
        sent.append(message)
    return sent
