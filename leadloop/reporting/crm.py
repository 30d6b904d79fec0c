"""The report's CRM figures from leadloop's database: goals reached outside by kind and source, leads per category."""

from collections import Counter

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.scoring import Score, ScoringConfig, category_of
from leadloop.infra.db import Goal, LifecycleEventRow
from leadloop.reporting.models import GoalStats
from leadloop.reporting.scope import Scope

#: how the report names the leads no category of scoring.yaml holds (or whose latest event carried no score)
NO_CATEGORY = "none"


async def gather_goals(session: AsyncSession, f: Scope) -> list[GoalStats]:
    """Goals recorded in the period (the CRM's converted, meeting booked, opportunity created), by kind and
    source, most first."""
    rows = (
        await session.execute(
            select(Goal.kind, Goal.source, func.count())
            .where(f.leads(Goal.lead_id), f.period(Goal.created_at))
            .group_by(Goal.kind, Goal.source)
        )
    ).all()
    goals = [GoalStats(kind=str(kind), source=str(source), goals=int(n)) for kind, source, n in rows]
    return sorted(goals, key=lambda g: (-g.goals, g.kind, g.source))


async def gather_categories(session: AsyncSession, f: Scope, scoring: ScoringConfig | None) -> dict[str, int]:
    """Leads with a lifecycle event in the period, each in the category scoring.yaml's rules give the score of
    its latest such event (the database keeps no category: the rules as they are now decide, as LeadCategory
    would for a lead re-scored now). Empty when scoring.yaml names no category."""
    if scoring is None or not scoring.categories:
        return {}
    latest = (
        select(func.max(LifecycleEventRow.id))
        .where(f.leads(LifecycleEventRow.lead_id), f.period(LifecycleEventRow.occurred_at))
        .group_by(LifecycleEventRow.lead_id)
    )
    payloads = (await session.execute(select(LifecycleEventRow.payload).where(LifecycleEventRow.id.in_(latest)))).all()
    counts: Counter[str] = Counter()
    for (payload,) in payloads:
        counts[_category(scoring, payload)] += 1
    shown = {rule.name: counts.get(rule.name, 0) for rule in scoring.categories}
    if counts.get(NO_CATEGORY):
        shown[NO_CATEGORY] = counts[NO_CATEGORY]
    return shown


def _category(scoring: ScoringConfig, payload: object) -> str:
    breakdown = payload.get("score_breakdown") if isinstance(payload, dict) else None
    if not isinstance(breakdown, dict):
        return NO_CATEGORY
    try:
        score = Score.model_validate(breakdown)
    except ValidationError:
        return NO_CATEGORY
    return category_of(scoring, score) or NO_CATEGORY
