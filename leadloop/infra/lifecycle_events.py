"""Lifecycle events recorded once and handed to the CRM's webhook deliveries: the one path every event takes."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.crm_webhooks import (
    DELIVERY_SIGNAL,
    DELIVERY_WORKFLOW,
    LEAD_FIELDS,
    delivery_workflow_id,
    message_id,
    subscribed,
    webhook_body,
)
from leadloop.domain.models import (
    LifecycleInput,
    LifecycleResult,
    WebhookDeliveryInput,
    WebhookDeliverySignal,
    WebhookRetry,
)
from leadloop.infra.db import Lead, LifecycleEventRow, WebhookDelivery, WebhookEndpoint, insert_new
from leadloop.infra.settings import Settings


@dataclass(frozen=True)
class WebhookRoute:
    """Where the delivery workflows run (the nurture queue, where they are registered) and how they retry."""

    task_queue: str = "leadloop"
    retry: WebhookRetry = field(default_factory=WebhookRetry)

    @classmethod
    def of(cls, settings: Settings, task_queue: str | None = None) -> "WebhookRoute":
        """The settings' route (LEADLOOP_TASK_QUEUE, LEADLOOP_WEBHOOK_RETRY_*), or another queue given."""
        retry = WebhookRetry(
            initial_interval=settings.webhook_retry_initial,
            max_interval=settings.webhook_retry_max,
            retry_for=settings.webhook_retry_for,
            timeout=settings.webhook_timeout,
        )
        return cls(task_queue=task_queue or settings.task_queue, retry=retry)


def lifecycle_payload(input: LifecycleInput) -> dict[str, object]:
    """The event as recorded; each endpoint gets it `redacted` to the personal data it may receive (free text,
    the profile values in score items), and the person's fields only by name."""
    score = input.score
    return {
        "type": input.type,
        "lead_id": input.lead_id,
        "cycle": input.cycle,
        "stage": input.stage,
        "score": score.total if score else None,
        "score_breakdown": score.model_dump(mode="json") if score else None,
        "cadence": input.cadence,
        "rep_id": input.rep_id,
        "actor": input.actor or None,
        "data": dict(input.data),
        "occurred_at": input.occurred_at.astimezone(UTC).isoformat(),
    }


async def record_event(session: AsyncSession, input: LifecycleInput, *, personal: bool = True) -> tuple[int, bool]:
    """Record the event under its key and, when it is new, one pending delivery per enabled endpoint that
    subscribes to its type (the caller commits). The event's id, and whether it is new.

    Args:
        personal: whether the bodies may carry the lead's external id, owner and the personal data each endpoint
            receives; erasure records its event without any of them.
    """
    recorded = await insert_new(
        session,
        LifecycleEventRow,
        key=input.key,
        lead_id=input.lead_id,
        type=input.type,
        cycle=input.cycle,
        stage=input.stage,
        actor=input.actor or None,
        payload=lifecycle_payload(input),
        occurred_at=input.occurred_at,
        created_at=datetime.now(UTC),
    )
    event_id = await session.scalar(select(LifecycleEventRow.id).where(LifecycleEventRow.key == input.key))
    assert event_id is not None
    if recorded:
        await _fan_out(session, event_id, input, personal)
    return event_id, recorded


async def _fan_out(session: AsyncSession, event_id: int, input: LifecycleInput, personal: bool) -> None:
    """One delivery per enabled, subscribed endpoint: its body holds only the personal data it may receive."""
    lead = await session.get(Lead, input.lead_id) if personal else None
    endpoints = (await session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))).all()
    payload = lifecycle_payload(input)
    for endpoint in endpoints:
        if not subscribed(endpoint.event_types, input.type):
            continue
        fields = endpoint.personal_data if lead is not None else []
        body = webhook_body(
            payload,
            external_id=lead.external_id if lead is not None else None,
            owner=lead.owner if lead is not None else None,
            person={
                name: getattr(lead, name) for name in fields if name in LEAD_FIELDS and getattr(lead, name) is not None
            },
            allowed=fields if lead is not None else (),
        )
        await insert_new(
            session,
            WebhookDelivery,
            endpoint_id=endpoint.id,
            event_id=event_id,
            lead_id=input.lead_id,
            message_id=message_id(input.key, endpoint.id),
            status="pending",
            attempts=0,
            body=body,
            created_at=datetime.now(UTC),
        )


async def hand_over(
    sessionmaker: async_sessionmaker[AsyncSession], client: Client, event_id: int, lead_id: int, route: WebhookRoute
) -> int:
    """Signal-with-start each pending delivery of the event to its (endpoint, lead) delivery workflow (one run at
    a time keeps the lead's order; it ignores ids it has, so handing over again is harmless). How many."""
    async with sessionmaker() as session:
        pending = (
            await session.execute(
                select(WebhookDelivery.id, WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.event_id == event_id, WebhookDelivery.status == "pending")
                .order_by(WebhookDelivery.id)
            )
        ).all()
    for delivery_id, endpoint_id in pending:
        await client.start_workflow(
            DELIVERY_WORKFLOW,
            WebhookDeliveryInput(endpoint_id=endpoint_id, lead_id=lead_id, retry=route.retry),
            id=delivery_workflow_id(endpoint_id, lead_id),
            task_queue=route.task_queue,
            start_signal=DELIVERY_SIGNAL,
            start_signal_args=[WebhookDeliverySignal(delivery_id=delivery_id)],
            static_summary=f"lead {lead_id}'s lifecycle webhooks to endpoint {endpoint_id}",
        )
    return len(pending)


async def announce(
    sessionmaker: async_sessionmaker[AsyncSession], client: Client, input: LifecycleInput, route: WebhookRoute
) -> LifecycleResult:
    """Record the event and its deliveries in one transaction, then hand the pending deliveries over. A retry
    finds the event recorded and hands its pending deliveries over again."""
    async with sessionmaker() as session:
        event_id, recorded = await record_event(session, input)
        await session.commit()
    handed = await hand_over(sessionmaker, client, event_id, input.lead_id, route)
    return LifecycleResult(recorded=recorded, deliveries=handed)
