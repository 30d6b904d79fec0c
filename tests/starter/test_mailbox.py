"""The demo's local mailbox over real SMTP, on SQLite and PostgreSQL: mail for leadloop's own addresses (the From
address, the VERP bounce addresses) goes through the inbound pipeline; the rest is only kept, as before; an address
the bounce domain does not have is refused; a database that cannot store it gets a temporary refusal."""

import hashlib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.mail import email_hash
from leadloop.domain.verp import bounce_address
from leadloop.infra.db import InboundMessage, Suppression, make_engine, make_sessionmaker
from starter.mailbox import InboundRoute, reply_addresses, serve_mailbox
from tests.conftest import free_port
from tests.leadloop.services.test_inbound import add_lead, add_send
from tests.leadloop.services.test_inbound_delivery import bounce

BOUNCES = "bounces.leadloop.example"


async def smtp_send(port: int, raw: bytes | EmailMessage, to: list[str], sender: str = "someone@example.com") -> None:
    """Over SMTP to the mailbox on 127.0.0.1:port; sender "" is the null sender (MAIL FROM:<>) bounces come from."""
    data = raw.as_bytes() if isinstance(raw, EmailMessage) else raw
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
        await smtp.sendmail(sender, to, data)


class Mailbox:
    def __init__(self, folder: Path, port: int, route: InboundRoute) -> None:
        self.folder, self.port, self.route = folder, port, route

    async def send(self, raw: bytes | EmailMessage, to: list[str], sender: str = "someone@example.com") -> None:
        await smtp_send(self.port, raw, to, sender)

    def kept(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.folder.glob("*.eml"))]


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[InboundMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


@pytest.fixture
async def mailbox(
    make_settings: Any, database_url: str, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> AsyncIterator[Mailbox]:
    settings = make_settings(database_url=database_url, bounce_domain=BOUNCES)
    route = InboundRoute.from_settings(settings, sessionmaker, client=None)  # stored, left for the signal
    port = free_port()
    server = await serve_mailbox(tmp_path / "mail", "127.0.0.1", port, inbound=route)
    yield Mailbox(tmp_path / "mail", port, route)
    server.close()
    await server.wait_closed()


def reply(in_reply_to: str, text: str, sender: str = "Anna <anna@example.com>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "Leadloop Demo <hello@leadloop.example>", "Re: Welcome"
    msg["Message-ID"], msg["In-Reply-To"] = f"<r{abs(hash(text))}@mail.example>", in_reply_to
    msg.set_content(f"{text}\n\nOn Monday, Leadloop wrote:\n> Welcome aboard\n")
    return msg


def test_the_reply_addresses_are_the_from_address_and_the_cadence_senders(make_settings: Any) -> None:
    settings = make_settings(from_address="Sales <Sales@Leadloop.Example>")
    assert reply_addresses(settings) == {"sales@leadloop.example", "hello@leadloop.example"}  # welcome.yaml's


async def test_a_reply_to_the_from_address_is_stored_matched_and_the_mail_kept(mailbox: Mailbox, sessionmaker) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    message = reply(sent.message_id, "yes, call me on Tuesday")
    await mailbox.send(message, ["hello@leadloop.example"], sender="anna@example.com")
    (row,) = await rows(sessionmaker)
    assert (row.source, row.kind, row.lead_id, row.outbox_key, row.status) == (
        "mailbox",
        "human_reply",
        lead,
        sent.key,
        "pending",  # no Temporal client here: the signal is left for the next pass
    )
    assert row.sender_hash == email_hash("anna@example.com") and "call me on Tuesday" in row.evidence["reply_text"]
    (kept,) = mailbox.kept()
    assert kept.startswith(b"Return-Path: <anna@example.com>\r\n") and b"call me on Tuesday" in kept
    # the same message delivered again (a sender's retry) is the same row
    await mailbox.send(message, ["hello@leadloop.example"], sender="anna@example.com")
    assert len(await rows(sessionmaker)) == 1 and len(mailbox.kept()) == 2


async def test_mail_to_a_lead_is_only_kept_as_before(mailbox: Mailbox, sessionmaker) -> None:
    msg = reply("<nothing@x>", "a nurture email, as the worker sends it")
    del msg["To"]
    msg["To"] = "anna@example.com"
    await mailbox.send(msg, ["anna@example.com"], sender=bounce_address(mailbox.route.signer, "lead-1.c0.x", BOUNCES))
    assert await rows(sessionmaker) == [] and len(mailbox.kept()) == 1
    assert mailbox.kept()[0].startswith(b"Return-Path: <bounces+")


async def test_a_bounce_to_the_verp_address_is_matched_and_suppresses(mailbox: Mailbox, sessionmaker) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "tips", "Three tips")
    verp = bounce_address(mailbox.route.signer, sent.key, BOUNCES)
    await mailbox.send(bounce(verp, "<mangled@nowhere>"), [verp], sender="")
    (row,) = await rows(sessionmaker)
    assert (row.kind, row.lead_id, row.outbox_key, row.status) == ("hard_bounce", lead, sent.key, "pending")
    assert row.match_reason and "VERP" in row.match_reason.upper()
    async with sessionmaker() as session:
        assert await session.get(Suppression, email_hash("anna@example.com")) is not None


async def test_unknown_addresses_are_refused_at_the_bounce_domain_and_kept_unmatched_elsewhere(
    mailbox: Mailbox, sessionmaker
) -> None:
    """Only VERP addresses exist at the bounce domain: any other is refused at RCPT and nothing is kept. A VERP
    address whose token does not verify, or a stranger writing to the From address, is kept unmatched."""
    await add_lead(sessionmaker, "anna@example.com")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await mailbox.send(reply("<x@y>", "hi"), [f"postmaster@{BOUNCES}"])
    assert refused.value.recipients[0].code == 550 and "bounces+<token>" in refused.value.recipients[0].message
    assert await rows(sessionmaker) == [] and mailbox.kept() == []

    forged = f"bounces+not-a-token@{BOUNCES}"
    await mailbox.send(bounce(forged, "<never@leadloop.example>"), [forged], sender="")
    await mailbox.send(reply("<never@x>", "who are you?", sender="stranger@example.org"), ["hello@leadloop.example"])
    found = await rows(sessionmaker)
    assert [(r.kind, r.lead_id, r.status) for r in found] == [
        ("hard_bounce", None, "unmatched"),
        ("human_reply", None, "unmatched"),
    ]
    async with sessionmaker() as session:  # a bounce no send was found for suppresses nothing
        assert (await session.execute(select(Suppression))).scalars().all() == []


async def test_broken_mail_to_leadloop_is_stored_unmatched_never_a_crash(mailbox: Mailbox, sessionmaker) -> None:
    garbage = b"\x00\xff\xfenot a message at all\r\n\r\n\xc3\x28 body in no charset\r\n"
    no_headers = b"\r\njust a body, no headers\r\n"
    for raw in (garbage, no_headers):
        await mailbox.send(raw, ["hello@leadloop.example"])
    found = await rows(sessionmaker)
    assert [r.status for r in found] == ["unmatched", "unmatched"] and all(r.lead_id is None for r in found)
    assert found[0].source_key == hashlib.sha256(garbage).hexdigest()


async def test_a_database_that_cannot_store_it_gets_a_temporary_refusal(make_settings: Any, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")
    route = InboundRoute.from_settings(make_settings(bounce_domain=BOUNCES), make_sessionmaker(engine), client=None)
    port = free_port()
    server = await serve_mailbox(tmp_path / "mail", "127.0.0.1", port, inbound=route)
    try:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await Mailbox(tmp_path / "mail", port, route).send(reply("<x@y>", "hi"), ["hello@leadloop.example"])
        assert refused.value.code == 451  # the sender's server keeps it and tries again
        assert list((tmp_path / "mail").glob("*.eml")) == []
    finally:
        server.close()
        await server.wait_closed()
        await engine.dispose()


async def test_leadloop_mailbox_inbound_stores_while_temporal_is_down(tmp_path: Path) -> None:
    """`leadloop mailbox --inbound` as a process: a reply to the From address is stored (left pending: Temporal is
    not there to hear it); on a database without tables it refuses to start, saying what to run."""
    import asyncio
    import os
    import sys

    from leadloop.infra.migrate import upgrade_database

    url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    port = free_port()
    env = {
        **os.environ,
        "LEADLOOP_DATABASE_URL": url,
        "LEADLOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # nothing listens there
        "LEADLOOP_BOUNCE_DOMAIN": BOUNCES,
        "LEADLOOP_DEMO": "true",
    }
    leadloop = [sys.executable, "-m", "starter.cli"]
    proc = await asyncio.create_subprocess_exec(
        *leadloop,
        "mailbox",
        "--inbound",
        "--port",
        str(port),
        "--dir",
        str(tmp_path / "mail"),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        lead = await add_lead(sessions, "anna@example.com")
        sent = await add_send(sessions, lead, "welcome", "Welcome")
        for _ in range(100):  # until it listens
            try:
                await smtp_send(port, reply(sent.message_id, "yes"), ["hello@leadloop.example"])
                break
            except (OSError, aiosmtplib.SMTPConnectError):
                await asyncio.sleep(0.1)
        (row,) = await rows(sessions)
        assert (row.source, row.kind, row.lead_id, row.status) == ("mailbox", "human_reply", lead, "pending")
    finally:
        proc.terminate()
        await proc.wait()
        await engine.dispose()

    empty = {**env, "LEADLOOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    refused = await asyncio.create_subprocess_exec(
        *leadloop,
        "mailbox",
        "--inbound",
        "--port",
        str(free_port()),
        env=empty,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode == 1 and "has no tables: run `leadloop db upgrade`" in " ".join(err.decode().split())


async def test_an_auto_reply_with_a_raw_8bit_subject_is_read_and_kept(mailbox: Mailbox, sessionmaker: Any) -> None:
    """A Hungarian out-of-office whose subject was sent as raw UTF-8, with a broken encoded word beside it: the
    mailbox keeps it, and the pipeline knows it for an auto-reply by that subject alone."""
    raw = (
        "From: Tóth Anna <anna@example.com>\r\nTo: hello@leadloop.example\r\n"
        "Subject: Automatikus válasz: Üdvözöljük =?x-no-such-charset?q?abc?=\r\nMessage-ID: <hu1@mail.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nKöszönöm az üzenetét.\r\n"
    ).encode()
    await mailbox.send(raw, ["hello@leadloop.example"], sender="anna@example.com")
    (row,) = await rows(sessionmaker)
    assert row.kind == "auto_reply" and row.evidence["subject"].startswith("Automatikus válasz: Üdvözöljük")
    (kept,) = mailbox.kept()
    assert kept.endswith(raw)
