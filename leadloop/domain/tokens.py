"""Signed, URL-safe tokens for the links in emails: HMAC-SHA256 over a compact payload, key rotation."""

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Literal

TokenKind = Literal["open", "click", "unsubscribe", "rep", "visitor", "bounce"]
_KIND_CODES: dict[TokenKind, str] = {
    "open": "o",
    "click": "c",
    "unsubscribe": "u",
    "rep": "r",
    "visitor": "v",
    "bounce": "b",
}
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_SIG_BYTES = 32  # the whole SHA-256 tag: tokens are long-lived and must not be guessable
# a bounce token lives in an address's local part, which RFC 5321 caps at 64 octets and some relays lower-case:
# base32 (case-blind), the outbox key without its "lead-" as payload, and a 96-bit tag (a forger would have to
# mail us some 2^95 guesses); the tag covers the kind and the whole key, so no other token's tag fits
_BOUNCE_SIG_BYTES = 12
_LEAD_KEY = re.compile(r"lead-(\d{1,18})\.")


class TokenError(Exception):
    """A token that is malformed, tampered with, signed by an unknown key or expired."""


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    lead_id: int
    key: str  # outbox key for email links; assignment key for rep links; "" for visitor ids
    issued_at: int  # unix seconds
    url: str = ""  # the landing page of a click
    extra: str = ""  # a click's flag ("h" marks the honeypot) or a rep link's action


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise TokenError("not a token")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise TokenError("not a token") from exc
    if _b64(raw) != text:  # the last character's unused bits set: one token, one spelling
        raise TokenError("not a token")
    return raw


class Signer:
    """Signs with the first key and accepts any of them, so a key can be rotated without breaking links."""

    def __init__(self, keys: list[str]) -> None:
        usable = [k for k in keys if k]
        if not usable:
            raise ValueError("at least one secret key is needed to sign tokens")
        self._keys = [k.encode("utf-8") for k in usable]

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()

    def sign(self, token: Token) -> str:
        fields = [_KIND_CODES[token.kind], token.lead_id, token.key, token.issued_at, token.url, token.extra]
        while fields and fields[-1] == "":  # compact: trailing empty fields are left out
            fields.pop()
        payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return _b64(payload + self._mac(self._keys[0], payload))

    def verify(self, text: str, *, kind: TokenKind | None = None, max_age: float | None = None) -> Token:
        """The token inside `text`, or TokenError; `max_age` in seconds, None for no expiry."""
        raw = _unb64(text)
        if len(raw) <= _SIG_BYTES:
            raise TokenError("token too short")
        payload, tag = raw[:-_SIG_BYTES], raw[-_SIG_BYTES:]
        if not any(hmac.compare_digest(tag, self._mac(key, payload)) for key in self._keys):
            raise TokenError("bad signature")
        try:
            fields = json.loads(payload.decode("utf-8"))
            code, lead_id, key, issued_at, *rest = fields
            token = Token(
                kind=_CODE_KINDS[code],
                lead_id=int(lead_id),
                key=str(key),
                issued_at=int(issued_at),
                url=str(rest[0]) if rest else "",
                extra=str(rest[1]) if len(rest) > 1 else "",
            )
        except (ValueError, TypeError, KeyError) as exc:  # signed by us, so only a format change lands here
            raise TokenError("unreadable token") from exc
        if kind is not None and token.kind != kind:
            raise TokenError(f"a {token.kind} token, not a {kind} token")
        if max_age is not None and time.time() - token.issued_at > max_age:
            raise TokenError("token expired")
        return token

    def sign_bounce(self, key: str) -> str:
        """The token of a VERP envelope sender: the outbox key `lead-<id>....`, signed; lower-case base32."""
        if not _LEAD_KEY.match(key):
            raise ValueError(f"{key!r} is not an outbox key (lead-<id>....)")
        carried = key.removeprefix("lead-").encode("utf-8")
        raw = carried + self._bounce_tag(self._keys[0], key)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def _bounce_tag(self, secret: bytes, key: str) -> bytes:
        return self._mac(secret, (_KIND_CODES["bounce"] + key).encode("utf-8"))[:_BOUNCE_SIG_BYTES]

    def verify_bounce(self, text: str) -> Token:
        """The bounce token inside `text` (any letter case), or TokenError. It never expires: a bounce may come
        days after its send. issued_at is 0: the token does not carry it."""
        if not text or not text.isascii() or not text.isalnum():
            raise TokenError("not a token")
        try:
            raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
        except ValueError as exc:
            raise TokenError("not a token") from exc
        if len(raw) <= _BOUNCE_SIG_BYTES:
            raise TokenError("token too short")
        carried, tag = raw[:-_BOUNCE_SIG_BYTES], raw[-_BOUNCE_SIG_BYTES:]
        try:
            key = "lead-" + carried.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenError("not a token") from exc
        if not any(hmac.compare_digest(tag, self._bounce_tag(secret, key)) for secret in self._keys):
            raise TokenError("bad signature")
        match = _LEAD_KEY.match(key)
        if match is None:  # signed by us, so only a format change lands here
            raise TokenError("not a bounce token")
        return Token(kind="bounce", lead_id=int(match.group(1)), key=key, issued_at=0)
