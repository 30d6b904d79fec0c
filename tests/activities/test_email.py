"""send_email against a real aiosmtpd server on loopback and a real database (SQLite and PostgreSQL)."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.email import EmailActivities, SmtpConfig
from leadloop.domain.cadence import Sender
from leadloop.domain.intake import LeadIn
from leadloop.domain.mail import email_hash
from leadloop.domain.models import SendEmailInput
from leadloop.domain.templates import EmailRenderer
from leadloop.infra.db import Lead, Outbox, Suppression
from leadloop.services.enrollment import upsert_lead
from tests.conftest import SmtpServer, free_port


async def add_lead(sessionmaker: async_sessionmaker[AsyncSession], email: str, **fields: Any) -> int:
    async with sessionmaker() as session:
        row, _ = await upsert_lead(session, LeadIn(email=email, **fields), "welcome")
        await session.commit()
        return row.id


def send_input(lead_id: int, step_id: str = "welcome", template: str = "welcome", cycle: int = 0) -> SendEmailInput:
    return SendEmailInput(
        lead_id=lead_id,
        cycle=cycle,
        step_id=step_id,
        step_number=1,
        steps_total=4,
        template=template,
        subject={"en": "Welcome, {{ lead.first_name }}", "el": "Καλώς ήρθατε, {{ lead.first_name }}"},
        cadence="welcome",
        default_locale="en",
        sender=Sender(name="Leadloop Demo", address="hello@leadloop.example", postal_address="1 Example St, Athens"),
    )


@pytest.fixture
async def activities(
    sessionmaker: async_sessionmaker[AsyncSession], smtp: SmtpServer, make_settings: Any
) -> AsyncIterator[EmailActivities]:
    settings = make_settings(smtp_port=smtp.port)
    acts = EmailActivities(
        sessionmaker,
        EmailRenderer(settings.template_dir),
        SmtpConfig(host=smtp.host, port=smtp.port, timeout=5),
        settings,
    )
    yield acts
    await acts.smtp_pool.aclose()


async def outbox(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Outbox]:
    async with sessionmaker() as session:
        return list((await session.execute(select(Outbox))).scalars())


async def run(activities: EmailActivities, input: SendEmailInput) -> Any:
    return await ActivityEnvironment().run(activities.send_email, input)


async def test_sends_a_multipart_message_with_headers(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(
        sessionmaker,
        "Maria@Example.gr",
        first_name="Μαρία",
        last_name="Παπαδοπούλου",
        locale="el",
        company="O'Brien & Söhne",
    )
    result = await run(activities, send_input(lead_id))
    assert result.status == "sent"
    [message] = smtp.handler.messages
    assert message.get_content_type() == "multipart/alternative"
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode(p.get_content_charset())
        for p in message.walk()
        if not p.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    assert "Γεια σας Μαρία" in parts["text/plain"] and "Γεια σας Μαρία" in parts["text/html"]
    assert "1 Example St, Athens" in parts["text/plain"]
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(message["Subject"]))) == "Καλώς ήρθατε, Μαρία"
    assert "maria@example.gr" in message["To"]
    assert message["Message-ID"] == f"<lead-{lead_id}.c0.welcome@leadloop.example>" == result.message_id
    assert message["Content-Language"] == "el"
    [row] = await outbox(sessionmaker)
    assert (row.status, row.attempts, row.message_id) == ("sent", 1, result.message_id)


async def test_html_is_escaped_and_text_is_not(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any, tmp_path: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "sean@example.ie", first_name="Seán <b>", company="O'Brien & Co")
    await run(activities, send_input(lead_id, template="tips"))
    [message] = smtp.handler.messages
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in message.walk() if not p.is_multipart()}
    assert "O'Brien & Co" in parts["text/plain"] and "Seán <b>" in parts["text/plain"]
    assert "O&#39;Brien &amp; Co" in parts["text/html"] and "Seán &lt;b&gt;" in parts["text/html"]


async def test_a_retry_finds_the_sent_row_and_keeps_the_message_id(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "olivia@example.com", first_name="Olivia")
    first = await run(activities, send_input(lead_id))
    again = await run(activities, send_input(lead_id))
    assert (first.status, again.status) == ("sent", "already_sent")
    assert first.message_id == again.message_id
    assert len(smtp.handler.messages) == 1


async def test_4xx_then_success_sends_once(activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any) -> None:
    lead_id = await add_lead(sessionmaker, "jan@example.pl", first_name="Jan")
    smtp.handler.rcpt_replies["jan@example.pl"] = ["451 4.3.0 try again later"]
    with pytest.raises(ApplicationError) as failure:
        await run(activities, send_input(lead_id))
    assert failure.value.type == "SmtpTemporary" and not failure.value.non_retryable
    assert smtp.handler.messages == []
    assert (await outbox(sessionmaker))[0].status == "pending"
    result = await run(activities, send_input(lead_id))
    assert result.status == "sent"
    assert len(smtp.handler.messages) == 1
    assert (await outbox(sessionmaker))[0].attempts == 2


async def test_server_down_then_back_sends_once(sessionmaker: Any, make_settings: Any) -> None:
    from tests.conftest import ScriptedHandler

    port = free_port()
    settings = make_settings()
    acts = EmailActivities(
        sessionmaker, EmailRenderer(settings.template_dir), SmtpConfig(host="127.0.0.1", port=port, timeout=5), settings
    )
    lead_id = await add_lead(sessionmaker, "lukas@example.de", first_name="Lukas", locale="de")
    with pytest.raises(ApplicationError) as failure:
        await run(acts, send_input(lead_id))
    assert failure.value.type == "SmtpUnavailable" and not failure.value.non_retryable
    server = SmtpServer("127.0.0.1", port, ScriptedHandler())
    await server.start()
    try:
        assert (await run(acts, send_input(lead_id))).status == "sent"
        assert (await run(acts, send_input(lead_id))).status == "already_sent"
    finally:
        await server.stop()
    assert len(server.handler.messages) == 1


async def test_5_1_1_bounces_and_suppresses_the_lead(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "nobody@example.com")
    smtp.handler.rcpt_replies["nobody@example.com"] = ["550 5.1.1 <nobody@example.com>: no such user"]
    with pytest.raises(ApplicationError) as failure:
        await run(activities, send_input(lead_id))
    assert failure.value.type == "HardBounce" and failure.value.non_retryable
    assert "nobody@example.com" not in failure.value.message  # no PII in Temporal history
    async with sessionmaker() as session:
        assert await session.get(Suppression, email_hash("nobody@example.com")) is not None
        assert (await session.get(Lead, lead_id)).bounced_at is not None
    # the next step is not even attempted over SMTP
    with pytest.raises(ApplicationError) as again:
        await run(activities, send_input(lead_id, step_id="tips", template="tips"))
    assert again.value.type == "Suppressed"
    assert smtp.handler.transactions == 0 and smtp.handler.messages == []


async def test_5_7_1_policy_refusal_does_not_suppress(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "lucia@example.es", first_name="Lucía", locale="es")
    smtp.handler.data_replies["lucia@example.es"] = ["550 5.7.1 message refused by policy"]
    with pytest.raises(ApplicationError) as failure:
        await run(activities, send_input(lead_id))
    assert failure.value.type == "SendRefused" and failure.value.non_retryable
    async with sessionmaker() as session:
        assert await session.get(Suppression, email_hash("lucia@example.es")) is None
        assert (await session.get(Lead, lead_id)).bounced_at is None
    [row] = await outbox(sessionmaker)
    assert row.status == "refused" and "5.7.1" in (row.error or "")
    # once the operator fixed the policy, the same step goes out
    assert (await run(activities, send_input(lead_id))).status == "sent"
    assert len(smtp.handler.messages) == 1


async def test_drop_after_data_is_uncertain_and_not_resent(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "eszter@example.hu", first_name="Eszter", locale="hu")
    smtp.handler.drop_after_data.add("eszter@example.hu")
    first = await run(activities, send_input(lead_id))
    assert first.status == "uncertain"
    again = await run(activities, send_input(lead_id))
    assert again.status == "uncertain"
    assert len(smtp.handler.messages) == 1  # the server did get it, once
    assert smtp.handler.transactions == 1  # and was never asked again
    [row] = await outbox(sessionmaker)
    assert row.status == "uncertain"


async def test_one_connection_carries_many_messages_up_to_its_limit(
    sessionmaker: Any, smtp: SmtpServer, make_settings: Any
) -> None:
    settings = make_settings(smtp_port=smtp.port)
    acts = EmailActivities(
        sessionmaker,
        EmailRenderer(settings.template_dir),
        SmtpConfig(host=smtp.host, port=smtp.port, timeout=5, messages_per_connection=2),
        settings,
    )
    ids = [await add_lead(sessionmaker, f"reuse{i}@example.com", first_name=f"R{i}") for i in range(5)]
    for lead_id in ids:
        assert (await run(acts, send_input(lead_id))).status == "sent"
    assert len(smtp.handler.messages) == 5
    assert acts.smtp_pool.opened == len(smtp.handler.connections) == 3  # 2 + 2 + 1
    await acts.smtp_pool.aclose()


async def test_a_connection_the_server_closed_while_idle_costs_no_email(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    first, second, third = [await add_lead(sessionmaker, f"idle{i}@example.com") for i in range(3)]
    assert (await run(activities, send_input(first))).status == "sent"
    # the server times the idle connection out: "421" to the next MAIL FROM
    smtp.handler.mail_replies.append("421 4.4.2 idle timeout, closing")
    assert (await run(activities, send_input(second))).status == "sent"
    # or simply drops it
    smtp.handler.connections[-1].transport.close()  # type: ignore[union-attr]
    assert (await run(activities, send_input(third))).status == "sent"
    assert [m["To"] for m in smtp.handler.messages] == [f"idle{i}@example.com" for i in range(3)]
    assert activities.smtp_pool.opened == 3
    assert {row.status for row in await outbox(sessionmaker)} == {"sent"}


async def test_421_on_a_new_connection_is_a_temporary_failure(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "busy@example.com")
    smtp.handler.mail_replies.append("421 4.3.2 too busy, try later")
    with pytest.raises(ApplicationError) as failure:
        await run(activities, send_input(lead_id))
    assert failure.value.type == "SmtpTemporary" and not failure.value.non_retryable
    assert smtp.handler.messages == []
    assert (await run(activities, send_input(lead_id))).status == "sent"
    [row] = await outbox(sessionmaker)
    assert (row.status, row.attempts) == ("sent", 2)


async def test_a_refused_connection_is_not_reused(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    refused, fine = await add_lead(sessionmaker, "policy@example.com"), await add_lead(sessionmaker, "ok@example.com")
    smtp.handler.data_replies["policy@example.com"] = ["550 5.7.1 refused by policy"]
    with pytest.raises(ApplicationError):
        await run(activities, send_input(refused))
    assert (await run(activities, send_input(fine))).status == "sent"
    assert activities.smtp_pool.opened == 2


async def test_of_two_overlapping_attempts_only_one_sends(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    """An attempt that outlived its timeout and the retry Temporal started meanwhile: the status is compared
    and set right before the message data, so the second to get there stops and nothing goes out twice."""
    from sqlalchemy import update

    lead_id = await add_lead(sessionmaker, "twice@example.com")

    async def the_other_attempt_marks_first(address: str) -> None:
        async with sessionmaker() as session:  # while this attempt talks to the server
            await session.execute(update(Outbox).values(status="sending"))
            await session.commit()

    smtp.handler.on_rcpt = the_other_attempt_marks_first
    with pytest.raises(ApplicationError) as stopped:
        await run(activities, send_input(lead_id))
    assert stopped.value.type == "SendInFlight" and not stopped.value.non_retryable
    assert smtp.handler.messages == [] and smtp.handler.transactions == 0  # no message data went out
    smtp.handler.on_rcpt = None
    # Temporal's next attempt finds the other one's mark: possibly sent, so never sent blindly
    assert (await run(activities, send_input(lead_id))).status == "uncertain"
    assert smtp.handler.messages == []
    [row] = await outbox(sessionmaker)
    assert row.status == "uncertain"


async def test_missing_template_fails_without_sending(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "x@example.com")
    with pytest.raises(ApplicationError) as failure:
        await run(activities, send_input(lead_id, template="no-such-template"))
    assert failure.value.type == "TemplateError" and failure.value.non_retryable
    assert smtp.handler.transactions == 0


async def test_every_email_is_tracked_and_unsubscribable(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    import email
    import email.policy
    import re

    from leadloop.domain.tokens import Signer

    lead_id = await add_lead(sessionmaker, "track@example.com", first_name="Ana")
    await run(activities, send_input(lead_id))
    message = email.message_from_bytes(smtp.handler.raw[0], policy=email.policy.default)
    public = activities.settings.public_url
    signer = Signer(activities.settings.signing_keys())
    unsubscribe = str(message["List-Unsubscribe"]).strip("<>")
    assert unsubscribe.startswith(f"{public}/u/") and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert signer.verify(unsubscribe.rsplit("/", 1)[1], kind="unsubscribe").key == f"lead-{lead_id}.c0.welcome"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert re.search(rf'<img src="{re.escape(public)}/o/[^"]+\.gif"', html)
    hrefs = re.findall(r'href="([^"]+)"', html)
    outside = [h for h in hrefs if not h.startswith(public)]
    assert outside == []  # every link goes through /c/ (or is the unsubscribe link)
    clicks = [signer.verify(h.rsplit("/", 1)[1].replace("&amp;", "&")) for h in hrefs if "/c/" in h]
    assert {c.url for c in clicks if not c.extra} == {f"{activities.settings.site_url}/pricing"}
    assert [c.extra for c in clicks].count("h") == 1  # the honeypot
    assert unsubscribe in html and unsubscribe in text  # visible in both parts
    assert "1 Example St, Athens" in html and "1 Example St, Athens" in text
    assert f"{activities.settings.site_url}/pricing" not in text
    # the click classifier reads how many links the email tracks (pricing, in both parts; the honeypot not)
    [row] = await outbox(sessionmaker)
    assert row.tracked_links == 1


async def test_an_owned_lead_hears_from_its_owner(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    from leadloop.domain.routing import Roster
    from leadloop.services.roster import import_roster

    async with sessionmaker() as session:
        await import_roster(
            session,
            Roster.model_validate(
                {"teams": [{"name": "south", "reps": [{"email": "nikos@sales.example", "name": "Νίκος Αλεξίου"}]}]}
            ),
        )
        await session.commit()
    owned = await add_lead(sessionmaker, "owned@example.com", owner="Nikos@Sales.example")
    plain = await add_lead(sessionmaker, "plain@example.com")
    for lead_id in (owned, plain):
        await run(activities, send_input(lead_id).model_copy(update={"send_as_owner": True}))
    by_to = {str(m["To"]): m for m in smtp.handler.messages}
    mine = by_to["owned@example.com"]
    assert "nikos@sales.example" in str(mine["From"]) and str(mine["Reply-To"]) == "nikos@sales.example"
    other = by_to["plain@example.com"]
    assert "hello@leadloop.example" in str(other["From"]) and other["Reply-To"] is None


@pytest.mark.parametrize("how", ["inactive", "left the roster"])
async def test_a_departed_owner_is_never_the_sender(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any, how: str
) -> None:
    from leadloop.domain.routing import Roster
    from leadloop.infra.db import Rep
    from leadloop.services.roster import import_roster
    from leadloop.services.timeline import database_entries

    nikos = {"email": "nikos@sales.example", "name": "Νίκος Αλεξίου"}
    anna = {"email": "anna@sales.example", "name": "Anna"}
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate({"teams": [{"name": "south", "reps": [nikos, anna]}]}))
        await session.commit()
    lead_id = await add_lead(sessionmaker, "owned@example.com", owner="nikos@sales.example")
    first = await run(activities, send_input(lead_id).model_copy(update={"send_as_owner": True}))
    assert "nikos@sales.example" in str(smtp.handler.messages[0]["From"])
    async with sessionmaker() as session:  # Nikos leaves
        if how == "inactive":
            await import_roster(
                session,
                Roster.model_validate({"teams": [{"name": "south", "reps": [{**nikos, "active": False}, anna]}]}),
            )
        else:
            await import_roster(session, Roster.model_validate({"teams": [{"name": "south", "reps": [anna]}]}))
        await session.commit()
        rep_id = (await session.execute(select(Rep.id).where(Rep.email == "nikos@sales.example"))).scalar_one()
    second = await run(
        activities, send_input(lead_id, step_id="tips", template="tips").model_copy(update={"send_as_owner": True})
    )
    message = smtp.handler.messages[1]
    assert "hello@leadloop.example" in str(message["From"]) and "nikos" not in str(message["From"])
    assert message["Reply-To"] is None
    assert smtp.handler.accepted[1].mail_from == "hello@leadloop.example"  # the envelope too
    assert first.note is None
    assert second.status == "sent" and second.note and f"rep-{rep_id}" in second.note and "inactive" in second.note
    entries = await database_entries(sessionmaker, lead_id)
    assert entries is not None
    [tips] = [e.detail for e in entries if "step 'tips'" in e.detail]
    assert "sent" in tips and f"owner (rep-{rep_id}) is inactive" in tips and "cadence's sender" in tips


async def test_with_a_bounce_domain_the_envelope_sender_names_the_send(
    sessionmaker: Any, smtp: SmtpServer, make_settings: Any
) -> None:
    from leadloop.domain.tokens import Signer
    from leadloop.domain.verp import bounce_key

    settings = make_settings(smtp_port=smtp.port, bounce_domain="Bounces.Leadloop.example")
    acts = EmailActivities(
        sessionmaker, EmailRenderer(settings.template_dir), SmtpConfig(host=smtp.host, port=smtp.port), settings
    )
    try:
        lead_id = await add_lead(sessionmaker, "verp@example.com", first_name="Vera")
        result = await run(acts, send_input(lead_id))
    finally:
        await acts.smtp_pool.aclose()
    (envelope,) = smtp.handler.accepted
    assert envelope.mail_from.startswith("bounces+") and envelope.mail_from.endswith("@bounces.leadloop.example")
    assert bounce_key(Signer(settings.signing_keys()), envelope.mail_from, "bounces.leadloop.example") == (
        result.outbox_key
    )
    (message,) = smtp.handler.messages
    assert str(message["From"]) == "Leadloop Demo <hello@leadloop.example>"  # the From header is unchanged
    assert message["Message-ID"] == f"<{result.outbox_key}@leadloop.example>"


async def test_without_a_bounce_domain_the_envelope_sender_is_the_from_address(
    activities: EmailActivities, smtp: SmtpServer, sessionmaker: Any
) -> None:
    lead_id = await add_lead(sessionmaker, "plain@example.com")
    await run(activities, send_input(lead_id))
    assert [e.mail_from for e in smtp.handler.accepted] == ["hello@leadloop.example"]
