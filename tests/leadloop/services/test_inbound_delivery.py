"""The inbound pipeline's store step on SQLite and PostgreSQL: classified, matched, stored, suppressed at once."""

from email.message import EmailMessage
from typing import Any

from sqlalchemy import delete, select

from leadloop.domain.mail import email_hash, message_id
from leadloop.domain.models import Carry, InboundInput
from leadloop.domain.verp import bounce_address
from leadloop.infra.db import FormerAddress, InboundMessage, Outbox, Suppression
from leadloop.services.inbound_delivery import ingest_message, signal_of
from tests.leadloop.services.test_inbound import NOW, SIGNER, add_lead, add_send


def reply(to_message_id: str, text: str, sender: str = "Anna <anna@example.com>") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "hello@leadloop.example", "Re: Welcome"
    msg["Message-ID"], msg["In-Reply-To"] = "<r1@mail.example>", to_message_id
    msg.set_content(f"{text}\n\nOn Monday, Leadloop wrote:\n> Welcome aboard\n")
    return msg.as_bytes()


def bounce(to: str, original_id: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.com\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <b1@mx.example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.com.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; anna@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original_id}\r\nTo: anna@example.com\r\n"
        "\r\n--b--\r\n"
    ).encode()


async def ingest(sessionmaker: Any, raw: bytes, key: str, **extra: Any) -> InboundMessage:
    async with sessionmaker() as session:
        stored = await ingest_message(session, raw, source="imap", source_key=key, signer=SIGNER, **extra)
        await session.commit()
        row = await session.get(InboundMessage, stored.id)
        assert row is not None
        return row


async def suppressed(sessionmaker: Any) -> dict[str, str]:
    async with sessionmaker() as session:
        return {row.email_hash: row.reason for row in (await session.execute(select(Suppression))).scalars()}


async def test_a_reply_is_stored_with_its_verdict_matched_and_left_for_its_signal(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    row = await ingest(sessionmaker, reply(sent.message_id, "yes, call me on Tuesday"), "INBOX:7:1")
    assert (row.kind, row.lead_id, row.outbox_key, row.status) == ("human_reply", lead, sent.key, "pending")
    signal = signal_of(row)
    assert signal.id == f"inbound-{row.id}" and signal.kind == "human_reply"
    assert "call me on Tuesday" in signal.reply_text and "Welcome aboard" not in signal.reply_text
    assert await suppressed(sessionmaker) == {}


async def test_a_hard_bounce_suppresses_the_address_as_it_is_stored(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    verp = bounce_address(SIGNER, sent.key, "bounces.leadloop.example")
    raw = bounce(verp, sent.message_id)
    row = await ingest(sessionmaker, raw, "INBOX:7:2", bounce_domain="bounces.leadloop.example")
    assert (row.kind, row.lead_id, row.status) == ("hard_bounce", lead, "pending")
    assert row.evidence["status"] == "5.1.1"
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}


async def test_a_bounce_for_an_address_never_mailed_is_kept_unmatched_and_suppresses_nothing(sessionmaker: Any) -> None:
    await add_lead(sessionmaker, "anna@example.com")
    never = message_id("lead-999.c0.welcome", "hello@leadloop.example")
    row = await ingest(sessionmaker, bounce("hello@leadloop.example", never), "INBOX:7:3")
    assert (row.kind, row.lead_id, row.status) == ("hard_bounce", None, "unmatched")
    assert await suppressed(sessionmaker) == {}


async def test_a_message_read_twice_is_one_row(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    first = await ingest(sessionmaker, reply(sent.message_id, "yes"), "INBOX:7:1")
    again = await ingest(sessionmaker, reply(sent.message_id, "yes"), "INBOX:7:9")
    assert first.id == again.id


def test_a_signal_is_applied_once_and_counted_by_kind() -> None:
    memory = Carry()
    message = InboundInput(id="inbound-1", kind="soft_bounce", received_at=NOW)
    assert memory.first_inbound(message)
    assert not memory.first_inbound(message)
    assert memory.inbound.soft_bounce == 1
    carried = Carry.begin(memory.next_cycle("cycle 0", reset_engagement=True))
    assert carried.inbound.soft_bounce == 1 and not carried.first_inbound(message)


def bounce_for(to: str, original_id: str, final_recipient: str, status: str = "5.1.1") -> bytes:
    return (
        bounce(to, original_id)
        .replace(b"rfc822; anna@example.com", f"rfc822; {final_recipient}".encode())
        .replace(b"Status: 5.1.1", f"Status: {status}".encode())
    )


async def test_mail_about_a_rep_notification_is_no_lead_mail(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    key = f"lead-{lead}.c0.a1.notify"
    notification = Outbox(
        key=key,
        lead_id=lead,
        cycle=0,
        step_id="notify-a1",
        cadence="_sales",
        status="sent",
        message_id=message_id(key, "hello@leadloop.example"),
        subject="New lead: Anna",
        attempts=1,
        created_at=NOW,
        sent_at=NOW,
    )
    async with sessionmaker() as session:
        session.add(notification)
        await session.commit()
    # the rep answers the notification, and the rep's mailbox later bounces one
    answer = reply(notification.message_id, "On it", sender="Bob <bob@sales.example>")
    row = await ingest(sessionmaker, answer, "INBOX:7:1")
    assert (row.lead_id, row.status) == (lead, "ignored") and "notification to a rep" in row.evidence["ignored"]
    verp = bounce_address(SIGNER, key, "bounces.leadloop.example")
    bounced = bounce_for(verp, notification.message_id, "bob@sales.example", "4.2.2")
    row = await ingest(sessionmaker, bounced, "INBOX:7:2", bounce_domain="bounces.leadloop.example")
    assert (row.kind, row.status) == ("soft_bounce", "ignored")
    assert await suppressed(sessionmaker) == {}


async def test_a_forged_unsubscribe_naming_a_guessed_message_id_suppresses_no_one(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    forged = reply(sent.message_id, "Please remove me from this list.", sender="m@evil.example")
    row = await ingest(sessionmaker, forged, "INBOX:7:1")
    assert (row.kind, row.lead_id, row.status) == ("unsubscribe_request", lead, "ignored")
    assert await suppressed(sessionmaker) == {}
    # the same words from her own address unsubscribe her
    mine = reply(sent.message_id, "Please remove me from this list.").replace(b"<r1@", b"<r2@")
    row = await ingest(sessionmaker, mine, "INBOX:7:2")
    assert (row.kind, row.status) == ("unsubscribe_request", "pending")
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "unsubscribe_request"}


async def test_a_bounce_naming_an_address_the_lead_never_had(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    # tied to the send only by a Message-ID anyone can guess: nothing suppressed, the lead left alone
    row = await ingest(sessionmaker, bounce_for("hello@leadloop.example", sent.message_id, "x@other.example"), "I:1:1")
    assert (row.kind, row.lead_id, row.status) == ("hard_bounce", lead, "ignored")
    assert await suppressed(sessionmaker) == {}
    # tied by the VERP address leadloop signed: her mail was forwarded to where it bounced, so her address is dead
    verp = bounce_address(SIGNER, sent.key, "bounces.leadloop.example")
    forwarded = bounce_for(verp, sent.message_id, "anna.old@forward.example").replace(b"<b1@", b"<b2@")
    row = await ingest(sessionmaker, forwarded, "I:1:2", bounce_domain="bounces.leadloop.example")
    assert (row.status, "forwarded" in row.evidence) == ("pending", True)
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}


async def test_a_bounce_for_a_former_address_suppresses_that_address_and_the_lead_goes_on(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    async with sessionmaker() as session:
        session.add(FormerAddress(email_hash=email_hash("anna@old.example"), lead_id=lead))
        await session.commit()
    soft = bounce_for("hello@leadloop.example", sent.message_id, "anna@old.example", "4.2.2")
    row = await ingest(sessionmaker, soft, "I:1:1")
    assert (row.kind, row.status) == ("soft_bounce", "ignored") and "no longer has" in row.evidence["ignored"]
    hard = bounce_for("hello@leadloop.example", sent.message_id, "anna@old.example").replace(b"<b1@", b"<b2@")
    row = await ingest(sessionmaker, hard, "I:1:2")
    assert (row.kind, row.status) == ("hard_bounce", "ignored")
    assert await suppressed(sessionmaker) == {email_hash("anna@old.example"): "hard_bounce"}


async def test_a_message_read_again_acts_no_more(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    verp = bounce_address(SIGNER, sent.key, "bounces.leadloop.example")
    raw = bounce(verp, sent.message_id)
    first = await ingest(sessionmaker, raw, "INBOX:7:1", bounce_domain="bounces.leadloop.example")
    async with sessionmaker() as session:  # an operator lifts the suppression
        await session.execute(delete(Suppression))
        await session.commit()
    again = await ingest(sessionmaker, raw, "INBOX:8:1", bounce_domain="bounces.leadloop.example")  # new UIDVALIDITY
    assert again.id == first.id
    assert await suppressed(sessionmaker) == {}


async def test_a_reply_with_a_raw_8bit_re_subject_is_matched_by_sender_and_subject(sessionmaker: Any) -> None:
    """No In-Reply-To, and a subject sent as raw UTF-8 (not RFC 2047): the sender and "Re: <subject>" still find
    the send, where reading it as compat32 does would have turned every accented letter into U+FFFD."""
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Üdvözöljük, Anna — Καλώς ήρθατε")
    raw = (
        "From: Tóth Anna <anna@example.com>\r\nTo: hello@leadloop.example\r\n"
        "Subject: Re: Üdvözöljük, Anna — Καλώς ήρθατε\r\nMessage-ID: <r8@mail.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nKöszönöm, hívjon kedden.\r\n"
    ).encode()
    row = await ingest(sessionmaker, raw, "INBOX:7:8")
    assert (row.kind, row.lead_id, row.outbox_key, row.status) == ("human_reply", lead, sent.key, "pending")
    assert row.evidence["subject"] == "Re: Üdvözöljük, Anna — Καλώς ήρθατε"
