"""Header injection: whatever a lead's fields hold, the message goes to its one recipient with its own headers.

Intake refuses control characters, so the hostile leads here are written to the database directly, as
an older import or a hand edit could have left them: the send path must hold on its own.
"""

import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities, SmtpConfig
from leadloop.domain.cadence import Sender
from leadloop.domain.intake import PROFILE_FIELDS, LeadIn, parse_csv_text, validate_lead
from leadloop.domain.models import NotifyRepInput, SendEmailInput
from leadloop.domain.routing import Roster
from leadloop.domain.scoring import Score
from leadloop.domain.templates import EmailRenderer
from leadloop.infra.db import Assignment, Lead, Rep
from leadloop.services.roster import import_roster
from tests.conftest import ScriptedHandler, SmtpServer, free_port

INJECTION = "\r\nBcc: victim@evil.example"
# every way a line could end inside a header: CRLF, a bare LF or CR, NEL, Unicode's line separator, and NUL
BREAKS = ["\r\n", "\n", "\r", "\x85", "\u2028", "\x00", "\r\n\r\n"]
STORED_BREAKS = [b for b in BREAKS if b != "\x00"]  # PostgreSQL stores no NUL; the subject test sends one
SUBJECT = "Hi {{ lead.first_name }} {{ lead.last_name }} of {{ lead.company }}"
HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "x-leadloop-outbox-key",
    "content-type",
    "mime-version",
    "content-language",
}


@dataclass
class EnvelopeHandler(ScriptedHandler):
    """The scripted handler, also keeping each transaction's envelope recipients (RCPT TO)."""

    envelopes: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(list(envelope.rcpt_tos))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = SmtpServer("127.0.0.1", free_port(), EnvelopeHandler())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def activities(sessionmaker: async_sessionmaker[AsyncSession], smtp: SmtpServer, make_settings: Any) -> EmailActivities:
    settings = make_settings(smtp_port=smtp.port)
    return EmailActivities(
        sessionmaker,
        EmailRenderer(settings.template_dir),
        SmtpConfig(host=smtp.host, port=smtp.port, timeout=5),
        settings,
    )


async def add_raw_lead(sessionmaker: async_sessionmaker[AsyncSession], email_address: str, **fields: Any) -> int:
    """A lead row as it stands in the database, past intake's validation."""
    async with sessionmaker() as session:
        lead = Lead(email=email_address, attributes={}, cadence="welcome", **fields)
        session.add(lead)
        await session.commit()
        return lead.id


def send_input(lead_id: int, subject: str = SUBJECT) -> SendEmailInput:
    return SendEmailInput(
        lead_id=lead_id,
        cycle=0,
        step_id="welcome",
        step_number=1,
        steps_total=4,
        template="welcome",
        subject={"en": subject},
        cadence="welcome",
        default_locale="en",
        sender=Sender(name="Leadloop Demo", address="hello@leadloop.example", postal_address="1 Example St, Athens"),
    )


def envelopes(smtp: SmtpServer) -> list[list[str]]:
    """The recipients of each transaction, as the server was told them (RCPT TO)."""
    assert isinstance(smtp.handler, EnvelopeHandler)
    return smtp.handler.envelopes


def received(smtp: SmtpServer) -> email.message.EmailMessage:
    [raw] = smtp.handler.raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def header_block(smtp: SmtpServer) -> list[str]:
    """The raw header lines, unfolded: one entry per header field as the server received it."""
    head = smtp.handler.raw[0].split(b"\r\n\r\n", 1)[0].decode("ascii")
    fields: list[str] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


@pytest.mark.parametrize("line_break", STORED_BREAKS, ids=repr)
async def test_a_hostile_name_and_company_add_no_header_and_no_recipient(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any, line_break: str
) -> None:
    injection = f"{line_break}Bcc: victim@evil.example"
    lead_id = await add_raw_lead(
        sessionmaker,
        "eve@example.com",
        first_name=f"Eve{injection}",
        last_name=f"Lee{injection}",
        company=f"Acme{injection}{line_break}X-Evil: 1",
    )
    result = await ActivityEnvironment().run(activities.send_email, send_input(lead_id))
    assert result.status == "sent"
    assert envelopes(smtp) == [["eve@example.com"]]  # the SMTP envelope: one recipient, the lead
    message = received(smtp)
    assert {name.lower() for name in message.keys()} == HEADERS
    assert message["Bcc"] is None and message["Cc"] is None and message["X-Evil"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["eve@example.com"]
    subject = str(message["Subject"])
    assert (
        subject
        == "Hi Eve Bcc: victim@evil.example Lee Bcc: victim@evil.example of Acme Bcc: victim@evil.example X-Evil: 1"
    )
    assert [f for f in header_block(smtp) if f.lower().startswith(("bcc", "cc", "x-evil"))] == []
    assert not any(c in str(message["To"]) for c in "\r\n\x00\x85\u2028")


async def test_the_subject_template_cannot_break_its_line_either(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_raw_lead(sessionmaker, "sam@example.com", first_name="Sam")
    subject = "Hello {{ lead.first_name }}{{ '\\r\\n' }}Bcc: victim@evil.example{{ '\\x00' }}{{ '\\x0b' }}X-Evil: 1"
    assert (await ActivityEnvironment().run(activities.send_email, send_input(lead_id, subject))).status == "sent"
    message = received(smtp)
    assert str(message["Subject"]) == "Hello Sam Bcc: victim@evil.example X-Evil: 1"
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert envelopes(smtp) == [["sam@example.com"]]


async def test_an_address_with_a_line_break_never_reaches_the_smtp_server(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    hostile = "mallory@example.com\r\nRCPT TO:<victim@evil.example>"
    lead_id = await add_raw_lead(sessionmaker, hostile, first_name="Mallory")
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(activities.send_email, send_input(lead_id))
    assert failure.value.type == "TemplateError" and failure.value.non_retryable
    assert "mallory@example.com" not in failure.value.message  # no address in Temporal's history
    assert smtp.handler.transactions == 0 and envelopes(smtp) == []


async def test_the_reps_notification_names_the_lead_on_one_line(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    """Its subject is put together from the lead's name and company: the one built outside a template."""
    async with sessionmaker() as session:
        await import_roster(
            session,
            Roster.model_validate(
                {
                    "teams": [
                        {
                            "name": "south",
                            "manager": {"name": "Μαρία Boss", "email": "boss@sales.example"},
                            "reps": [{"email": "nikos@sales.example", "name": "Νίκος Αλεξίου"}],
                        }
                    ]
                }
            ),
        )
        await session.commit()
    lead_id = await add_raw_lead(
        sessionmaker, "eve@example.com", first_name=f"Eve{INJECTION}", company=f"Acme{INJECTION}"
    )
    async with sessionmaker() as session:
        rep = (await session.execute(select(Rep))).scalar_one()
        key = f"lead-{lead_id}.c0.a1"
        session.add(
            Assignment(key=key, lead_id=lead_id, cycle=0, rep_id=rep.id, team="south", rule="r", status="assigned")
        )
        await session.commit()
    notify = NotifyRepInput(assignment_key=key, lead_id=lead_id, cycle=0, attempt=1, score=Score(total=80))
    assert (await ActivityEnvironment().run(activities.notify_rep, notify)).status == "sent"
    assert envelopes(smtp) == [["nikos@sales.example"]]
    message = received(smtp)
    assert message["Bcc"] is None and message["Cc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["nikos@sales.example"]
    assert str(message["Subject"]) == (
        "Lead for you: Eve Bcc: victim@evil.example (Acme Bcc: victim@evil.example), score 80"
    )


# ---------------------------------------------------------------- intake: refused, named, never cleaned silently


@pytest.mark.parametrize("name", [f for f in PROFILE_FIELDS if f not in {"timezone", "locale", "owner"}])
@pytest.mark.parametrize("line_break", BREAKS, ids=repr)
def test_intake_refuses_a_line_break_inside_any_one_line_field(name: str, line_break: str) -> None:
    result = validate_lead({"email": "eve@example.com", name: f"Eve{line_break}Bcc: victim@evil.example"})
    assert isinstance(result, list)
    assert result == [(name, "contains control characters (line breaks, tabs, ...)")]


def test_intake_trims_surrounding_line_breaks_and_refuses_them_in_attributes() -> None:
    lead = LeadIn(email="  Eve@Example.com\r\n", first_name="\r\nEve\r\n", company="\tAcme ")
    assert (lead.email, lead.first_name, lead.company) == ("eve@example.com", "Eve", "Acme")
    result = validate_lead({"email": "eve@example.com", "attributes": {"source": f"fair{INJECTION}"}})
    assert result == [("attributes", "'source': contains control characters (line breaks, tabs, ...)")]
    with pytest.raises(ValueError, match="control characters"):
        LeadIn(email=f"eve@example.com{INJECTION}")


def test_the_csv_parser_refuses_the_row_and_keeps_the_others() -> None:
    text = (
        "email,first_name,company,source\r\n"
        "ann@example.com,Ann,Acme,fair\r\n"
        f'eve@example.com,"Eve{INJECTION}",Evil,fair\r\n'
        f'bob@example.com,Bob,"Bobs\r\n",web\r\n'
        f'mal@example.com,Mal,Mal Inc,"fair{INJECTION}"\r\n'
        "zoe@example.com,Zoe,Zed,\r\n"
    )
    parsed = parse_csv_text(text)
    assert [lead.email for lead in parsed.leads] == ["ann@example.com", "bob@example.com", "zoe@example.com"]
    assert parsed.leads[1].company == "Bobs"  # a line break around a value is trimmed, like any whitespace
    # rows are reported by the line they start on: Eve's value spans lines 3-4, so Bob starts on 5
    assert [(e.row, e.field) for e in parsed.errors] == [(3, "first_name"), (7, "attributes")]
    assert parsed.rows_of["bob@example.com"] == [5] and parsed.rows_of["zoe@example.com"] == [9]


async def test_the_reps_notification_gets_a_verp_sender_too(
    sessionmaker: Any, smtp: SmtpServer, make_settings: Any
) -> None:
    from leadloop.domain.tokens import Signer
    from leadloop.domain.verp import bounce_key

    settings = make_settings(smtp_port=smtp.port, bounce_domain="bounces.leadloop.example")
    acts = EmailActivities(
        sessionmaker, EmailRenderer(settings.template_dir), SmtpConfig(host=smtp.host, port=smtp.port), settings
    )
    async with sessionmaker() as session:
        await import_roster(
            session,
            Roster.model_validate(
                {"teams": [{"name": "south", "reps": [{"email": "nikos@sales.example", "name": "N"}]}]}
            ),
        )
        await session.commit()
    lead_id = await add_raw_lead(sessionmaker, "eve@example.com", first_name="Eve")
    async with sessionmaker() as session:
        rep = (await session.execute(select(Rep))).scalar_one()
        key = f"lead-{lead_id}.c0.a1"
        session.add(
            Assignment(key=key, lead_id=lead_id, cycle=0, rep_id=rep.id, team="south", rule="r", status="assigned")
        )
        await session.commit()
    notify = NotifyRepInput(assignment_key=key, lead_id=lead_id, cycle=0, attempt=1, score=Score(total=80))
    try:
        assert (await ActivityEnvironment().run(acts.notify_rep, notify)).status == "sent"
    finally:
        await acts.smtp_pool.aclose()
    (envelope,) = smtp.handler.accepted
    assert bounce_key(Signer(settings.signing_keys()), envelope.mail_from) == f"{key}.notify"
