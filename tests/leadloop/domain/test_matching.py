"""Matching an inbound message to the send it answers: each rule, and every way of refusing to guess."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadloop.domain.mail import email_hash, message_id
from leadloop.domain.matching import (
    InboundHeaders,
    Match,
    SentEmail,
    match_inbound,
    message_ids,
    reply_topic,
    sender_hash,
)
from leadloop.domain.tokens import Signer
from leadloop.domain.verp import bounce_address

SIGNER = Signer(["k1"])
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ANNA = frozenset({email_hash("anna@example.com")})


def sent(
    lead_id: int, step: str, *, days_ago: float = 1, subject: str = "Welcome, Anna", to: frozenset[str] = ANNA
) -> SentEmail:
    key = f"lead-{lead_id}.c0.{step}"
    return SentEmail(
        outbox_key=key,
        lead_id=lead_id,
        message_id=message_id(key, "hello@leadloop.example"),
        sent_at=NOW - timedelta(days=days_ago),
        subject=subject,
        to_hashes=to,
    )


WELCOME, TIPS = sent(7, "welcome", days_ago=5), sent(7, "tips", days_ago=2, subject="Three tips for Acme")
SENDS = [WELCOME, TIPS]


def headers(**fields: Any) -> InboundHeaders:
    return InboundHeaders(received_at=NOW, **fields)


def match(h: InboundHeaders, sends: list[SentEmail] = SENDS, **kwargs: Any) -> Match:
    return match_inbound(h, sends, SIGNER, **kwargs)


# ---------------------------------------------------------------- VERP


def test_a_bounce_to_the_verp_address_names_its_send_whatever_else_it_says() -> None:
    verp = bounce_address(SIGNER, TIPS.outbox_key, "bounces.example.com")
    found = match(
        headers(recipients=(f"<{verp}>",), sender="MAILER-DAEMON@mx.example", subject="Undelivered Mail"),
        bounce_domain="bounces.example.com",
    )
    assert (found.rule, found.outbox_key, found.lead_id) == ("verp", TIPS.outbox_key, 7)


def test_a_verp_address_names_its_lead_even_when_the_send_is_not_among_the_recent_ones() -> None:
    verp = bounce_address(SIGNER, "lead-99.c3.nudge", "bounces.example.com")
    found = match(headers(recipients=(verp,)), sends=[])
    assert (found.rule, found.outbox_key, found.lead_id) == ("verp", "lead-99.c3.nudge", 99)


def test_a_changed_verp_token_names_nothing() -> None:
    verp = bounce_address(SIGNER, TIPS.outbox_key, "bounces.example.com")
    local, _, domain = verp.partition("@")
    changed = f"{local[:-3]}{'a' if local[-3] != 'a' else 'b'}{local[-2:]}@{domain}"
    found = match(headers(recipients=(changed,), sender="MAILER-DAEMON@mx.example"))
    assert not found.matched and found.rule is None


def test_a_verp_address_of_another_domain_does_not_count() -> None:
    verp = bounce_address(SIGNER, TIPS.outbox_key, "elsewhere.example")
    found = match(headers(recipients=(verp,)), bounce_domain="bounces.example.com")
    assert not found.matched


def test_two_different_verp_recipients_are_ambiguous() -> None:
    one, two = (bounce_address(SIGNER, s.outbox_key, "b.example") for s in SENDS)
    found = match(headers(recipients=(one, two)))
    assert not found.matched and "ambiguous" in found.reason


# ---------------------------------------------------------------- the thread


def test_in_reply_to_names_the_send() -> None:
    found = match(headers(in_reply_to=WELCOME.message_id, sender="someone.else@example.org", subject="hi"))
    assert (found.rule, found.outbox_key, found.lead_id) == ("in_reply_to", WELCOME.outbox_key, 7)


def test_in_reply_to_comes_before_references() -> None:
    found = match(headers(in_reply_to=TIPS.message_id, references=f"{WELCOME.message_id}"))
    assert (found.rule, found.outbox_key) == ("in_reply_to", TIPS.outbox_key)


def test_references_name_the_latest_of_the_leads_sends_in_the_thread() -> None:
    refs = f"<unrelated@mail.example> {WELCOME.message_id}\r\n {TIPS.message_id} <their-own@mail.example>"
    found = match(headers(in_reply_to="<their-own@mail.example>", references=refs))
    assert (found.rule, found.outbox_key) == ("references", TIPS.outbox_key)


def test_a_thread_that_names_two_leads_sends_is_ambiguous() -> None:
    other = sent(8, "welcome", to=frozenset({email_hash("bob@example.com")}))
    found = match(headers(references=f"{WELCOME.message_id} {other.message_id}"), sends=[*SENDS, other])
    assert not found.matched and "ambiguous" in found.reason and "7, 8" in found.reason


def test_a_message_id_leadloop_never_sent_matches_nothing() -> None:
    found = match(headers(in_reply_to="<lead-7.c0.forged@leadloop.example>", sender="x@example.org"))
    assert not found.matched


# ---------------------------------------------------------------- the sender and a reply's subject


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Three tips for Acme",
        "RE: Three tips for Acme",
        "AW: Three tips for Acme",
        "Odp: Three tips for Acme",
        "Vá: Three tips for Acme",
        "ΑΠ: Three tips for Acme",
        "RV: Three tips for Acme",
        "Re: Re[2]: three  tips for ACME",
        "[EXT] Re: Three tips for Acme",
    ],
)
def test_the_sender_with_a_reply_subject_names_the_send(subject: str) -> None:
    found = match(headers(sender="Anna <Anna@Example.com>", subject=subject))
    assert (found.rule, found.outbox_key, found.lead_id) == ("sender_subject", TIPS.outbox_key, 7)


def test_the_latest_send_of_the_same_subject_is_named() -> None:
    again = sent(7, "tips-again", days_ago=1, subject="Three tips for Acme")
    found = match(headers(sender="anna@example.com", subject="Re: Three tips for Acme"), sends=[*SENDS, again])
    assert found.outbox_key == again.outbox_key


def test_the_sender_without_a_reply_subject_is_not_matched() -> None:
    found = match(headers(sender="anna@example.com", subject="Three tips for Acme"))
    assert not found.matched and "not a reply" in found.reason


def test_a_reply_subject_to_an_email_older_than_the_window_is_not_matched() -> None:
    old = sent(7, "welcome", days_ago=40)
    found = match(headers(sender="anna@example.com", subject="Re: Welcome, Anna"), sends=[old], window_days=30)
    assert not found.matched and "30 days" in found.reason
    assert match(headers(sender="anna@example.com", subject="Re: Welcome, Anna"), sends=[old], window_days=60).matched


def test_a_reply_subject_from_someone_who_is_no_lead_is_not_matched() -> None:
    found = match(headers(sender="stranger@example.org", subject="Re: Three tips for Acme"))
    assert not found.matched and "no lead" in found.reason


def test_an_address_that_is_two_leads_is_unmatched() -> None:
    """Anna's address is lead 7's now and was lead 8's before a change: whose reply it is, nobody can say."""
    other = sent(8, "tips", subject="Three tips for Acme", to=ANNA)
    found = match(headers(sender="anna@example.com", subject="Re: Three tips for Acme"), sends=[*SENDS, other])
    assert not found.matched and found.lead_id is None
    assert found.reason == "ambiguous: the sender's address is that of leads 7, 8"


@pytest.mark.parametrize("sender", [None, "", "not an address", "a@example.com, b@example.com"])
def test_a_from_header_without_one_address_is_not_matched(sender: str | None) -> None:
    found = match(headers(sender=sender, subject="Re: Three tips for Acme"))
    assert not found.matched and "From" in found.reason


# ---------------------------------------------------------------- the helpers


def test_helpers() -> None:
    assert message_ids("<a@b> junk <c@d>") == ["<a@b>", "<c@d>"]
    assert message_ids(None) == []
    assert reply_topic("Welcome") is None and reply_topic("Re:Welcome") == "welcome"
    assert reply_topic("Regarding: x") is None  # a word, not a prefix
    assert sender_hash("Anna <ANNA@example.com>") == email_hash("anna@example.com")
