"""`leadloop history` reads inbound mail from the database: each message read back for a lead is one line with its
kind, what it said and the send it answers (SQLite and PostgreSQL)."""

from typing import Any

from leadloop.services.timeline import EXCERPT_CHARS, database_entries
from tests.leadloop.services.test_inbound import add_lead, add_send
from tests.leadloop.services.test_inbound_delivery import bounce, ingest, reply


async def test_the_history_shows_each_inbound_message_with_its_words_and_what_it_answers(sessionmaker: Any) -> None:
    lead = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, lead, "welcome", "Welcome")
    long = "Yes, call me on Tuesday. " + "Also, " * 40 + "bring the pricing."
    await ingest(sessionmaker, reply(sent.message_id, long), "INBOX:7:1")
    await ingest(sessionmaker, bounce("bounces@leadloop.example", sent.message_id), "INBOX:7:2")
    entries = await database_entries(sessionmaker, lead)
    assert entries is not None
    inbound = [e.detail for e in entries if e.kind == "inbound"]
    assert len(inbound) == 2
    said, bounced = sorted(inbound, key=lambda d: not d.startswith("human reply"))
    assert said.startswith("human reply: “Yes, call me on Tuesday. Also,") and f"(answers {sent.key})" in said
    assert "…”" in said and "bring the pricing" not in said  # shortened
    assert len(said.split("“")[1].split("…")[0]) == EXCERPT_CHARS
    assert "On Monday, Leadloop wrote" not in said  # the quoted original is not hers
    assert said.endswith("— not yet applied")  # stored, not yet signalled to the workflow
    assert bounced.startswith("hard bounce 5.1.1") and f"(answers {sent.key})" in bounced
    other = await add_lead(sessionmaker, "bob@example.com")
    entries = await database_entries(sessionmaker, other)
    assert entries is not None and not [e for e in entries if e.kind == "inbound"]
