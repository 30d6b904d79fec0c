"""The CRM's webhook endpoints and their deliveries: add, list, remove, rotate a secret, enable; deliveries, replay."""

import base64
import hashlib
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.crm_webhooks import (
    WebhookInputError,
    check_event_types,
    check_name,
    check_personal_data,
    check_url,
)
from leadloop.domain.times import as_utc
from leadloop.infra.db import LifecycleEventRow, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from leadloop.infra.webhook_sender import DEAD, DELIVERED, PENDING, attempt_delivery, check_destination


class NotFound(WebhookInputError):
    """No endpoint of that name, or no delivery of that id; nothing was changed."""


class EndpointExists(WebhookInputError):
    """An endpoint of that name exists already; nothing was changed."""


class EndpointView(BaseModel):
    """An endpoint as an operator sees it (never its secret, only the secret's fingerprint)."""

    name: str
    url: str
    event_types: list[str] = Field(description="the lifecycle types it receives; empty: every type")
    personal_data: list[str] = Field(description="the lead's fields it receives; empty: none")
    enabled: bool
    secret_hint: str = Field(
        description="the secret's fingerprint (sha256: and the first 8 hex of its SHA-256), to tell secrets apart"
    )
    failing_since: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    secret_rotated_at: datetime | None = None
    created_at: datetime
    pending: int = 0
    failing: int = Field(default=0, description="pending deliveries whose every attempt so far failed")
    delivered: int = 0
    dead: int = 0


class EndpointSecret(BaseModel):
    """An endpoint just added or given a new secret: the secret, shown this once."""

    endpoint: EndpointView
    secret: str = Field(description="whsec_<base64>: give it to the receiver; it is not shown again")


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = None
    answer: str | None = None
    error: str | None = None
    duration_ms: int | None = None


class DeliveryView(BaseModel):
    """One event for one endpoint: where it stands, and every attempt with its answer."""

    id: int
    endpoint: str
    lead_id: int
    event_type: str
    message_id: str = Field(description="the webhook-id header, the same on every attempt and replay")
    status: str = Field(description="pending, delivered or dead")
    attempts: int
    last_status: int | None = None
    last_answer: str | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime
    tries: list[AttemptView] = Field(default_factory=list)


class ReplayResult(BaseModel):
    """What a replay did: delivered or not, the answer, and whether the endpoint is still disabled."""

    delivery: DeliveryView
    delivered: bool
    answer: str
    endpoint_disabled: bool = False


class WebhookHealth(BaseModel):
    """What `leadloop status` and /metrics tell the operator: disabled endpoints and failing deliveries."""

    endpoints: int = 0
    disabled: list[EndpointView] = Field(default_factory=list)
    failing: int = 0
    dead: int = 0


def secret_fingerprint(secret: str) -> str:
    """What tells two secrets apart without giving away any of the secret's own characters."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def new_secret() -> str:
    """Standard Webhooks' secret form: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def add_endpoint(
    session: AsyncSession,
    name: str,
    url: str,
    event_types: list[str] | None = None,
    personal_data: list[str] | None = None,
    *,
    allow_private: bool = False,
) -> EndpointSecret:
    """A new endpoint with a new secret (shown once); every field checked before anything is stored. A URL whose
    host is or resolves to a non-global address is refused unless `allow_private` (a name that does not resolve
    yet is taken: every send resolves it again)."""
    row = WebhookEndpoint(
        name=check_name(name),
        url=check_url(url),
        secret=new_secret(),
        event_types=check_event_types(event_types or []),
        personal_data=check_personal_data(personal_data or []),
        enabled=True,
        created_at=datetime.now(UTC),
    )
    await check_destination(row.url, allow_private=allow_private, unresolved_ok=True)
    if await _find(session, name) is not None:
        raise EndpointExists(f"an endpoint named '{name}' exists already; nothing changed")
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:  # added by someone else meanwhile
        await session.rollback()
        raise EndpointExists(f"an endpoint named '{name}' exists already; nothing changed") from None
    return EndpointSecret(endpoint=(await _views(session, [row]))[0], secret=row.secret)


async def list_endpoints(session: AsyncSession) -> list[EndpointView]:
    rows = (await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.name))).all()
    return await _views(session, list(rows))


async def remove_endpoint(session: AsyncSession, name: str) -> EndpointView:
    """Remove the endpoint with its deliveries and their attempts (its pending deliveries are never sent)."""
    row = await _endpoint(session, name)
    view = (await _views(session, [row]))[0]
    await session.delete(row)
    await session.commit()
    return view


async def rotate_secret(session: AsyncSession, name: str) -> EndpointSecret:
    """A new secret for every attempt from now on (retries and replays included); the old one is kept as the
    previous secret, for the record."""
    row = await _endpoint(session, name)
    row.previous_secret, row.secret, row.secret_rotated_at = row.secret, new_secret(), datetime.now(UTC)
    await session.commit()
    return EndpointSecret(endpoint=(await _views(session, [row]))[0], secret=row.secret)


async def enable_endpoint(session: AsyncSession, name: str) -> EndpointView:
    """Enable a disabled endpoint: new events are delivered to it again (its dead deliveries: `replay`)."""
    row = await _endpoint(session, name)
    row.enabled, row.disabled_at, row.disabled_reason, row.failing_since = True, None, None, None
    await session.commit()
    return (await _views(session, [row]))[0]


async def list_deliveries(
    session: AsyncSession,
    *,
    failed: bool = False,
    endpoint: str | None = None,
    lead_id: int | None = None,
    delivery_id: int | None = None,
    limit: int = 50,
) -> list[DeliveryView]:
    """The newest deliveries first, each with its attempts; `failed`: dead, or pending with every attempt failed."""
    query = (
        select(WebhookDelivery, WebhookEndpoint.name, LifecycleEventRow.type)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(LifecycleEventRow, LifecycleEventRow.id == WebhookDelivery.event_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if endpoint is not None:
        row = await _endpoint(session, endpoint)
        query = query.where(WebhookDelivery.endpoint_id == row.id)
    if lead_id is not None:
        query = query.where(WebhookDelivery.lead_id == lead_id)
    if delivery_id is not None:
        query = query.where(WebhookDelivery.id == delivery_id)
    if failed:
        query = query.where(_failed())
    found = (await session.execute(query)).all()
    ids = [delivery.id for delivery, _, _ in found]
    tries: dict[int, list[AttemptView]] = {i: [] for i in ids}
    if ids:
        attempts = await session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)).order_by(WebhookAttempt.id)
        )
        for a in attempts:
            tries[a.delivery_id].append(
                AttemptView(
                    attempt=a.attempt,
                    at=as_utc(a.at),
                    status_code=a.status_code,
                    answer=a.answer,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
            )
    return [_delivery_view(d, name, event_type, tries[d.id]) for d, name, event_type in found]


async def delivery_view(session: AsyncSession, delivery_id: int) -> DeliveryView:
    """One delivery with its attempts; NotFound when there is none."""
    shown = await list_deliveries(session, delivery_id=delivery_id)
    if not shown:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return shown[0]


async def replay(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: int,
    *,
    answer_within: float,
    allow_private: bool = False,
) -> ReplayResult:
    """Send a delivery again now, whatever its status: the same webhook-id and body, signed with the endpoint's
    current secret. A delivered replay marks it delivered; a failed one leaves its status as it was."""
    async with sessionmaker() as session:
        if await session.get(WebhookDelivery, delivery_id) is None:
            raise NotFound(f"no webhook delivery {delivery_id}; nothing was sent")
    attempt = await attempt_delivery(
        sessionmaker, delivery_id, answer_within=answer_within, replay=True, allow_private=allow_private
    )
    if attempt.outcome == "missing":
        raise NotFound(f"no webhook delivery {delivery_id} (its endpoint was removed); nothing was sent")
    async with sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id)
        assert endpoint is not None
        return ReplayResult(
            delivery=await delivery_view(session, delivery_id),
            delivered=attempt.outcome == "delivered",
            answer=attempt.describe(),
            endpoint_disabled=not endpoint.enabled,
        )


async def webhook_health(session: AsyncSession) -> WebhookHealth:
    endpoints = await list_endpoints(session)
    return WebhookHealth(
        endpoints=len(endpoints),
        disabled=[e for e in endpoints if not e.enabled],
        failing=sum(e.failing for e in endpoints),
        dead=sum(e.dead for e in endpoints),
    )


async def count_deliveries(session: AsyncSession) -> dict[tuple[str, bool], int]:
    """Deliveries by (status, whether failing), for /metrics."""
    counts: dict[tuple[str, bool], int] = {}
    for _, status, tried, n in await _counts(session):
        key = (status, status == PENDING and tried)
        counts[key] = counts.get(key, 0) + n
    return counts


async def _counts(session: AsyncSession, endpoint_ids: list[int] | None = None) -> list[tuple[int, str, bool, int]]:
    """(endpoint id, status, whether tried, count) of the deliveries; a pending one tried has failed every time."""
    # grouped over a subquery: PostgreSQL refuses a GROUP BY expression whose bound parameters differ from the
    # SELECT's
    rows = select(
        WebhookDelivery.endpoint_id.label("endpoint_id"),
        WebhookDelivery.status.label("status"),
        (WebhookDelivery.attempts > 0).label("tried"),
    )
    if endpoint_ids is not None:
        rows = rows.where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
    sub = rows.subquery()
    found = await session.execute(
        select(sub.c.endpoint_id, sub.c.status, sub.c.tried, func.count()).group_by(
            sub.c.endpoint_id, sub.c.status, sub.c.tried
        )
    )
    return [(int(e), str(s), bool(t), int(n)) for e, s, t, n in found.all()]


def _failed() -> ColumnElement[bool]:
    return or_(WebhookDelivery.status == DEAD, and_(WebhookDelivery.status == PENDING, WebhookDelivery.attempts > 0))


async def _find(session: AsyncSession, name: str) -> WebhookEndpoint | None:
    found: WebhookEndpoint | None = await session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.name == name))
    return found


async def _endpoint(session: AsyncSession, name: str) -> WebhookEndpoint:
    row = await _find(session, name)
    if row is None:
        raise NotFound(f"no webhook endpoint named '{name}'; nothing changed")
    return row


async def _views(session: AsyncSession, rows: list[WebhookEndpoint]) -> list[EndpointView]:
    ids = [row.id for row in rows]
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    if ids:
        for endpoint_id, status, tried, n in await _counts(session, ids):
            what = "failing" if status == PENDING and tried else status
            counts[endpoint_id][what] = counts[endpoint_id].get(what, 0) + n

    def when(moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None

    return [
        EndpointView(
            name=row.name,
            url=row.url,
            event_types=list(row.event_types),
            personal_data=list(row.personal_data),
            enabled=row.enabled,
            secret_hint=secret_fingerprint(row.secret),
            failing_since=when(row.failing_since),
            disabled_at=when(row.disabled_at),
            disabled_reason=row.disabled_reason,
            secret_rotated_at=when(row.secret_rotated_at),
            created_at=as_utc(row.created_at),
            pending=counts[row.id].get(PENDING, 0) + counts[row.id].get("failing", 0),
            failing=counts[row.id].get("failing", 0),
            delivered=counts[row.id].get(DELIVERED, 0),
            dead=counts[row.id].get(DEAD, 0),
        )
        for row in rows
    ]


def _delivery_view(d: WebhookDelivery, endpoint: str, event_type: str, tries: list[AttemptView]) -> DeliveryView:
    return DeliveryView(
        id=d.id,
        endpoint=endpoint,
        lead_id=d.lead_id,
        event_type=event_type,
        message_id=d.message_id,
        status=d.status,
        attempts=d.attempts,
        last_status=d.last_status,
        last_answer=d.last_answer,
        last_error=d.last_error,
        last_attempt_at=as_utc(d.last_attempt_at) if d.last_attempt_at else None,
        delivered_at=as_utc(d.delivered_at) if d.delivered_at else None,
        created_at=as_utc(d.created_at),
        tries=tries,
    )
