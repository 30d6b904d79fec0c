"""Sending one CRM webhook delivery over HTTP, signed per Standard Webhooks, each attempt recorded in the database."""

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from leadloop.domain.crm_webhooks import WebhookInputError, answer_excerpt
from leadloop.domain.times import as_utc
from leadloop.infra.db import WebhookAttempt, WebhookDelivery, WebhookEndpoint

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
Outcome = Literal["delivered", "failed", "gone", "dead", "missing"]


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: delivered (2xx), failed (any other answer, or none), gone (410: the endpoint
    asked to be disabled), dead (not sent: endpoint disabled or body erased), missing (no such delivery)."""

    outcome: Outcome
    status_code: int | None = None
    answer: str | None = None
    error: str | None = None

    def describe(self) -> str:
        """One line for an error or an operator: the status and the first words of the answer, or the error."""
        if self.status_code is not None:
            return f"answered {self.status_code}" + (f": {self.answer}" if self.answer else "")
        return self.error or self.outcome


class PrivateDestination(WebhookInputError):
    """An endpoint URL whose host is, or resolves to, an address that is not global; nothing was stored or sent."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to now (the system's resolver, as the HTTP client would use)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in found})


def _is_global(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return ip.is_global


async def check_destination(url: str, *, allow_private: bool, unresolved_ok: bool) -> None:
    """Refuse a URL whose host is, or resolves to, any address that is not global (loopback, private, link-local
    such as the cloud metadata service at 169.254.169.254): answers are stored and shown, so such an endpoint would
    read the inside of the network. `unresolved_ok`: a name that does not resolve passes (it is checked again at
    every send)."""
    if allow_private:
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as exc:
            if unresolved_ok:
                return
            raise PrivateDestination(f"host {host} does not resolve ({exc}); nothing was sent") from None
    bad = [address for address in addresses if not _is_global(address)]
    if bad:
        named = host if addresses == [host] else f"{host} ({', '.join(bad)})"
        raise PrivateDestination(
            f"URL {url!r} reaches {named}, not a public address: refused (LEADLOOP_WEBHOOK_ALLOW_PRIVATE=true "
            "lets an endpoint on a private network receive webhooks)"
        )


def signed_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks' three headers (the signature covers id, timestamp and body) and the content type."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": "application/json",
        "user-agent": "leadloop-webhooks/1",
    }


async def attempt_delivery(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    *,
    answer_within: float,
    replay: bool = False,
    allow_private: bool = False,
) -> Attempt:
    """Send the delivery once and record the attempt. A delivery already delivered or dead is not sent again
    unless `replay` (an operator's `webhooks replay`); a disabled endpoint's pending delivery goes dead unsent.
    The host is resolved again before each send: one that now reaches a non-global address (DNS rebinding) is a
    failed attempt, unless `allow_private`."""
    async with sessionmaker() as session:
        found = (
            await session.execute(
                select(WebhookDelivery, WebhookEndpoint)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id == delivery_id)
            )
        ).one_or_none()
        if found is None:
            return Attempt("missing")
        delivery, endpoint = found[0], found[1]
        if not replay and delivery.status == DELIVERED:
            return Attempt("delivered", delivery.last_status)
        if not replay and delivery.status == DEAD:
            return Attempt("dead", delivery.last_status, error=delivery.last_error)
        why_not = None
        if delivery.body is None:
            why_not = "not sent: its body was erased (`leadloop forget`)"
        elif not endpoint.enabled and not replay:
            why_not = f"not sent: endpoint '{endpoint.name}' is disabled ({endpoint.disabled_reason or 'by hand'})"
        if why_not is not None:
            if delivery.status == PENDING:
                delivery.status, delivery.last_error = DEAD, why_not
                await session.commit()
            return Attempt("dead", error=why_not)
        url, secret, message_id, body = endpoint.url, endpoint.secret, delivery.message_id, delivery.body
    assert body is not None
    sent_at = datetime.now(UTC)  # the signature's timestamp: receivers refuse one more than minutes off
    started = time.monotonic()
    code: int | None = None
    answer: str | None = None
    error: str | None = None
    try:
        await check_destination(url, allow_private=allow_private, unresolved_ok=False)
        async with httpx.AsyncClient(timeout=answer_within, follow_redirects=False) as http:
            response = await http.post(
                url, content=body.encode(), headers=signed_headers(secret, message_id, body, sent_at)
            )
        code, answer = response.status_code, answer_excerpt(response.text)
    except PrivateDestination as exc:
        error = answer_excerpt(str(exc))
    except httpx.HTTPError as exc:
        error = answer_excerpt(f"{type(exc).__name__}: {exc}") or type(exc).__name__
    outcome: Outcome = "delivered" if code is not None and 200 <= code < 300 else "gone" if code == 410 else "failed"
    attempt = Attempt(outcome, code, answer, error)
    return await _record(sessionmaker, delivery_id, attempt, sent_at, int((time.monotonic() - started) * 1000))


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int, attempt: Attempt, at: datetime, ms: int
) -> Attempt:
    async with sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None:  # the endpoint was removed while the request was out
            return Attempt("missing", attempt.status_code, attempt.answer, attempt.error)
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        assert endpoint is not None  # the delivery's foreign key cascades
        delivery.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                attempt=delivery.attempts,
                at=at,
                status_code=attempt.status_code,
                answer=attempt.answer,
                error=attempt.error,
                duration_ms=ms,
            )
        )
        delivery.last_status, delivery.last_answer = attempt.status_code, attempt.answer
        delivery.last_error, delivery.last_attempt_at = attempt.error, at
        if attempt.outcome == "delivered":
            delivery.status, delivery.delivered_at = DELIVERED, at
            endpoint.failing_since = None
        else:
            if endpoint.failing_since is None:
                endpoint.failing_since = at
            if attempt.outcome == "gone":  # Standard Webhooks: 410 Gone asks the sender to stop
                if delivery.status == PENDING:
                    delivery.status = DEAD
                disable(endpoint, at, "the endpoint answered 410 Gone")
        await session.commit()
    return attempt


def disable(endpoint: WebhookEndpoint, at: datetime, reason: str) -> None:
    if endpoint.enabled:
        endpoint.enabled, endpoint.disabled_at, endpoint.disabled_reason = False, at, reason


async def dead_letter(sessionmaker: async_sessionmaker[AsyncSession], delivery_id: int, error: str) -> bool:
    """A delivery whose retries ran out: dead. Its endpoint, when it has accepted nothing since this delivery's
    first attempt (the whole retry window), is disabled. True when this disabled it."""
    async with sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status == DELIVERED:  # removed, or a replay got it through meanwhile
            return False
        delivery.status = DEAD
        delivery.last_error = answer_excerpt(f"dead: retries ran out ({error or 'no answer'})")
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id, with_for_update=True)
        assert endpoint is not None
        first = await session.scalar(
            select(func.min(WebhookAttempt.at)).where(WebhookAttempt.delivery_id == delivery_id)
        )
        failing = endpoint.failing_since
        disabled = endpoint.enabled and failing is not None and first is not None and as_utc(failing) <= as_utc(first)
        if disabled:
            since = as_utc(failing).strftime("%Y-%m-%d %H:%M") if failing else ""
            disable(endpoint, datetime.now(UTC), f"accepted no delivery since {since} UTC (retries ran out)")
        await session.commit()
    return disabled
