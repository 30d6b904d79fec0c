"""Mail providers' webhooks (SES through SNS, SendGrid, Mailgun, Postmark): verified as each provider documents
before anything is read as an event, then stored through the one inbound pipeline.

What goes wrong is said in a few kinds (`Problem`), which the HTTP service turns into statuses:
`malformed` (the request cannot be read), `refused` (its signature or origin does not hold), `unauthenticated`
(Postmark's Basic credentials missing or wrong), `unconfigured` (leadloop has no secret for this provider, so it
cannot tell a forgery from the real thing) and `unavailable` (the SNS certificate or subscription link could not
be fetched just now; SNS tries again).
"""

import asyncio
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.tokens import Signer
from leadloop.domain.webhooks import ProviderEvent, ProviderName, WebhookRefused, mailgun, postmark, sendgrid, ses
from leadloop.domain.webhooks.events import parse_json
from leadloop.infra.db import WebhookToken, insert_new
from leadloop.infra.settings import Settings
from leadloop.services.inbound import Stored
from leadloop.services.inbound_delivery import ingest_event

log = logging.getLogger("leadloop.webhooks")
_T = TypeVar("_T")

Problem = Literal["malformed", "refused", "unauthenticated", "unconfigured", "unavailable"]
#: GET an https URL and hand back its body (the SNS certificate, the subscription link); tests inject their own.
Fetch = Callable[[str], Awaitable[bytes]]
#: An SNS signing certificate or confirmation answer is a few kilobytes; anything far larger is not SNS's.
FETCH_MAX_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10.0
#: The path of SNS's signing certificates (the host is checked by the domain's reader).
_SNS_CERT_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]{1,128}\.pem")
#: Certificates kept in memory; SNS signs with a handful per region, each for years.
CERTIFICATES_KEPT = 32
#: How long a Mailgun token is remembered once taken: its signature verifies up to MAX_AGE either side of its
#: timestamp, so a token taken now stops verifying within 2 x MAX_AGE; one MAX_AGE more for replicas' clocks.
TOKENS_KEPT = 3 * mailgun.MAX_AGE
TOKEN_USED = "mailgun: this signature's token was used before (a replay?)"


class WebhookError(Exception):
    """A webhook request leadloop did not take, with why; nothing of it was stored."""

    def __init__(self, problem: Problem, reason: str) -> None:
        super().__init__(reason)
        self.problem = problem
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """A request whose signature held: its events, what to keep of each, and what was done besides."""

    events: list[ProviderEvent] = field(default_factory=list)
    raws: dict[str, bytes] = field(default_factory=dict)  # by event id: the one event's JSON of a batch
    note: str | None = None
    token: str | None = None  # Mailgun's signature token: taken for good when the request is stored


async def https_get(url: str) -> bytes:
    """The body at an https URL: the server's certificate verified, no redirect followed, at most
    FETCH_MAX_BYTES; httpx.HTTPError or ValueError when it cannot be had."""
    async with (
        httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > FETCH_MAX_BYTES:
                raise ValueError(f"{url} answered more than {FETCH_MAX_BYTES} bytes")
        return bytes(body)


class Certificates:
    """SNS signing certificates by URL, fetched once and kept in memory (the newest CERTIFICATES_KEPT)."""

    def __init__(self, fetch: Fetch, kept: int = CERTIFICATES_KEPT) -> None:
        self._fetch = fetch
        self._kept = kept
        self._pem: OrderedDict[str, bytes] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, url: str) -> bytes:
        """The certificate at `url` (already checked to be https on an SNS host); a failed fetch is not kept."""
        if url in self._pem:
            self._pem.move_to_end(url)
            return self._pem[url]
        async with self._lock:  # a burst of notifications fetches a new certificate once
            if url not in self._pem:
                self._pem[url] = await self._fetch(url)
                while len(self._pem) > self._kept:
                    self._pem.popitem(last=False)
            return self._pem[url]


class Webhooks:
    """Each provider's verification with the secrets in settings, and the SNS certificates it has fetched."""

    def __init__(
        self, settings: Settings, fetch: Fetch | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = settings
        self._fetch = fetch or https_get
        self.certificates = Certificates(self._fetch)
        self._clock = clock or (lambda: datetime.now(UTC))
        # a fast path in this process; the database decides for every replica and across restarts (store_events)
        self._mailgun_tokens: dict[str, datetime] = {}

    async def verify(self, provider: ProviderName, body: bytes, headers: Mapping[str, str]) -> Verified:
        """The events of a request whose signature holds; WebhookError otherwise (nothing is to be stored)."""
        if provider == "ses":
            return await self._ses(body)
        if provider == "sendgrid":
            return self._sendgrid(body, headers)
        if provider == "mailgun":
            return self._mailgun(body)
        return self._postmark(body, headers)

    async def _ses(self, body: bytes) -> Verified:
        topics = self.settings.ses_topic_arns
        if not topics:
            raise WebhookError("unconfigured", "ses: LEADLOOP_SES_TOPIC_ARNS is not set, so no SNS topic is taken")
        _json(body, "ses")
        message = _refused_unless(lambda: ses.read_message(body, topics))
        if not _SNS_CERT_PATH.fullmatch(urlsplit(message.signing_cert_url).path):
            # as AWS's own validators: only SNS's certificate files are fetched, not any page on its hosts
            raise WebhookError("refused", f"ses: SigningCertURL {message.signing_cert_url!r} is no SNS certificate")
        try:
            certificate = await self.certificates.get(message.signing_cert_url)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            raise WebhookError("unavailable", f"ses: the signing certificate could not be fetched ({exc})") from None
        _refused_unless(lambda: ses.verify_signature(message, certificate, self._clock()))
        if message.type == "SubscriptionConfirmation":
            return Verified(note=await self._confirm(message))
        if message.type == "UnsubscribeConfirmation":
            log.warning("ses: SNS says topic %s no longer sends here (UnsubscribeConfirmation)", message.topic_arn)
            return Verified(note=f"unsubscribed from {message.topic_arn}: acknowledged, nothing stored")
        return Verified(events=_readable(lambda: ses.events(message)))

    async def _confirm(self, message: ses.SnsMessage) -> str:
        """Visit the SubscribeURL of a verified confirmation (an SNS host, checked again), so SNS starts sending."""
        url = _refused_unless(lambda: ses.subscribe_url(message))
        try:
            await self._fetch(url)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            raise WebhookError("unavailable", f"ses: the subscription could not be confirmed ({exc})") from None
        log.info("ses: subscription to %s confirmed", message.topic_arn)
        return f"subscription to {message.topic_arn} confirmed"

    def _sendgrid(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        key = self.settings.sendgrid_webhook_public_key
        if not key:
            raise WebhookError("unconfigured", "sendgrid: LEADLOOP_SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        for name in (sendgrid.SIGNATURE_HEADER, sendgrid.TIMESTAMP_HEADER):
            if not _has_header(headers, name):
                raise WebhookError("malformed", f"sendgrid: missing {name} header")
        batch = _json(body, "sendgrid")
        _refused_unless(lambda: sendgrid.verify(body, headers, key, self._clock()))
        events = _readable(lambda: sendgrid.events(body))
        # each row keeps its own event, not the whole batch with other people's addresses
        items = {str(item.get("sg_event_id")): item for item in batch if isinstance(item, dict)}
        raws = {e.event_id: json.dumps(items[e.event_id]).encode() for e in events}  # ASCII: lone surrogates escaped
        return Verified(events=events, raws=raws)

    def _mailgun(self, body: bytes) -> Verified:
        key = self.settings.mailgun_signing_key
        if key is None or not key.get_secret_value():
            raise WebhookError("unconfigured", "mailgun: LEADLOOP_MAILGUN_SIGNING_KEY is not set")
        doc = _json(body, "mailgun")
        if not isinstance(doc, dict) or not isinstance(doc.get("signature"), dict):
            raise WebhookError("malformed", "mailgun: body is not an object with a 'signature' object")
        now = self._clock()
        _refused_unless(lambda: mailgun.verify(body, key.get_secret_value(), now))
        token = str(doc["signature"].get("token"))
        self._first_use(token, now)
        return Verified(events=_readable(lambda: mailgun.events(body)), token=token)

    def _first_use(self, token: str, now: datetime) -> None:
        """Refuse a Mailgun token this process saw before: its signature covers timestamp and token, not the
        body, so a copy of a signed request with another body would verify again within MAX_AGE. Mailgun signs
        every delivery (its retries too) afresh, so a token comes once. Tokens age out after TOKENS_KEPT. Only a
        fast path: `store_events` takes the token in the database, which every replica shares."""
        horizon = now - TOKENS_KEPT
        for seen in [t for t, at in self._mailgun_tokens.items() if at < horizon]:
            del self._mailgun_tokens[seen]
        if token in self._mailgun_tokens:
            raise WebhookError("refused", TOKEN_USED)
        self._mailgun_tokens[token] = now

    def _postmark(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        user, password = self.settings.postmark_webhook_user, self.settings.postmark_webhook_password
        if not user or password is None or not password.get_secret_value():
            raise WebhookError(
                "unconfigured", "postmark: LEADLOOP_POSTMARK_WEBHOOK_USER and _PASSWORD are not both set"
            )
        try:
            postmark.verify(headers, user, password.get_secret_value())
        except WebhookRefused as exc:
            raise WebhookError("unauthenticated", exc.reason) from None
        _json(body, "postmark")
        return Verified(events=_readable(lambda: postmark.events(body)))


def _has_header(headers: Mapping[str, str], name: str) -> bool:
    return any(key.lower() == name.lower() and value for key, value in headers.items())


def _json(body: bytes, provider: str) -> Any:
    try:
        return parse_json(body, provider)
    except WebhookRefused as exc:
        raise WebhookError("malformed", exc.reason) from None


def _refused_unless(check: Callable[[], _T]) -> _T:
    """The check's result; its WebhookRefused as a refusal (the request is not the provider's, or not for us)."""
    try:
        return check()
    except WebhookRefused as exc:
        raise WebhookError("refused", exc.reason) from None


def _readable(read: Callable[[], list[ProviderEvent]]) -> list[ProviderEvent]:
    """The events of a verified request; one the provider signed but leadloop cannot read is malformed."""
    try:
        return read()
    except WebhookRefused as exc:
        raise WebhookError("malformed", exc.reason) from None


async def store_events(
    sessions: async_sessionmaker[AsyncSession], verified: Verified, body: bytes, signer: Signer
) -> list[Stored]:
    """Store a verified request's events in one transaction (all or none: the provider retries a failure),
    each suppressing at once what a mailed DSN would. A replayed event finds its row and is not stored again.
    A Mailgun request's token is taken in the same transaction, events or not: one whose token was taken before
    (by this replica or another, before a restart or after) is refused with WebhookError and stores nothing."""
    if not verified.events and verified.token is None:
        return []
    received_at = datetime.now(UTC)
    async with sessions() as session:
        if verified.token is not None:
            await take_token(session, "mailgun", verified.token, now=received_at)
        stored = [
            await ingest_event(
                session, event, raw=verified.raws.get(event.event_id, body), signer=signer, received_at=received_at
            )
            for event in verified.events
        ]
        await session.commit()
    return stored


async def take_token(session: AsyncSession, provider: str, token: str, *, now: datetime) -> None:
    """Record a provider's signature token as used (the caller commits); WebhookError `refused` when it was used
    before. The database's primary key decides, so two replicas taking one token at once cannot both succeed.
    Tokens older than TOKENS_KEPT are deleted first: their signatures no longer verify anyway."""
    await session.execute(delete(WebhookToken).where(WebhookToken.seen_at < now - TOKENS_KEPT))
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    if not await insert_new(session, WebhookToken, provider=provider, token_hash=digest, seen_at=now):
        raise WebhookError("refused", TOKEN_USED)
