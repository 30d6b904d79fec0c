"""Lifecycle activities: each event of a lead's life recorded once, for the CRM's webhooks to deliver."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from leadloop.domain.models import LifecycleInput, LifecycleResult, RecordGoalInput
from leadloop.infra.db import Goal, LifecycleEventRow, insert_new


def lifecycle_payload(input: LifecycleInput) -> dict[str, object]:
    """What every receiver gets of an event, whatever it may see of the person: no personal data here."""
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
    """Holds the sessionmaker."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    @activity.defn(name="announce_lifecycle")
    async def announce(self, input: LifecycleInput) -> LifecycleResult:
        """Record the event under its key (a retry finds it recorded: success)."""
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
            await session.commit()
        return LifecycleResult(recorded=recorded)

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
