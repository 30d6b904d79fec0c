"""The local SMTP catcher: keeps every message as an .eml file and logs one line per message."""

import asyncio
import logging
import re
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger("leadloop.mailbox")


class MailboxHandler:
    """Writes each accepted message to `<folder>/<n>-<message id>.eml`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.folder.glob("*.eml")))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content)
        msg_id = str(message.get("Message-ID", "no-id")).strip("<>")
        self.count += 1
        safe = re.sub(r"[^A-Za-z0-9._@-]+", "_", msg_id)[:120]
        (self.folder / f"{self.count:06d}-{safe}.eml").write_bytes(content)
        subject = str(make_header(decode_header(message.get("Subject", ""))))
        log.info("mail %d to %s: %s", self.count, ", ".join(envelope.rcpt_tos), subject)
        return "250 2.0.0 Message accepted"


async def serve_mailbox(folder: Path, host: str = "127.0.0.1", port: int = 1025) -> asyncio.AbstractServer:
    """Start the SMTP server on the running loop."""
    handler = MailboxHandler(folder)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, enable_SMTPUTF8=True, hostname="leadloop-mailbox")

    server = await loop.create_server(factory, host=host, port=port)
    log.info("mailbox listening on %s:%d, keeping mail in %s", host, port, folder)
    return server
