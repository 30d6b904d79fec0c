"""VERP envelope senders: a bounce address names its send, and a changed or foreign token names nothing."""

import pytest

from leadloop.domain.tokens import Signer, TokenError
from leadloop.domain.verp import bounce_address, bounce_key

SIGNER = Signer(["k1"])
KEY = "lead-12.c0.welcome"


def test_the_address_names_its_send() -> None:
    address = bounce_address(SIGNER, KEY, "Bounces.Example.com")
    assert address.startswith("bounces+") and address.endswith("@bounces.example.com")
    assert len(address.partition("@")[0]) <= 64  # RFC 5321's local part limit
    usual = bounce_address(SIGNER, "lead-1234567.c1.nurture-3", "bounces.example.com")
    assert len(usual.partition("@")[0]) <= 64
    assert bounce_key(SIGNER, address, "bounces.example.com") == KEY
    assert bounce_key(SIGNER, f"<{address}>") == KEY  # as a Delivered-To or Return-Path header writes it


def test_a_relay_that_changes_the_letter_case_does_not_lose_the_send() -> None:
    address = bounce_address(SIGNER, KEY, "bounces.example.com")
    assert bounce_key(SIGNER, address.upper(), "bounces.example.com") == KEY


def test_the_token_carries_the_lead() -> None:
    token = SIGNER.verify_bounce(SIGNER.sign_bounce("lead-7.c2.a1.notify"))
    assert (token.kind, token.lead_id, token.key) == ("bounce", 7, "lead-7.c2.a1.notify")


@pytest.mark.parametrize("position", [0, 3, 10, 20, -10, -1])
def test_a_changed_character_is_refused(position: int) -> None:
    token = list(SIGNER.sign_bounce(KEY))
    original = "".join(token)
    token[position] = "a" if token[position] != "a" else "b"
    changed = "".join(token)
    assert changed != original
    assert bounce_key(SIGNER, f"bounces+{changed}@bounces.example.com") is None


def test_a_token_for_another_send_cannot_be_made_without_the_key() -> None:
    forged = Signer(["someone else's key"]).sign_bounce("lead-13.c0.welcome")
    assert bounce_key(SIGNER, f"bounces+{forged}@bounces.example.com") is None
    with pytest.raises(TokenError, match="bad signature"):
        SIGNER.verify_bounce(forged)


def test_a_rotated_key_still_reads_earlier_bounces() -> None:
    old = bounce_address(Signer(["old"]), KEY, "bounces.example.com")
    assert bounce_key(Signer(["new", "old"]), old) == KEY


@pytest.mark.parametrize(
    "address",
    [
        "",
        "hello@leadloop.example",
        "bounces@bounces.example.com",
        "bounces+@bounces.example.com",
        "bounces+not-base32!@bounces.example.com",
        "other+{token}@bounces.example.com",
        "bounces+{token}@elsewhere.example",
        "bounces+{token}",
    ],
)
def test_what_is_not_a_verp_address_names_nothing(address: str) -> None:
    address = address.format(token=SIGNER.sign_bounce(KEY))
    assert bounce_key(SIGNER, address, "bounces.example.com") is None


def test_other_kinds_of_token_are_not_bounce_tokens() -> None:
    from leadloop.domain.tokens import Token

    link = SIGNER.sign(Token(kind="bounce", lead_id=12, key=KEY, issued_at=0))
    with pytest.raises(TokenError):
        SIGNER.verify_bounce(link.lower())
    with pytest.raises(TokenError):
        SIGNER.verify(SIGNER.sign_bounce(KEY))


def test_only_outbox_keys_are_signed() -> None:
    with pytest.raises(ValueError, match="not an outbox key"):
        SIGNER.sign_bounce("anything")


@pytest.mark.parametrize("given", ["bounces.example.com", " Bounces.Example.COM. "])
def test_the_bounce_domain_setting_is_normalised(given: str) -> None:
    from leadloop.infra.settings import Settings

    assert Settings(bounce_domain=given).bounce_domain == "bounces.example.com"
    assert Settings().bounce_domain == "" and Settings().inbound_retention_days == 30


@pytest.mark.parametrize("given", ["bounces@example.com", "example", "a b.example", "-x.example"])
def test_a_bounce_domain_that_is_no_domain_is_refused(given: str) -> None:
    from pydantic import ValidationError

    from leadloop.infra.settings import Settings

    with pytest.raises(ValidationError, match="bounce_domain"):
        Settings(bounce_domain=given)
