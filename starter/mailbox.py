"""The local SMTP catcher: keeps every message as an .eml file; mail for leadloop's own addresses goes inbound too."""

import asyncio
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from leadloop.domain.cadence import load_cadence
from leadloop.domain.inbound import message as mime
from leadloop.domain.mail import ascii_domain, parse_sender
from leadloop.domain.rules import RuleFileError
from leadloop.domain.tokens import Signer
from leadloop.domain.verp import VERP_PREFIX
from leadloop.infra.settings import Settings
from leadloop.services.inbound_delivery import ingest_message, signal_pending
from leadloop.services.inbound_retention import Retention

log = logging.getLogger("leadloop.mailbox")


def _lower(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


@dataclass
class InboundRoute:
    """Mail for leadloop's own addresses — the From/Reply-To address it sends from, and its VERP bounce addresses
    (`bounces+<token>@<bounce domain>`) — handed to the inbound pipeline, as a real inbox would be read: stored with
    its verdict and match (`ingest_message`, source "mailbox"), then signalled to the lead's workflow.

    Other recipients are the leads and reps leadloop writes to: the catcher only keeps their mail. At the bounce
    domain only VERP addresses exist (any other is refused at RCPT); a VERP token that does not verify, or a reply
    that answers no send, is stored unmatched: kept and listed, never guessed onto a lead."""

    sessions: async_sessionmaker[AsyncSession]
    client: Client | None
    signer: Signer
    reply_addresses: frozenset[str]
    bounce_domain: str | None = None
    #: raw bodies past LEADLOOP_INBOUND_RETENTION_DAYS dropped, looked for once a day as mail passes (`age`)
    retention: Retention | None = None
    #: one message through the pipeline at a time: two deliveries never signal the same rows at once
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_settings(
        cls, settings: Settings, sessions: async_sessionmaker[AsyncSession], client: Client | None
    ) -> "InboundRoute":
        return cls(
            sessions=sessions,
            client=client,
            signer=Signer(settings.signing_keys()),
            reply_addresses=frozenset(reply_addresses(settings)),
            bounce_domain=ascii_domain(settings.bounce_domain) if settings.bounce_domain else None,
            retention=Retention(sessions, settings.inbound_retention_days),
        )

    def at_bounce_domain(self, address: str) -> bool:
        _, at, domain = _lower(address).rpartition("@")
        return bool(at and self.bounce_domain and domain.rstrip(".") == self.bounce_domain)

    def refuses(self, address: str) -> str | None:
        """Why RCPT TO `address` is refused (None: accepted)."""
        if self.at_bounce_domain(address) and not _lower(address).startswith(f"{VERP_PREFIX}+"):
            return "550 5.1.1 No such mailbox: the bounce domain takes only leadloop's bounces+<token> addresses"
        return None

    def inbound(self, recipients: Iterable[str]) -> list[str]:
        """The recipients that are leadloop's own addresses (the message then goes inbound)."""
        return [r for r in recipients if _lower(r) in self.reply_addresses or self.at_bounce_domain(r)]

    async def deliver(self, raw: bytes, recipients: list[str]) -> int:
        """Store the message (the caller's SMTP reply depends on it), then signal what is pending. Its row id."""
        async with self.lock:
            async with self.sessions() as session:
                stored = await ingest_message(
                    session,
                    raw,
                    source="mailbox",
                    source_key=hashlib.sha256(raw).hexdigest(),  # the same bytes delivered twice are one message
                    signer=self.signer,
                    bounce_domain=self.bounce_domain,
                    envelope_recipients=recipients,
                )
                await session.commit()
            if self.client is not None:
                try:  # this message and any an earlier attempt left pending; the workflow applies each once
                    await signal_pending(self.sessions, self.client)
                except (RPCError, RuntimeError, SQLAlchemyError) as exc:
                    log.warning("inbound %s stored, not signalled yet: %s", stored.id, exc)
            return stored.id

    async def age(self) -> None:
        """Drop the raw bodies past retention, if a day has gone by since the last time; never fails the caller
        (a busy database is tried again with the next message)."""
        if self.retention is None:
            return
        try:
            await self.retention.run()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("old inbound bodies not dropped now (%s); tried again with the next message", exc)


def reply_addresses(settings: Settings) -> set[str]:
    """The addresses replies reach: LEADLOOP_FROM_ADDRESS and every cadence file's sender (lower-case)."""
    found = {_lower(parse_sender(settings.from_address)[1])}
    for path in sorted(settings.cadence_dir.glob("*.y*ml")):
        try:
            cadence = load_cadence(path)
        except (RuleFileError, OSError, ValueError):
            continue  # a rule file, or a cadence `cadence check` reports
        if cadence.sender is not None:
            found.add(_lower(cadence.sender.address))
    return found


class MailboxHandler:
    """Writes each accepted message to `<folder>/<n>-<message id>.eml`, with the envelope sender as its
    Return-Path (as a delivering server does: auto-replies answer it); with an `InboundRoute`, mail for leadloop's
    own addresses goes through the inbound pipeline first."""

    def __init__(self, folder: Path, inbound: InboundRoute | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.folder.glob("*.eml")))
        self.inbound = inbound

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refused = self.inbound.refuses(address) if self.inbound is not None else None
        if refused is not None:
            log.info("refused mail to %s: not an address of the bounce domain", address)
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        inbound = self.inbound.inbound(envelope.rcpt_tos) if self.inbound is not None else []
        note = ""
        if inbound and self.inbound is not None:
            try:
                row = await self.inbound.deliver(content, inbound)
            except (SQLAlchemyError, OSError) as exc:  # not kept: the sender's server tries again later
                log.warning("inbound mail to %s not stored: %s", ", ".join(inbound), exc)
                return "451 4.3.0 The message could not be stored; try again later"
            note = f" (inbound {row})"
        if self.inbound is not None:  # every message passing (the demo's sends too) is a chance, at most daily
            await self.inbound.age()
        message = message_from_bytes(content)
        msg_id = str(message.get("Message-ID", "no-id")).strip("<>")
        self.count += 1
        safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", msg_id)[:120]
        return_path = f"Return-Path: <{envelope.mail_from or ''}>\r\n".encode("utf-8", "replace")
        (self.folder / f"{self.count:06d}-{safe}.eml").write_bytes(return_path + content)
        subject = mime.header(message, "Subject")  # raw 8-bit or broken encoded words: read, never raised
        log.info("mail %d to %s: %s%s", self.count, ", ".join(envelope.rcpt_tos), subject, note)
        return "250 2.0.0 Message accepted"


async def serve_mailbox(
    folder: Path, host: str = "127.0.0.1", port: int = 1025, inbound: InboundRoute | None = None
) -> asyncio.AbstractServer:
    """Start the SMTP server on the running loop."""
    handler = MailboxHandler(folder, inbound)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, enable_SMTPUTF8=True, hostname="leadloop-mailbox")

    server = await loop.create_server(factory, host=host, port=port)
    log.info("mailbox listening on %s:%d, keeping mail in %s", host, port, folder)
    return server
