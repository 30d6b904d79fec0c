"""The benchmark's inbound phases: messages/s through classify + store + signal, and reply-to-rep latency.

Inbound mail enters as the IMAP reader and the webhooks hand it over: `ingest_message` (classify, match, store,
commit) then `signal_pending` (the lead's workflow). Throughput is measured on a realistic mix for leads waiting
mid-cadence (out-of-office replies, hard bounces, replies), against the classifier alone as its floor.
"""

import asyncio
import time
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client

from leadloop.domain.inbound import classify
from leadloop.domain.tokens import Signer
from leadloop.infra.db import InboundMessage, Outbox, make_engine, make_sessionmaker
from leadloop.services.inbound_delivery import has_pending, ingest_message, signal_pending


def reply_to(message_id: str, address: str, text: str, *, subject: str = "Re: Welcome", **headers: str) -> bytes:
    """A raw reply from `address` to leadloop's email `message_id`, the quoted original under it."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = address, "hello@leadloop.example", subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{abs(hash((message_id, text)))}.{time.time_ns()}@mail.leads.example>"
    msg["In-Reply-To"], msg["References"] = message_id, message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{text}\n\nOn Monday, Leadloop wrote:\n> Welcome to leadloop\n")
    return msg.as_bytes()


def hard_bounce(message_id: str, address: str) -> bytes:
    """An RFC 3464 DSN for `address`, its original's headers attached."""
    return (
        "From: MAILER-DAEMON@mx.leads.example\r\nTo: hello@leadloop.example\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn.{time.time_ns()}@mx.leads.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.leads.example.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.leads.example\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nTo: {address}\r\n\r\n--b--\r\n"
    ).encode()


def inbound_mix(sends: list[tuple[str, str]]) -> list[bytes]:
    """One message per send: 6 in 10 out-of-office with a return date, 3 hard bounces, 1 a human reply."""
    made = []
    for n, (message_id, address) in enumerate(sends):
        if n % 10 < 6:
            made.append(
                reply_to(
                    message_id,
                    address,
                    "I am out of the office until 12 December 2026 with limited access to email.",
                    subject="Automatic reply: Welcome",
                    Auto_Submitted="auto-replied",
                )
            )
        elif n % 10 < 9:
            made.append(hard_bounce(message_id, address))
        else:
            made.append(reply_to(message_id, address, "Sounds good, send me the pricing please."))
    return made


async def first_sends(database_url: str, lead_ids: list[int]) -> list[tuple[str, str]]:
    """(Message-ID, address) of each lead's first email."""
    from leadloop.infra.db import Lead

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Outbox.message_id, Lead.email)
                .join(Lead, Lead.id == Outbox.lead_id)
                .where(Outbox.lead_id.in_(lead_ids), Outbox.step_id == "s0", Outbox.status == "sent")
                .order_by(Outbox.lead_id)
            )
            return [(message_id, email) for message_id, email in rows]
    finally:
        await engine.dispose()


async def wait_for_first_sends(database_url: str, lead_ids: list[int], within: float) -> None:
    """Until every lead's first email is sent (other leads' mail reaches the sink meanwhile, so it is read here)."""
    deadline = time.perf_counter() + within
    while len(await first_sends(database_url, lead_ids)) < len(lead_ids):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the first emails of {len(lead_ids)} leads not all sent within {within:.0f} s")
        await asyncio.sleep(0.2)


async def inbound_throughput(database_url: str, client: Client, signer: Signer, lead_ids: list[int]) -> dict[str, Any]:
    """Messages/s through classify alone (the floor), classify + match + store, signal, and all three."""
    messages = inbound_mix(await first_sends(database_url, lead_ids))
    began = time.perf_counter()
    for raw in messages:
        classify(raw)
    classify_took = time.perf_counter() - began
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    try:
        began = time.perf_counter()
        for n, raw in enumerate(messages):
            async with sessions() as session:
                await ingest_message(session, raw, source="imap", source_key=f"BENCH:1:{n}", signer=signer)
                await session.commit()
        stored_at = time.perf_counter()
        # the HTTP service's relay signals pending rows too: the phase ends when none of them is left pending
        while True:
            await signal_pending(sessions, client)
            if not await has_pending(sessions):
                break
        done = time.perf_counter()
        async with sessions() as session:
            counted = await session.execute(
                select(InboundMessage.kind, InboundMessage.status, func.count())
                .where(InboundMessage.source_key.like("BENCH:%"))
                .group_by(InboundMessage.kind, InboundMessage.status)
            )
            statuses = {f"{kind}/{status}": number for kind, status, number in counted}
        signalled = sum(number for key, number in statuses.items() if key.endswith("/signalled"))
    finally:
        await engine.dispose()
    count = len(messages)
    return {
        "messages": count,
        "statuses": statuses,
        "signalled": signalled,
        "classify_per_s": count / classify_took,
        "store_per_s": count / (stored_at - began),
        "signal_per_s": signalled / (done - stored_at) if signalled else 0.0,
        "end_to_end_per_s": count / (done - began),
        "end_to_end_vs_classify": (count / (done - began)) / (count / classify_took),
    }


class ReplyTrigger:
    """A latency phase's trigger: the lead replies "yes, call me on Tuesday" to its first email, and the reply
    goes through ingest + signal as the IMAP reader hands it over."""

    def __init__(self, database_url: str, client: Client, signer: Signer) -> None:
        self.engine = make_engine(database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.client, self.signer = client, signer

    async def __call__(self, lead_id: int, content: bytes) -> None:
        sent = message_from_bytes(content)
        raw = reply_to(str(sent["Message-ID"]), str(sent["To"]), "Yes, call me on Tuesday.")
        async with self.sessions() as session:
            stored = await ingest_message(
                session, raw, source="imap", source_key=f"REPLY:1:{lead_id}", signer=self.signer
            )
            await session.commit()
        await signal_pending(self.sessions, self.client, ids=[stored.id])

    async def close(self) -> None:
        await self.engine.dispose()
