"""Inbound messages on SQLite and PostgreSQL: stored once, matched to the send they answer, listed, aged, forgotten."""

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.intake import LeadIn
from leadloop.domain.mail import email_hash, message_id
from leadloop.domain.matching import InboundHeaders, Match
from leadloop.domain.tokens import Signer
from leadloop.domain.verp import bounce_address
from leadloop.infra.db import FormerAddress, InboundMessage, Outbox, make_engine
from leadloop.services.enrollment import upsert_lead
from leadloop.services.erasure import erase_in_database
from leadloop.services.inbound import (
    clean_message_id,
    drop_old_raw,
    list_inbound,
    match_message,
    store_inbound,
)
from leadloop.services.inbound_delivery import ingest_message, signal_of

SIGNER = Signer(["k1"])
NOW = datetime.now(UTC)
RAW = b"From: Anna <anna@example.com>\r\nSubject: Re: Welcome\r\n\r\nyes, call me on Tuesday\r\n"


async def add_lead(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> int:
    async with sessionmaker() as session:
        row, _ = await upsert_lead(session, LeadIn(email=email, first_name="Anna"), "welcome")
        await session.commit()
        return row.id


async def add_send(
    sessionmaker: async_sessionmaker[AsyncSession], lead_id: int, step: str, subject: str, days_ago: float = 1
) -> Outbox:
    key = f"lead-{lead_id}.c0.{step}"
    row = Outbox(
        key=key,
        lead_id=lead_id,
        cycle=0,
        step_id=step,
        cadence="welcome",
        status="sent",
        message_id=message_id(key, "hello@leadloop.example"),
        subject=subject,
        attempts=1,
        created_at=NOW - timedelta(days=days_ago),
        sent_at=NOW - timedelta(days=days_ago),
    )
    async with sessionmaker() as session:
        session.add(row)
        await session.commit()
    return row


async def store(sessionmaker: async_sessionmaker[AsyncSession], **fields: Any) -> Any:
    values: dict[str, Any] = {"source": "imap", "source_key": "7:1", "raw": RAW, "message_id": "<m1@mail.example>"}
    async with sessionmaker() as session:
        stored = await store_inbound(session, **(values | fields))
        await session.commit()
        return stored


async def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[InboundMessage]:
    async with sessionmaker() as session:
        return list((await session.execute(select(InboundMessage).order_by(InboundMessage.id))).scalars())


async def test_the_migration_creates_the_table(database_url: str) -> None:
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("inbound_messages")})
    await engine.dispose()
    assert {"message_id", "source", "source_key", "lead_id", "kind", "evidence", "raw", "raw_size", "status"} <= columns


async def test_a_message_is_stored_once_by_where_it_was_read_and_by_its_message_id(sessionmaker: Any) -> None:
    first = await store(sessionmaker, sender="Anna <Anna@Example.com>")
    assert first.new
    assert await store(sessionmaker) == type(first)(id=first.id, new=False)  # the same UID read again
    # the same message, delivered again (another UID) or reported by a webhook too
    assert await store(sessionmaker, source_key="7:2") == type(first)(id=first.id, new=False)
    assert await store(sessionmaker, source="webhook:ses", source_key="evt-1") == type(first)(id=first.id, new=False)
    (row,) = await rows(sessionmaker)
    assert row.sender_hash == email_hash("anna@example.com") and row.raw == RAW and row.raw_size == len(RAW)
    assert row.status == "pending" and row.lead_id is None and row.evidence == {}


async def test_messages_without_a_message_id_are_told_apart_by_where_they_were_read(sessionmaker: Any) -> None:
    one = await store(sessionmaker, message_id=None, source_key="7:1")
    two = await store(sessionmaker, message_id="", source_key="7:2")
    again = await store(sessionmaker, message_id=None, source_key="7:2")
    assert one.new and two.new and not again.new and again.id == two.id
    assert [r.message_id for r in await rows(sessionmaker)] == [None, None]


async def test_the_database_refuses_a_second_row_for_one_message_id(sessionmaker: Any) -> None:
    await store(sessionmaker)
    async with sessionmaker() as session:
        session.add(
            InboundMessage(message_id="<m1@mail.example>", source="mailbox", source_key="x", raw_size=0, evidence={})
        )
        with pytest.raises(IntegrityError):
            await session.commit()


@pytest.mark.parametrize(
    ("field", "value"), [("source", "pop3"), ("source", "webhook:"), ("source_key", ""), ("status", "done")]
)
async def test_what_is_not_a_source_or_status_is_refused(sessionmaker: Any, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        await store(sessionmaker, **{field: value})


def test_message_ids_are_kept_as_their_one_id() -> None:
    assert clean_message_id("  <a@b>  ") == "<a@b>"
    assert clean_message_id("bare-id@host") == "bare-id@host"
    assert clean_message_id(None) is None and clean_message_id(" ") is None
    assert clean_message_id("x" * 1000) is None


async def test_listed_newest_first_by_kind_or_unmatched(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    matched = Match(reason="In-Reply-To names lead-1.c0.welcome", lead_id=lead_id, outbox_key="k", rule="in_reply_to")
    await store(sessionmaker, source_key="1", message_id="<a@x>", kind="human_reply", match=matched, received_at=NOW)
    await store(sessionmaker, source_key="2", message_id="<b@x>", kind="hard_bounce", received_at=NOW)
    await store(sessionmaker, source_key="3", message_id="<c@x>", kind="human_reply", received_at=NOW + timedelta(1))
    async with sessionmaker() as session:
        assert [m.message_id for m in await list_inbound(session)] == ["<c@x>", "<b@x>", "<a@x>"]
        assert [m.message_id for m in await list_inbound(session, kind="human_reply")] == ["<c@x>", "<a@x>"]
        assert [m.message_id for m in await list_inbound(session, unmatched=True)] == ["<c@x>", "<b@x>"]
        (reply,) = await list_inbound(session, kind="human_reply", unmatched=False, limit=1)
    first = (await rows(sessionmaker))[0]
    assert first.lead_id == lead_id and first.outbox_key == "k" and (first.match_reason or "").startswith("In-Reply-To")
    assert reply.message_id == "<c@x>"


async def test_raw_bodies_older_than_the_retention_are_dropped_and_the_rest_stays(sessionmaker: Any) -> None:
    await store(
        sessionmaker,
        source_key="old",
        message_id="<old@x>",
        received_at=NOW - timedelta(days=31),
        kind="auto_reply",
        return_date=date(2026, 12, 8),
        evidence={"header": "Auto-Submitted"},
    )
    await store(sessionmaker, source_key="new", message_id="<new@x>", received_at=NOW - timedelta(days=29))
    async with sessionmaker() as session:
        assert await drop_old_raw(session, 30) == 1
        await session.commit()
        assert await drop_old_raw(session, 30) == 0
    old, new = await rows(sessionmaker)
    assert old.raw is None and old.raw_size == len(RAW) and old.kind == "auto_reply"
    assert old.return_date == date(2026, 12, 8) and old.evidence == {"header": "Auto-Submitted"}
    assert new.raw == RAW


async def test_the_retention_drops_the_replys_own_words_with_the_body(sessionmaker: Any) -> None:
    """A reply's text (and the 'contact X instead' an auto-reply names) is personal data: it goes with the raw body;
    the verdict's reasons, the kind and the return date stay. A message whose body went before this rule loses
    its text on the next pass; a recent one keeps everything."""
    words = {"reply_text": "yes, call me on Tuesday at +30 210 1234567", "contact_hint": "Eleni, eleni@example.gr"}
    reasons = {"confidence": "high", "reasons": ["In-Reply-To names leadloop's email"], "subject": "Re: Welcome"}
    await store(
        sessionmaker,
        source_key="old",
        message_id="<old@x>",
        received_at=NOW - timedelta(days=40),
        kind="human_reply",
        evidence={**reasons, **words},
    )
    await store(
        sessionmaker,
        source_key="body-gone",
        message_id="<gone@x>",
        raw=None,
        received_at=NOW - timedelta(days=90),
        kind="auto_reply",
        return_date=date(2026, 9, 1),
        evidence={**reasons, "contact_hint": words["contact_hint"]},
    )
    await store(
        sessionmaker, source_key="new", message_id="<new@x>", received_at=NOW - timedelta(days=2), evidence=words
    )
    async with sessionmaker() as session:
        with pytest.raises(ValueError, match="at least 1 day"):
            await drop_old_raw(session, 0)
        assert await drop_old_raw(session, 30) == 2
        await session.commit()
        assert await drop_old_raw(session, 30) == 0
    old, gone, new = await rows(sessionmaker)
    assert old.raw is None and old.evidence == reasons and old.kind == "human_reply"
    assert signal_of(old).reply_text == ""  # a late signal carries no words either
    assert gone.evidence == reasons and gone.return_date == date(2026, 9, 1)
    assert new.raw == RAW and new.evidence == words


async def test_the_retention_keeps_a_reply_that_still_waits_for_its_signal(sessionmaker: Any) -> None:
    """A matched reply not yet signalled (Temporal was down for weeks) keeps its body and words, so the rep still
    reads them when it is signalled; once signalled, the next pass drops them."""
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    words = {"reply_text": "yes, call me on Tuesday", "subject": "Re: Welcome"}
    matched = Match(reason="In-Reply-To", outbox_key="k", lead_id=lead_id)
    await store(
        sessionmaker,
        source_key="waiting",
        received_at=NOW - timedelta(days=40),
        match=matched,
        kind="human_reply",
        evidence=words,
    )
    async with sessionmaker() as session:
        assert await drop_old_raw(session, 30) == 0
        await session.commit()
    (waiting,) = await rows(sessionmaker)
    assert waiting.raw == RAW and signal_of(waiting).reply_text == "yes, call me on Tuesday"
    async with sessionmaker() as session:
        await session.execute(update(InboundMessage).values(status="signalled"))
        assert await drop_old_raw(session, 30) == 1
        await session.commit()
    (done,) = await rows(sessionmaker)
    assert done.raw is None and done.evidence == {"subject": "Re: Welcome"}


async def test_the_retention_works_through_a_backlog_in_batches(sessionmaker: Any) -> None:
    """Every old message is cleared however many there are, a few rows at a time; recent ones are left alone."""
    for n in range(7):
        await store(sessionmaker, source_key=f"old-{n}", message_id=f"<old{n}@x>", received_at=NOW - timedelta(days=31))
    await store(sessionmaker, source_key="new", message_id="<new@x>", received_at=NOW - timedelta(days=1))
    async with sessionmaker() as session:
        with pytest.raises(ValueError, match="at least 1 row"):
            await drop_old_raw(session, 30, batch=0)
        assert await drop_old_raw(session, 30, batch=3) == 7
        await session.commit()
    kept = await rows(sessionmaker)
    assert [row.raw for row in kept] == [None] * 7 + [RAW]


# ---------------------------------------------------------------- matching against the database's sends


async def test_a_reply_is_matched_by_its_thread_then_by_sender_and_subject(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    welcome = await add_send(sessionmaker, lead_id, "welcome", "Welcome, Anna", days_ago=3)
    tips = await add_send(sessionmaker, lead_id, "tips", "Three tips", days_ago=1)
    async with sessionmaker() as session:
        threaded = await match_message(
            session, InboundHeaders(received_at=NOW, in_reply_to=welcome.message_id, sender="x@other.example"), SIGNER
        )
        by_subject = await match_message(
            session, InboundHeaders(received_at=NOW, sender="ANNA@example.com", subject="AW: Three tips"), SIGNER
        )
        stranger = await match_message(
            session, InboundHeaders(received_at=NOW, sender="bob@example.com", subject="Re: Three tips"), SIGNER
        )
    assert (threaded.rule, threaded.outbox_key, threaded.lead_id) == ("in_reply_to", welcome.key, lead_id)
    assert (by_subject.rule, by_subject.outbox_key, by_subject.lead_id) == ("sender_subject", tips.key, lead_id)
    assert not stranger.matched


async def test_a_bounce_is_matched_by_its_verp_recipient(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    tips = await add_send(sessionmaker, lead_id, "tips", "Three tips")
    verp = bounce_address(SIGNER, tips.key, "bounces.example.com")
    headers = InboundHeaders(received_at=NOW, sender="MAILER-DAEMON@mx.example", recipients=(verp,))
    async with sessionmaker() as session:
        found = await match_message(session, headers, SIGNER, bounce_domain="bounces.example.com")
    assert (found.rule, found.outbox_key, found.lead_id) == ("verp", tips.key, lead_id)


async def test_an_address_two_leads_had_leaves_the_reply_unmatched(sessionmaker: Any) -> None:
    """anna@ is lead A's address now and was lead B's before a change: the reply is kept, on neither lead."""
    a = await add_lead(sessionmaker, "anna@example.com")
    b = await add_lead(sessionmaker, "anna.new@example.com")
    async with sessionmaker() as session:
        session.add(FormerAddress(email_hash=email_hash("anna@example.com"), lead_id=b))
        await session.commit()
    await add_send(sessionmaker, a, "tips", "Three tips")
    await add_send(sessionmaker, b, "tips", "Three tips")
    headers = InboundHeaders(received_at=NOW, sender="anna@example.com", subject="Re: Three tips")
    async with sessionmaker() as session:
        found = await match_message(session, headers, SIGNER)
        stored = await store_inbound(
            session, source="imap", source_key="1:9", raw=RAW, sender=headers.sender, match=found, status="unmatched"
        )
        await session.commit()
        (listed,) = await list_inbound(session, unmatched=True)
    assert not found.matched and found.reason == f"ambiguous: the sender's address is that of leads {a}, {b}"
    assert listed.id == stored.id and listed.match_reason == found.reason and listed.status == "unmatched"


# ---------------------------------------------------------------- erasure


async def test_forgetting_a_person_removes_their_inbound_messages(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "anna@example.com")
    matched = Match(reason="r", lead_id=lead_id, outbox_key="k", rule="in_reply_to")
    await store(sessionmaker, source_key="1", message_id="<a@x>", match=matched, sender="x@relay.example")
    await store(sessionmaker, source_key="2", message_id="<b@x>", sender="Anna <anna@example.com>")  # unmatched
    await store(sessionmaker, source_key="3", message_id="<c@x>", sender="bob@example.com")
    async with sessionmaker() as session:
        done = await erase_in_database(session, None, lead_id)
        await session.commit()
    assert done["inbound_messages"] == 2
    assert [r.message_id for r in await rows(sessionmaker)] == ["<c@x>"]


async def test_forgetting_an_address_no_lead_has_removes_its_messages(sessionmaker: Any) -> None:
    await store(sessionmaker, source_key="1", message_id="<a@x>", sender="stranger@example.com")
    async with sessionmaker() as session:
        assert await erase_in_database(session, "stranger@example.com", None) == {"inbound_messages": 1}
        await session.commit()
        assert await erase_in_database(session, "stranger@example.com", None) == {}
    assert await rows(sessionmaker) == []


POSTFIX_DSN = (
    Path(__file__).parents[1] / "domain" / "inbound_corpus" / "hard_bounce" / "postfix_user_unknown_5_1_1.eml"
).read_bytes()


async def ingest_raw(sessionmaker: async_sessionmaker[AsyncSession], raw: bytes, key: str) -> InboundMessage:
    async with sessionmaker() as session:
        stored = await ingest_message(session, raw, source="imap", source_key=key, signer=SIGNER)
        await session.commit()
        row = await session.get(InboundMessage, stored.id)
        assert row is not None
        return row


async def test_forgetting_an_address_removes_an_unmatched_bounce_about_it(sessionmaker: Any) -> None:
    """A Postfix DSN about jane@ comes from MAILER-DAEMON and matches no send: only its recipient names her."""
    row = await ingest_raw(sessionmaker, POSTFIX_DSN, "INBOX:1:1")
    assert (row.kind, row.lead_id, row.status) == ("hard_bounce", None, "unmatched")
    assert row.about_hash == email_hash("jane@example.net") and row.sender_hash != row.about_hash
    await store(sessionmaker, source_key="other", message_id="<other@x>", sender="bob@example.com")
    async with sessionmaker() as session:
        assert await erase_in_database(session, "Jane@Example.net", None) == {"inbound_messages": 1}
        await session.commit()
    assert [r.message_id for r in await rows(sessionmaker)] == ["<other@x>"]


async def test_forgetting_a_lead_removes_an_unmatched_bounce_about_its_address(sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "jane@example.net")  # the DSN names a Message-ID leadloop never sent
    row = await ingest_raw(sessionmaker, POSTFIX_DSN, "INBOX:1:1")
    assert row.lead_id is None
    async with sessionmaker() as session:
        done = await erase_in_database(session, None, lead_id)
        await session.commit()
    assert done["inbound_messages"] == 1 and await rows(sessionmaker) == []


async def test_forgetting_finds_a_bounce_stored_before_its_recipient_was_recorded(sessionmaker: Any) -> None:
    """Rows stored before migration 0012 have no about_hash: the addresses in their body or evidence decide."""
    await store(sessionmaker, source_key="old-dsn", message_id="<dsn@x>", raw=POSTFIX_DSN, kind="hard_bounce")
    await store(
        sessionmaker,
        source_key="old-body-gone",
        message_id="<gone@x>",
        raw=None,
        kind="complaint",
        evidence={"reasons": ["Original-Rcpt-To: jane@example.net"]},
    )
    await store(
        sessionmaker, source_key="bob", message_id="<bob@x>", raw=b"To: bob@example.com\r\n\r\n", kind="hard_bounce"
    )
    async with sessionmaker() as session:
        assert await erase_in_database(session, "jane@example.net", None) == {"inbound_messages": 2}
        await session.commit()
    assert [r.message_id for r in await rows(sessionmaker)] == ["<bob@x>"]


async def test_forgetting_scrubs_the_address_from_other_peoples_messages(sessionmaker: Any) -> None:
    """Bob's auto-reply says to write to Jane instead: Bob's message stays, Jane's address leaves its evidence."""
    evidence = {"contact_hint": "Jane@example.net", "reasons": ["says the person has left; contact: jane@example.net"]}
    await store(sessionmaker, sender="bob@example.com", kind="auto_reply", evidence=evidence)
    async with sessionmaker() as session:
        assert await erase_in_database(session, "jane@example.net", None) == {"inbound_mentions": 1}
        await session.commit()
    (bob,) = await rows(sessionmaker)
    assert bob.evidence == {
        "contact_hint": "[erased address]",
        "reasons": ["says the person has left; contact: [erased address]"],
    }


async def test_what_retention_keeps_of_a_bounce_does_not_name_its_recipient(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        stored = await ingest_message(
            session, POSTFIX_DSN, source="imap", source_key="INBOX:1:1", signer=SIGNER, received_at=NOW - timedelta(40)
        )
        assert await drop_old_raw(session, 30) == 1
        await session.commit()
    (row,) = await rows(sessionmaker)
    assert row.id == stored.id and row.raw is None and row.kind == "hard_bounce"
    kept = json.dumps([row.evidence, row.match_reason, row.message_id, row.outbox_key], ensure_ascii=False)
    assert "jane@" not in kept.lower() and "…@example.net" in kept


async def test_the_retention_masks_the_recipient_in_a_diagnostic_stored_unmasked(sessionmaker: Any) -> None:
    """A bounce stored before diagnostics were masked: what retention keeps of it no longer names the address."""
    evidence = {
        "reasons": ["answers <lead-1.c0.welcome@acme.example>", "diagnostic: 550 5.1.1 <jane@example.net> unknown"],
        "diagnostic": "smtp; 550 5.1.1 <jane@example.net>",
        "answers": "<lead-1.c0.welcome@acme.example>",
    }
    await store(sessionmaker, received_at=NOW - timedelta(days=31), kind="hard_bounce", evidence=evidence)
    async with sessionmaker() as session:
        assert await drop_old_raw(session, 30) == 1
        await session.commit()
    (row,) = await rows(sessionmaker)
    assert row.evidence == {
        "reasons": ["answers <lead-1.c0.welcome@acme.example>", "diagnostic: 550 5.1.1 <…@example.net> unknown"],
        "diagnostic": "smtp; 550 5.1.1 <…@example.net>",
        "answers": "<lead-1.c0.welcome@acme.example>",
    }
