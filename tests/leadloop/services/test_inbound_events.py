"""Provider events through the inbound pipeline on SQLite and PostgreSQL: matched only when certain, stored once,
suppressing as a mailed DSN would; and the fetcher and certificate cache behind SNS verification."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.mail import email_hash
from leadloop.domain.webhooks import ProviderEvent
from leadloop.infra.db import FormerAddress, InboundMessage, Lead, Suppression
from leadloop.services.inbound_delivery import event_key, ingest_event
from leadloop.services.webhooks import FETCH_MAX_BYTES, Certificates, https_get
from tests.conftest import free_port
from tests.leadloop.services.test_inbound import SIGNER, add_lead, add_send
from tests.leadloop.services.test_inbound_delivery import suppressed


def bounce(recipient: str, message_id: str | None = None, event_id: str = "e1", **fields: Any) -> ProviderEvent:
    values: dict[str, Any] = {
        "provider": "sendgrid",
        "event_id": event_id,
        "kind": "hard_bounce",
        "recipient": recipient,
        "message_id": message_id,
        "occurred_at": datetime.now(UTC),
        "status_code": "5.1.1",
        "diagnostic": "550 5.1.1 user unknown",
        "raw_type": "bounce/bounce",
    }
    return ProviderEvent(**(values | fields))


async def ingest(sessionmaker: async_sessionmaker[AsyncSession], event: ProviderEvent) -> InboundMessage:
    async with sessionmaker() as session:
        stored = await ingest_event(session, event, raw=b'{"event": "bounce"}', signer=SIGNER)
        await session.commit()
        row = await session.get(InboundMessage, stored.id)
        assert row is not None
        return row


async def test_the_send_named_by_its_message_id_wins_over_the_address(sessionmaker: Any) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, anna, "welcome", "Welcome")
    row = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id))
    assert (row.lead_id, row.outbox_key, row.status) == (anna, sent.key, "pending")
    assert "References" in (row.match_reason or "")
    assert row.evidence["answers"] == sent.message_id and row.evidence["provider"] == "sendgrid"


async def test_an_address_two_leads_have_had_is_ambiguous_and_suppresses_nothing(sessionmaker: Any) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    other = await add_lead(sessionmaker, "anna.new@example.com")
    await add_send(sessionmaker, anna, "welcome", "Welcome")
    async with sessionmaker() as session:  # the other lead had Anna's address before
        session.add(FormerAddress(email_hash=email_hash("anna@example.com"), lead_id=other))
        await session.commit()
    row = await ingest(sessionmaker, bounce("anna@example.com"))
    assert (row.lead_id, row.status) == (None, "unmatched")
    assert (row.match_reason or "").startswith("ambiguous")
    assert await suppressed(sessionmaker) == {}


async def test_a_send_older_than_the_window_names_no_lead(sessionmaker: Any) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    await add_send(sessionmaker, anna, "welcome", "Welcome", days_ago=45)
    row = await ingest(sessionmaker, bounce("anna@example.com"))
    assert row.status == "unmatched" and "30 days" in (row.match_reason or "")


async def test_a_bounce_of_an_address_the_lead_no_longer_has_suppresses_it_and_leaves_the_lead(
    sessionmaker: Any,
) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, anna, "welcome", "Welcome")
    async with sessionmaker() as session:
        lead = await session.get(Lead, anna)
        assert lead is not None
        lead.email = "anna@new.example"
        await session.commit()
    row = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id))
    assert (row.lead_id, row.status) == (anna, "ignored")
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "hard_bounce"}


async def test_a_complaint_suppresses_the_lead_and_a_soft_bounce_nothing(sessionmaker: Any) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, anna, "welcome", "Welcome")
    soft = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id, "e1", kind="soft_bounce"))
    assert (soft.kind, soft.status) == ("soft_bounce", "pending")
    assert await suppressed(sessionmaker) == {}
    complaint = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id, "e2", kind="complaint"))
    assert (complaint.kind, complaint.status) == ("complaint", "pending")
    assert await suppressed(sessionmaker) == {email_hash("anna@example.com"): "complaint"}


async def test_a_replayed_event_is_not_applied_again(sessionmaker: Any) -> None:
    anna = await add_lead(sessionmaker, "anna@example.com")
    sent = await add_send(sessionmaker, anna, "welcome", "Welcome")
    first = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id))
    async with sessionmaker() as session:  # an operator lifts the suppression; the provider then retries
        await session.delete(await session.get(Suppression, email_hash("anna@example.com")))
        await session.commit()
    again = await ingest(sessionmaker, bounce("anna@example.com", sent.message_id))
    assert again.id == first.id
    assert await suppressed(sessionmaker) == {}


@pytest.mark.parametrize("recipient", ["not an address", "anna\udc00@example.com", "anna@example.com\x00"])
async def test_an_unusable_recipient_is_kept_unmatched_not_a_crash(sessionmaker: Any, recipient: str) -> None:
    await add_lead(sessionmaker, "anna@example.com")
    row = await ingest(sessionmaker, bounce(recipient, diagnostic="bad \udc00 text\x00"))
    assert (row.lead_id, row.status, row.sender_hash) == (None, "unmatched", None)
    assert "\x00" not in row.evidence["diagnostic"]


def test_an_event_id_that_cannot_be_a_key_is_kept_as_its_hash() -> None:
    assert event_key("sg-1") == "sg-1"
    for odd in ("x" * 300, "id\x00", "id\udc00"):
        key = event_key(odd)
        assert key.startswith("sha256:") and len(key) == 71 and key == event_key(odd)


# ---------------------------------------------------------------- fetching SNS certificates


async def test_certificates_are_fetched_once_per_url_and_a_failure_is_not_kept() -> None:
    fetched: list[str] = []
    failing = True

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        await asyncio.sleep(0.01)
        if failing and url.endswith("/down.pem"):
            raise httpx.ConnectError("down")
        return url.encode()

    certificates = Certificates(fetch, kept=2)
    got = await asyncio.gather(*(certificates.get("https://sns.x/a.pem") for _ in range(5)))
    assert got == [b"https://sns.x/a.pem"] * 5 and fetched == ["https://sns.x/a.pem"]
    with pytest.raises(httpx.ConnectError):
        await certificates.get("https://sns.x/down.pem")
    failing = False
    assert await certificates.get("https://sns.x/down.pem") == b"https://sns.x/down.pem"
    await certificates.get("https://sns.x/b.pem")  # a third: the least recently used one goes
    await certificates.get("https://sns.x/a.pem")
    assert fetched.count("https://sns.x/a.pem") == 2


async def _serve(answer: bytes) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/cert.pem"


@pytest.mark.parametrize(
    "answer, error",
    [
        (b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 0\r\n\r\n", httpx.HTTPError),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", httpx.HTTPError),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * (FETCH_MAX_BYTES + 1), ValueError),
    ],
    ids=["redirect-not-followed", "server-error", "too-large"],
)
async def test_the_fetcher_follows_no_redirect_and_reads_no_more_than_a_certificate(
    answer: bytes, error: type[Exception]
) -> None:
    server, url = await _serve(answer)
    async with server:
        with pytest.raises(error):
            await https_get(url)


async def test_the_fetcher_hands_back_the_body() -> None:
    server, url = await _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nPEM!")
    async with server:
        assert await https_get(url) == b"PEM!"


async def test_a_providers_diagnostic_is_kept_with_the_recipients_mailbox_masked(sessionmaker: Any) -> None:
    row = await ingest(
        sessionmaker, bounce("jane@example.com", diagnostic="smtp; 550 5.1.1 <jane@example.com>... User")
    )
    assert row.evidence["diagnostic"] == "smtp; 550 5.1.1 <…@example.com>... User"
