"""What send_email puts on the wire, read from the raw bytes a real aiosmtpd server received: international
addresses (punycode, SMTPUTF8 or a permanent refusal) and a List-Unsubscribe header written literally."""

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.email import EmailActivities, SmtpConfig
from leadloop.domain.templates import EmailRenderer
from leadloop.domain.tokens import Signer
from tests.activities.test_email import add_lead, outbox, run, send_input
from tests.conftest import ScriptedHandler, SmtpServer, free_port

PUBLIC = "https://leadloop.example.com"


@pytest.fixture(params=[True, False], ids=["smtputf8", "ascii-only"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[SmtpServer]:
    """aiosmtpd on loopback, offering SMTPUTF8 in its EHLO or not."""
    smtp = SmtpServer("127.0.0.1", free_port(), ScriptedHandler(), smtputf8=request.param)
    await smtp.start()
    yield smtp
    await smtp.stop()


@pytest.fixture
async def activities(
    sessionmaker: async_sessionmaker[AsyncSession], server: SmtpServer, make_settings: Any
) -> AsyncIterator[EmailActivities]:
    settings = make_settings(smtp_port=server.port, public_url=PUBLIC)
    acts = EmailActivities(
        sessionmaker,
        EmailRenderer(settings.template_dir),
        SmtpConfig(host=server.host, port=server.port, timeout=5),
        settings,
    )
    yield acts
    await acts.smtp_pool.aclose()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


async def test_an_idn_domain_goes_out_in_punycode(
    activities: EmailActivities, server: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "hans@bücher.example", first_name="Hans", locale="de")
    result = await run(activities, send_input(lead_id))
    assert result.status == "sent"
    [envelope] = server.handler.accepted
    assert envelope.rcpt_tos == ["hans@xn--bcher-kva.example"]
    assert "SMTPUTF8" not in envelope.mail_options  # an ASCII local part needs no extension
    headers = header_block(server.handler.raw[0])
    assert headers.isascii()
    assert b"\r\nTo: Hans <hans@xn--bcher-kva.example>\r\n" in headers


@pytest.mark.parametrize("server", [True], indirect=True, ids=["smtputf8"])
@pytest.mark.parametrize(("address", "name"), [("josé@example.com", "José"), ("μαρία@example.gr", "Μαρία")])
async def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_the_server_offers_it(
    activities: EmailActivities, server: SmtpServer, sessionmaker: Any, address: str, name: str
) -> None:
    lead_id = await add_lead(sessionmaker, address, first_name=name)
    result = await run(activities, send_input(lead_id))
    assert result.status == "sent"
    [envelope] = server.handler.accepted
    assert "SMTPUTF8" in envelope.mail_options
    assert envelope.rcpt_tos == [address]
    assert f"\r\nTo: {name} <{address}>\r\n".encode() in header_block(server.handler.raw[0])
    [row] = await outbox(sessionmaker)
    assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.parametrize("server", [False], indirect=True, ids=["ascii-only"])
@pytest.mark.parametrize("address", ["josé@example.com", "μαρία@example.gr"])
async def test_a_non_ascii_local_part_without_smtputf8_fails_at_once_for_good(
    activities: EmailActivities, server: SmtpServer, sessionmaker: Any, address: str
) -> None:
    lead_id = await add_lead(sessionmaker, address)
    for attempt in (1, 2):  # an operator's retry against the same relay fails the same way, sending nothing
        with pytest.raises(ApplicationError) as failure:
            await run(activities, send_input(lead_id))
        assert failure.value.type == "SendRefused" and failure.value.non_retryable
        assert "SMTPUTF8" in failure.value.message and address not in failure.value.message
        [row] = await outbox(sessionmaker)
        assert row.status == "refused" and row.error and "SMTPUTF8" in row.error
        assert row.attempts == attempt
    assert server.handler.connections == [] and server.handler.raw == []  # not even a MAIL FROM


@pytest.mark.parametrize(
    ("server", "address"),
    [(True, "ana@example.com"), (False, "ana@example.com"), (True, "josé@example.com")],
    indirect=["server"],
)
async def test_list_unsubscribe_is_on_the_wire_byte_for_byte(
    activities: EmailActivities, server: SmtpServer, sessionmaker: Any, address: str
) -> None:
    lead_id = await add_lead(sessionmaker, address, first_name="Ana")
    await run(activities, send_input(lead_id))
    headers = header_block(server.handler.raw[0])
    # RFC 2369 / RFC 8058: the URL in angle brackets, as it is; an RFC 2047 encoded word is no URL to a mailbox
    match = re.search(rb"\r\nList-Unsubscribe: <(https://[!-~]+)>\r\n(?![ \t])", headers)
    assert match, headers.decode("utf-8", "replace")
    url = match.group(1).decode()
    assert url.startswith(f"{PUBLIC}/u/")
    token = url.rsplit("/", 1)[1]
    assert (
        Signer(activities.settings.signing_keys()).verify(token, kind="unsubscribe").key == f"lead-{lead_id}.c0.welcome"
    )
    assert len(f"List-Unsubscribe: <{url}>") > 78  # the length at which Python's policy used to encode it
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in headers
    assert b"=?" not in b"".join(line for line in headers.split(b"\r\n") if line.startswith(b"List-"))
