"""The classifier's edge rules (RFC 3463 codes, headers, negations, matching) and bad input that must not crash it."""

import email
import email.policy
import time
from email.message import EmailMessage

import pytest

from leadloop.domain.inbound import classify
from leadloop.domain.inbound.reports import status_kind

LEADLOOP_ID = "<lead-7.c2.nurture-1@acme.example>"


def message(body: str = "Thanks, sounds good.", *, subject: str = "Re: Hello", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Roe <jane@example.net>"
    msg["To"] = "maria@acme.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 01 Dec 2026 09:15:00 +0000"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def dsn(status: str, diagnostic: str, action: str = "failed") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\n"
        f"Final-Recipient: rfc822; Jane@Example.net\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {LEADLOOP_ID}\r\nTo: jane@example.net\r\n--B--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        ("5.1.1", "550 user unknown", "hard_bounce"),
        ("5.1.10", "RecipientNotFound", "hard_bounce"),
        ("5.2.1", "account disabled", "hard_bounce"),
        ("5.4.4", "no route to host", "hard_bounce"),
        ("5.2.2", "mailbox full", "soft_bounce"),
        ("4.2.2", "over quota", "soft_bounce"),
        ("4.7.1", "greylisted", "soft_bounce"),
        ("5.7.1", "relaying denied", "policy_block"),
        ("5.7.26", "unauthenticated", "policy_block"),
        ("5.1.8", "bad sender's system address", "policy_block"),
        ("5.2.3", "message too big", "policy_block"),
        ("5.0.0", "550 mailbox full", "soft_bounce"),
        ("5.0.0", "550 blocked as spam by policy", "policy_block"),
        ("5.0.0", "550 no such user here", "hard_bounce"),
    ],
)
def test_enhanced_codes_per_rfc_3463(status: str, diagnostic: str, kind: str) -> None:
    verdict = classify(dsn(status, diagnostic))
    assert (verdict.kind, verdict.status, verdict.lead_email) == (kind, status, "jane@example.net")
    assert verdict.answers == LEADLOOP_ID


def test_a_permanent_failure_without_detail_is_hard_but_says_it_guessed() -> None:
    assert status_kind(None, "") == ("hard_bounce", "low", "permanent failure with no detail: taken as a dead address")


def test_a_delayed_action_is_soft_whatever_the_code() -> None:
    assert classify(dsn("5.0.0", "still trying", action="delayed")).kind == "soft_bounce"


def test_a_dsn_for_a_message_leadloop_never_sent_answers_nothing() -> None:
    verdict = classify(dsn("5.1.1", "user unknown"), sent_message_ids={"<lead-1.c1.welcome@acme.example>"})
    assert verdict.kind == "hard_bounce" and verdict.lead_email == "jane@example.net"
    assert verdict.answers is None


def test_answers_is_one_of_the_sent_ids_when_given() -> None:
    raw = message(In_Reply_To="<other@mail.example>", References=f"{LEADLOOP_ID} <other@mail.example>")
    assert classify(raw).answers == LEADLOOP_ID
    assert classify(raw, sent_message_ids={"<other@mail.example>"}).answers == "<other@mail.example>"
    assert classify(message(In_Reply_To="<someone-else@mail.example>")).answers is None


def test_auto_submitted_no_is_a_person() -> None:
    assert classify(message(Auto_Submitted="no")).kind == "human_reply"


@pytest.mark.parametrize(
    "header",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated; owner-email=x@example.net"},
        {"X_Autoreply": "yes"},
        {"X_Autorespond": "yes"},
        {"Precedence": "junk"},
        {"Precedence": "bulk"},
        {"X_Auto_Response_Suppress": "All"},
    ],
)
def test_automatic_headers(header: dict[str, str]) -> None:
    verdict = classify(message(**header))
    assert verdict.kind == "auto_reply" and verdict.confidence == "high"


def test_an_auto_reply_asking_nothing_is_not_an_unsubscribe() -> None:
    body = "I am away. To unsubscribe from my newsletter click here."
    verdict = classify(message(body, Auto_Submitted="auto-replied"))
    assert verdict.kind == "auto_reply"


def test_unsubscribe_words_in_the_quoted_original_do_not_count() -> None:
    body = "Interested, tell me more.\n\nOn Tue, Dec 1, 2026 at 8:00 AM Maria wrote:\n> Unsubscribe: https://x/u\n"
    verdict = classify(message(body))
    assert verdict.kind == "human_reply"
    assert verdict.reply_text == "Interested, tell me more."


def test_a_wrapped_gmail_quote_header_is_stripped() -> None:
    body = "Yes please.\n\nOn Tue, Dec 1, 2026 at 8:00 AM Maria Rep <maria@acme.example>\nwrote:\n> remove me\n"
    verdict = classify(message(body))
    assert (verdict.kind, verdict.reply_text) == ("human_reply", "Yes please.")


def test_the_signature_is_cut() -> None:
    assert classify(message("Call me.\n-- \nJane Roe\nunsubscribe@example.net")).reply_text == "Call me."


@pytest.mark.parametrize(
    "body",
    [
        "Don't unsubscribe me, please.",
        "Bitte nicht abmelden!",
        "Nie wypisuj mnie, dziękuję.",
        "Ne iratkoztassanak ki.",
        # a negation a few words before the request words, in each language
        "I don't want to unsubscribe, just call me.",
        "I won't unsubscribe, send more.",
        "I really do not think I want you to remove me from the list.",
        "No need to remove me, keep sending.",
        "Ich möchte mich nicht abmelden, rufen Sie mich an.",
        "Bitte melden Sie mich nicht ab.",
        "No quiero darme de baja.",
        "No es necesario darme de baja, me interesa.",
        "Nie chcę się wypisać.",
        "Nie ma potrzeby mnie wypisać, czytam wszystko.",
        "Nem szeretnék leiratkozni.",
        "Δεν θέλω διαγραφή.",
        "Μην με διαγράψετε, ενδιαφέρομαι.",
    ],
)
def test_negated_requests_stay_replies(body: str) -> None:
    verdict = classify(message(body))
    assert verdict.kind == "human_reply"
    assert any("not as a request" in reason and "negated" in reason for reason in verdict.evidence)


@pytest.mark.parametrize(
    "body",
    [
        "Why would I unsubscribe? Call me Tuesday.",
        "Warum sollte ich mich abmelden? Rufen Sie mich an.",
        "¿Por qué iba a darme de baja? Llámeme el martes.",
        "Γιατί να ζητήσω διαγραφή; Καλέστε με την Τρίτη.",
    ],
)
def test_a_question_asking_why_is_no_request(body: str) -> None:
    assert classify(message(body)).kind == "human_reply"


@pytest.mark.parametrize(
    "body",
    [
        "Yes, call me on Tuesday. The unsubscribe link in your last email looks broken.",
        "Der Link zum Abmelden funktioniert nicht. Rufen Sie mich an.",
        "El enlace para darme de baja no carga. Llámeme.",
        "A leiratkozási link nem működik. Hívjon fel.",
        "Ο σύνδεσμος διαγραφής δεν λειτουργεί. Καλέστε με.",
        # leadloop's own footer, quoted without any mark a quote-stripper knows
        "Sounds good, call me.\nUnsubscribe: https://acme.example/u/abc",
        "Interesting. Click here to unsubscribe from these emails, it said; I won't.",
    ],
)
def test_naming_the_unsubscribe_link_is_no_request(body: str) -> None:
    verdict = classify(message(body))
    assert verdict.kind == "human_reply"
    assert any("link" in reason for reason in verdict.evidence)


@pytest.mark.parametrize(
    "body",
    [
        "Bitte melden Sie mich ab",
        "Melden Sie mich bitte vom Newsletter ab.",
        "No, please remove me.",
        "Can you remove me from this list?",
        "I don't read these. Unsubscribe me.",
        "I have no interest, please remove me.",
        "No more emails please, unsubscribe me.",
        "No me envíen más correos.",
        "Nie, proszę wypisz mnie.",
        "Kérem, ne küldjenek több levelet.",
        "Παρακαλώ διαγράψτε με.",
        # a negation in an earlier clause: "so", "bitte", "pero"... open a new one
        "I never signed up for this so unsubscribe me.",
        "I don't read these please unsubscribe me",
        "Ich habe das nie bestellt, also bitte abmelden.",
        "No pedí esto pero quiero darme de baja.",
        "Nie zamawiałem tego więc proszę wypisz mnie.",
        "Δεν το ζήτησα οπότε διαγράψτε με.",
    ],
)
def test_requests_near_other_negations_still_ask(body: str) -> None:
    verdict = classify(message(body))
    assert verdict.kind == "unsubscribe_request", verdict.evidence


def test_a_long_reply_mostly_about_something_else_is_a_reply() -> None:
    """A wrongly suppressed lead is lost for good; a missed request is still covered by the one-click link."""
    body = (
        "Thanks for the pricing sheet. We compared it with two other vendors last week and yours fits our budget "
        "for the first year, but we need the API access tier and single sign-on for about forty people. Could you "
        "send the contract terms for that and a reference customer in logistics? Our procurement team meets on "
        "Thursday and I would like to bring a proposal. My colleague in finance may write to you too; please "
        "remove me from the newsletter though."
    )
    verdict = classify(message(body))
    assert verdict.kind == "human_reply"
    assert any("long reply mostly about something else" in reason for reason in verdict.evidence)
    assert classify(message("Please remove me from the newsletter.")).kind == "unsubscribe_request"


def test_a_challenge_carries_no_return_date_and_the_flag() -> None:
    raw = message("Please verify you are human: click below. I am out of office until 8 December 2026.")
    verdict = classify(raw)
    assert (verdict.kind, verdict.challenge, verdict.return_date) == ("auto_reply", True, None)


def test_left_the_company_without_a_contact() -> None:
    verdict = classify(message("Jane has left the company.", Auto_Submitted="auto-replied"))
    assert (verdict.kind, verdict.left_company, verdict.contact_hint) == ("auto_reply", True, None)


def test_without_a_date_header_only_a_dated_return_is_read() -> None:
    raw = message("Out of office until 8 December.").replace(b"Date: Tue, 01 Dec 2026 09:15:00 +0000\n", b"")
    assert classify(raw).return_date is None
    raw = message("Out of office until 8 December 2026.").replace(b"Date: Tue, 01 Dec 2026 09:15:00 +0000\n", b"")
    assert classify(raw).return_date is not None and classify(raw).return_date.isoformat() == "2026-12-08"


def test_a_return_date_in_the_past_is_not_one() -> None:
    assert classify(message("Out of office until 1 November 2026.", Auto_Submitted="auto-replied")).return_date is None


@pytest.mark.parametrize(
    ("raw", "clue"),
    [
        (b"", "no headers"),
        (b"just some words without any header\n", "no headers"),
        (b"\x00\xff\xfe\x80 binary", "no headers"),
        (
            b"From: a@example.net\nContent-Type: multipart/mixed\n\n--X\nbroken",
            "malformed MIME",
        ),
    ],
)
def test_broken_messages_are_low_confidence_replies(raw: bytes, clue: str) -> None:
    verdict = classify(raw)
    assert verdict.kind == "human_reply" and verdict.confidence == "low"
    assert any(clue in reason for reason in verdict.evidence), verdict.evidence


def test_an_unknown_charset_is_read_as_utf8() -> None:
    raw = b"From: a@example.net\nSubject: Re: x\nContent-Type: text/plain; charset=x-klingon\n\nCall me \xc3\xa9.\n"
    verdict = classify(raw)
    assert verdict.reply_text == "Call me \u00e9."
    assert "unknown charset 'x-klingon': read as UTF-8" in verdict.evidence


def test_a_wrong_charset_is_read_with_replacement() -> None:
    raw = b"From: a@example.net\nSubject: Re: x\nContent-Type: text/plain; charset=utf-8\n\nAbmelden bitte \xe9\xff.\n"
    verdict = classify(raw)
    assert verdict.kind == "unsubscribe_request"
    assert "text not valid utf-8: read as UTF-8" in verdict.evidence


def test_a_broken_encoded_word_in_a_header_does_not_crash() -> None:
    raw = b"From: =?utf-8?B?!!!?= <a@example.net>\nSubject: =?x-nope?Q?Automatic_reply?=\n\nHello\n"
    verdict = classify(raw)
    assert verdict.lead_email == "a@example.net"


def test_a_20_mb_message_is_cut_and_still_classified() -> None:
    msg = email.message_from_bytes(message("Remove me from your list."), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    msg.add_attachment(b"an enormous attachment\n" * 680_000, maintype="application", subtype="octet-stream")
    raw = msg.as_bytes()
    assert len(raw) > 20_000_000
    started = time.monotonic()
    verdict = classify(raw)
    assert time.monotonic() - started < 20
    assert verdict.kind == "unsubscribe_request"
    assert any("only the first" in reason for reason in verdict.evidence)


def test_a_feedback_report_without_its_original_still_names_a_complaint() -> None:
    raw = (
        b'From: fbl@isp.example\nContent-Type: multipart/report; report-type=feedback-report; boundary="F"\n\n'
        b"--F\nContent-Type: message/feedback-report\n\n"
        b"Feedback-Type: abuse\nOriginal-Rcpt-To: <x@isp.example>\n--F--\n"
    )
    verdict = classify(raw)
    assert (verdict.kind, verdict.lead_email, verdict.answers) == ("complaint", "x@isp.example", None)


def test_a_person_mentioning_a_holiday_and_asking_is_a_reply() -> None:
    verdict = classify(message("I'm on vacation next week. Could you call me on the 14th instead?"))
    assert verdict.kind == "human_reply" and verdict.return_date is None


def test_out_of_office_wording_alone_is_an_auto_reply_at_medium_confidence() -> None:
    verdict = classify(message("Ich bin bis zum 8.12.2026 nicht im Büro.", subject="AW: Hallo"))
    assert (verdict.kind, verdict.confidence) == ("auto_reply", "medium")
    assert verdict.return_date is not None and verdict.return_date.isoformat() == "2026-12-08"


def test_a_base64_delivery_status_part_is_read() -> None:
    import base64

    fields = b"Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; gone@example.net\n"
    fields += b"Action: failed\nStatus: 5.1.1\n"
    raw = (
        b'From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        b"--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(fields)
        + b"--B--\n"
    )
    verdict = classify(raw)
    assert (verdict.kind, verdict.status, verdict.lead_email) == ("hard_bounce", "5.1.1", "gone@example.net")


def raw_8bit(subject: str, body: str, *, charset: str = "utf-8", sender: str = "Tóth Anna <anna@ceg.example>") -> bytes:
    """A message whose headers carry raw 8-bit text, not RFC 2047 encoded words (as many clients send them)."""
    head = f"From: {sender}\r\nTo: maria@acme.example\r\nSubject: {subject}\r\n"
    head += "Date: Tue, 01 Dec 2026 09:15:00 +0000\r\n"
    return (head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode(charset) + (
        body.encode() + b"\r\n"
    )


@pytest.mark.parametrize(
    "subject",
    [
        "Automatikus válasz: Üdvözöljük",
        "Αυτόματη απάντηση: Καλώς ήρθατε",
        "Respuesta automática: Bienvenido",
        "Automatyczna odpowiedź: Witamy",
    ],
)
def test_an_auto_reply_known_only_by_its_raw_8bit_subject(subject: str) -> None:
    verdict = classify(raw_8bit(subject, "Thank you for your message."))
    assert verdict.kind == "auto_reply", verdict.evidence
    assert any(subject.split(":")[0] in reason for reason in verdict.evidence)


def test_a_raw_latin1_subject_is_read_as_latin1() -> None:
    verdict = classify(raw_8bit("Respuesta automática: Bienvenido", "Gracias.", charset="latin-1"))
    assert verdict.kind == "auto_reply" and any("automática" in reason for reason in verdict.evidence)


def test_raw_8bit_text_and_encoded_words_in_one_header_are_both_read() -> None:
    from leadloop.domain.inbound import message as mime

    raw = raw_8bit("Re: Üdvözöljük =?utf-8?q?a_k=C3=A9r=C3=A9s?=", "Köszönöm.", sender="Tóth <anna@ceg.example>")
    msg = mime.parse(raw, [])
    assert mime.header(msg, "Subject") == "Re: Üdvözöljük a kérés"
    assert mime.header(msg, "From") == "Tóth <anna@ceg.example>" and mime.address(msg, "From") == "anna@ceg.example"


def test_a_dsns_diagnostic_is_kept_with_the_recipients_mailbox_masked() -> None:
    verdict = classify(dsn("5.1.1", "550 5.1.1 <Jane@Example.net>: Recipient address rejected"))
    assert (verdict.kind, verdict.lead_email) == ("hard_bounce", "jane@example.net")  # read, for matching
    assert "diagnostic: smtp; 550 5.1.1 <…@Example.net>: Recipient address rejected" in verdict.evidence
    assert not any("jane@" in reason.lower() for reason in verdict.evidence)


def away(body: str, *, sent: str = "Tue, 01 Dec 2026 09:15:00 +0000", language: str | None = None) -> str | None:
    raw = message(body, Auto_Submitted="auto-replied")
    header = f"Date: {sent}" + (f"\nContent-Language: {language}" if language else "")
    raw = raw.replace(b"Date: Tue, 01 Dec 2026 09:15:00 +0000", header.encode())
    verdict = classify(raw)
    assert verdict.kind == "auto_reply"
    return verdict.return_date.isoformat() if verdict.return_date else None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Ich bin ab dem 14.12. wieder im Büro.", "2026-12-14"),
        ("Ich bin bis zum 10. nicht im Büro.", "2026-12-10"),
        ("Estaré de vuelta el 9/12.", "2026-12-09"),
        ("Estoy fuera hasta el día 10.", "2026-12-10"),
        ("Θα επιστρέψω στις 10/12.", "2026-12-10"),
        ("Jestem na urlopie do 10.12.", "2026-12-10"),
        ("Jestem na urlopie do 10-go.", "2026-12-10"),
        ("Szabadságon vagyok 12.10-ig.", "2026-12-10"),  # Hungarian writes the month first
        ("Szabadságon vagyok 01.05-ig.", "2027-01-05"),
        ("I'm out of the office, back on 12/08.", "2026-12-08"),
        ("I am on leave until the 10th.", "2026-12-10"),
        ("Ich bin ab 5.1. wieder da.", "2027-01-05"),  # past the year's end: the next 5 January
    ],
)
def test_a_return_date_without_a_year_is_the_next_one_after_the_message(body: str, expected: str) -> None:
    assert away(body) == expected


def test_a_day_of_the_month_already_past_is_next_months() -> None:
    assert away("Out of office until the 3rd.", sent="Tue, 15 Dec 2026 09:00:00 +0000") == "2027-01-03"
    assert away("Out of office until the 31st.", sent="Mon, 01 Feb 2027 09:00:00 +0000") == "2027-03-31"


def test_english_numbers_are_month_first_unless_the_message_says_otherwise() -> None:
    """02/01 sent on 1 December: 1 February in the US order, 2 January day first; both are near enough."""
    assert away("Out of office, back on 02/01.") == "2027-02-01"
    assert away("Out of office, back on 02/01.", language="en-US") == "2027-02-01"
    assert away("Out of office, back on 02/01.", language="en-GB") == "2027-01-02"
    # another date in the text written day first (28 is no month) shows the writer's order
    assert away("Out of office from 28/12, back on 02/01.") == "2027-01-02"
    # a number over 12 is the day whatever the order
    assert away("Out of office, back on 14/12.", language="en-US") == "2026-12-14"


def test_a_reading_too_far_ahead_gives_way_to_the_other_order_or_to_none() -> None:
    # 9/12 as 12 September 2027 is no holiday; 9 December is
    assert away("I'm out of the office, back on 9/12.", language="en-US") == "2026-12-09"
    # 30 November, a day before the message: next year's is where an absence began, not where it ends
    assert away("Ich bin bis 30.11. im Urlaub.") is None
    assert away("Ich bin vom 30.11. bis 14.12. im Urlaub.") == "2026-12-14"
    # the hour is not a date, in May either (when 30 August would be near enough)
    assert away("Out of office, back at 10.30.") is None
    assert away("Ich bin ab 9.10 Uhr wieder da.", sent="Mon, 03 May 2027 09:00:00 +0000") is None
    assert away("Ich bin ab 8.30 wieder im Büro.", sent="Mon, 03 May 2027 09:00:00 +0000") is None
