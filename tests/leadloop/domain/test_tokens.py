"""Signed tokens: what verifies, what is refused, and key rotation."""

import time

import pytest

from leadloop.domain.tokens import Signer, Token, TokenError

CLICK = Token(
    kind="click",
    lead_id=7,
    key="lead-7.c0.tips",
    issued_at=int(time.time()),
    url="https://site.example/pricing?a=1&b=ü",
)


def test_round_trip_keeps_every_field() -> None:
    signer = Signer(["k1"])
    assert signer.verify(signer.sign(CLICK)) == CLICK


def test_token_is_url_safe() -> None:
    text = Signer(["k1"]).sign(CLICK)
    assert all(c.isalnum() or c in "-_" for c in text)


@pytest.mark.parametrize("position", [0, 5, 20, -40, -1])
def test_any_changed_character_is_refused(position: int) -> None:
    signer = Signer(["k1"])
    text = signer.sign(CLICK)
    changed = text[position].swapcase() if text[position].isalpha() else ("A" if text[position] != "A" else "B")
    tampered = text[:position] + changed + (text[position + 1 :] if position != -1 else "")
    with pytest.raises(TokenError):
        signer.verify(tampered)


def test_truncated_token_is_refused() -> None:
    signer = Signer(["k1"])
    text = signer.sign(CLICK)
    for cut in (1, 10, len(text) // 2, len(text) - 1):
        with pytest.raises(TokenError):
            signer.verify(text[:cut])


def test_swapped_url_is_refused() -> None:
    """A click token re-assembled with another URL fails: the URL is inside the signature."""
    import base64
    import json

    signer = Signer(["k1"])
    raw = base64.urlsafe_b64decode(signer.sign(CLICK) + "==")
    payload, tag = raw[:-32], raw[-32:]
    fields = json.loads(payload)
    fields[4] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(json.dumps(fields, separators=(",", ":")).encode() + tag).rstrip(b"=").decode()
    with pytest.raises(TokenError, match="signature"):
        signer.verify(forged)


def test_foreign_key_is_refused_and_rotation_keeps_old_links() -> None:
    old = Signer(["old"])
    text = old.sign(CLICK)
    with pytest.raises(TokenError):
        Signer(["someone-else"]).verify(text)
    rotated = Signer(["new", "old"])
    assert rotated.verify(text) == CLICK  # links in mail already sent keep working
    assert Signer(["new"]).verify(rotated.sign(CLICK)) == CLICK  # the first key signs


def test_expired_and_wrong_kind_are_refused() -> None:
    signer = Signer(["k1"])
    old = Token(kind="open", lead_id=1, key="k", issued_at=int(time.time()) - 3600)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(signer.sign(old), max_age=60)
    assert signer.verify(signer.sign(old), max_age=7200).lead_id == 1
    with pytest.raises(TokenError, match="not a click"):
        signer.verify(signer.sign(old), kind="click")


@pytest.mark.parametrize("junk", ["", "!!!", "a" * 10, "é", "x.gif"])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(TokenError):
        Signer(["k"]).verify(junk)


def test_no_key_no_signer() -> None:
    with pytest.raises(ValueError):
        Signer(["", ""])
