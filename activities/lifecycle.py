"""Lifecycle activities: each event of a lead's life recorded once, and fanned out to the CRM's webhook endpoints."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

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
    RecordGoalInput,
    WebhookDeliveryInput,
    WebhookDeliverySignal,
    WebhookRetry,
)
from leadloop.infra.db import Goal, Lead, LifecycleEventRow, WebhookDelivery, WebhookEndpoint, insert_new


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


class LifecycleActivities:
    """Holds the sessionmaker, how webhook deliveries are retried and the task queue their workflows run on."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        webhook_retry: WebhookRetry | None = None,
        webhook_task_queue: str | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.webhook_retry = webhook_retry or WebhookRetry()
        # the nurture queue, where the delivery workflow is registered (this activity may run on the sales queue)
        self.webhook_task_queue = webhook_task_queue

    @activity.defn(name="announce_lifecycle")
    async def announce(self, input: LifecycleInput) -> LifecycleResult:
        """Record the event under its key and, in the same transaction, one delivery per enabled endpoint that
        subscribes to its type; then hand each pending delivery to its (endpoint, lead) delivery workflow. A retry
        finds the event recorded and hands the pending deliveries over again (the workflow ignores ids it has)."""
        async with self.sessionmaker() as session:
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
                await self._fan_out(session, event_id, input)
            await session.commit()
            pending = (
                await session.execute(
                    select(WebhookDelivery.id, WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.event_id == event_id, WebhookDelivery.status == "pending")
                    .order_by(WebhookDelivery.id)
                )
            ).all()
        for delivery_id, endpoint_id in pending:
            await self._hand_over(delivery_id, endpoint_id, input.lead_id)
        return LifecycleResult(recorded=recorded, deliveries=len(pending))

    async def _fan_out(self, session: AsyncSession, event_id: int, input: LifecycleInput) -> None:
        """One delivery per enabled, subscribed endpoint: its body holds only the personal data it may receive."""
        lead = await session.get(Lead, input.lead_id)
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
                    name: getattr(lead, name)
                    for name in fields
                    if name in LEAD_FIELDS and getattr(lead, name) is not None
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

    async def _hand_over(self, delivery_id: int, endpoint_id: int, lead_id: int) -> None:
        """Signal-with-start the (endpoint, lead) delivery workflow: one run at a time keeps the lead's order."""
        await activity.client().start_workflow(
            DELIVERY_WORKFLOW,
            WebhookDeliveryInput(endpoint_id=endpoint_id, lead_id=lead_id, retry=self.webhook_retry),
            id=delivery_workflow_id(endpoint_id, lead_id),
            task_queue=self.webhook_task_queue or activity.info().task_queue,
            start_signal=DELIVERY_SIGNAL,
            start_signal_args=[WebhookDeliverySignal(delivery_id=delivery_id)],
            static_summary=f"lead {lead_id}'s lifecycle webhooks to endpoint {endpoint_id}",
        )

    @activity.defn(name="record_goal")
    async def record_goal(self, input: RecordGoalInput) -> bool:
        """Record a goal reached outside leadloop; False when this goal (same reference) was recorded already."""
        async with self.sessionmaker() as session:
            recorded = await insert_new(
                session,
                Goal,
                lead_id=input.lead_id,
                kind=input.kind,
                source=input.source,
                reference=input.reference,
                actor=input.actor or "unknown",
                note=input.note or None,
                stage_before=input.stage_before,
                created_at=datetime.now(UTC),
            )
            await session.commit()
        return recorded
