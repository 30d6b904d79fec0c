"""Lifecycle activities: each event of a lead's life recorded once, and fanned out to the CRM's webhook endpoints."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from leadloop.domain.models import LifecycleInput, LifecycleResult, RecordGoalInput, WebhookRetry
from leadloop.infra.db import Goal, insert_new
from leadloop.infra.lifecycle_events import WebhookRoute, announce, lifecycle_payload

__all__ = ["LifecycleActivities", "lifecycle_payload"]


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
        finds the event recorded and hands the pending deliveries over again (the workflow ignores ids it has).
        (`leadloop.infra.lifecycle_events`, which erasure's event goes through too.)"""
        route = WebhookRoute(self.webhook_task_queue or activity.info().task_queue, self.webhook_retry)
        return await announce(self.sessionmaker, activity.client(), input, route)

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
