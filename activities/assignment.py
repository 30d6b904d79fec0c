"""Sales activities: route a hot lead to a team and a rep, and close hand-overs (database work)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from leadloop.domain.cadence import SendWindow
from leadloop.domain.models import AssignLeadInput, AssignLeadResult, CloseAssignmentInput
from leadloop.domain.routing import Candidate, RoutingConfig, choose_rep, load_routing
from leadloop.infra.db import OPEN, Assignment, Lead, Rep, Team, close_assignments, insert_new


class AssignmentActivities:
    """Holds the sessionmaker and where routing.yaml lives (re-read when it changes)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], routing_file: Path) -> None:
        self.sessionmaker = sessionmaker
        self.routing_file = routing_file
        self._routing: tuple[float, RoutingConfig] | None = None

    def routing(self) -> RoutingConfig:
        mtime = self.routing_file.stat().st_mtime
        if self._routing is None or self._routing[0] != mtime:
            self._routing = (mtime, load_routing(self.routing_file))
        return self._routing[1]

    @activity.defn(name="assign_lead")
    async def assign_lead(self, input: AssignLeadInput) -> AssignLeadResult:
        """Choose a rep by the routing rules; the assignment key makes a retried call return the same rep."""
        routing = self.routing()
        async with self.sessionmaker() as session:
            existing = await session.get(Assignment, input.key)
            if existing is not None:
                return await self._result(session, existing, routing)
            # `forget` deletes the workflow, then closes the lead's hand-overs under this same row lock: a call
            # still in flight must not open a new one for an erased person, holding a place in a rep's capacity
            erased = await session.scalar(select(Lead.erased_at).where(Lead.id == input.lead_id).with_for_update())
            if erased is not None:
                raise ApplicationError(f"lead {input.lead_id} was erased on request", type="Erased", non_retryable=True)
            rep, team_name, rule, why = await self._choose(session, input, routing)
            now = datetime.now(UTC)
            await insert_new(
                session,
                Assignment,
                key=input.key,
                lead_id=input.lead_id,
                cycle=input.cycle,
                rep_id=rep.id if rep else None,
                team=team_name,
                rule=rule if rep else f"{rule}: {why}",
                status=OPEN if rep else "waiting",
                score=input.score,
                assigned_at=now,
            )
            if rep is not None:
                # earlier waits of this lead are over
                await session.execute(
                    update(Assignment)
                    .where(Assignment.lead_id == input.lead_id, Assignment.status == "waiting")
                    .values(status="closed", closed_at=now)
                )
            await session.commit()
            row = await session.get(Assignment, input.key)
            assert row is not None
            return await self._result(session, row, routing)

    async def _choose(
        self, session: AsyncSession, input: AssignLeadInput, routing: RoutingConfig
    ) -> tuple[Rep | None, str | None, str, str]:
        """(rep, team, rule, why nobody) for a new assignment."""
        excluded = set(input.exclude_rep_ids)
        if input.prefer_rep_id is not None:
            asked = await session.get(Rep, input.prefer_rep_id)
            if asked is not None and asked.active and asked.id not in excluded:
                return asked, asked.team, "keep in touch (the rep asked to call back)", ""
        if input.profile.owner:
            owner = (
                await session.execute(select(Rep).where(func.lower(Rep.email) == input.profile.owner.strip().lower()))
            ).scalar_one_or_none()
            if owner is not None and owner.active and owner.id not in excluded:
                return owner, owner.team, "owner (relationship selling)", ""
        rule = routing.route(input.profile)
        if rule is None:
            return None, None, "no rule", "no routing rule matches this lead"
        team = (
            await session.execute(select(Team).where(Team.name == rule.team).with_for_update())
        ).scalar_one_or_none()
        if team is None:
            return None, rule.team, f"rule {rule.name}", f"team {rule.team!r} has no reps imported"
        load = (
            select(Assignment.rep_id, func.count().label("n"))
            .where(Assignment.status == OPEN)
            .group_by(Assignment.rep_id)
            .subquery()
        )
        rows = (
            await session.execute(
                select(Rep, func.coalesce(load.c.n, 0))
                .outerjoin(load, load.c.rep_id == Rep.id)
                .where(Rep.team == team.name)
            )
        ).all()
        reps = {rep.id: rep for rep, _ in rows}
        candidates = [Candidate(rep.id, rep.active, rep.capacity, int(n)) for rep, n in rows]
        chosen = choose_rep(candidates, team.strategy, last_rep_id=team.last_rep_id, exclude=excluded)  # type: ignore[arg-type]
        if chosen is None:
            why = f"every rep of team {team.name!r} is inactive, at capacity or has let this lead lapse"
            return None, team.name, f"rule {rule.name}", why
        team.last_rep_id = chosen.id
        return reps[chosen.id], team.name, f"rule {rule.name} → team {team.name} ({team.strategy})", ""

    async def _result(self, session: AsyncSession, row: Assignment, routing: RoutingConfig) -> AssignLeadResult:
        retry = routing.retry_unassigned_every
        if row.rep_id is None or row.status == "waiting":
            return AssignLeadResult(
                assigned=False, key=row.key, rule=row.rule, team=row.team, reason=row.rule, retry_after=retry
            )
        rep = await session.get(Rep, row.rep_id)
        team = await session.get(Team, row.team) if row.team else None
        if rep is None or team is None:
            return AssignLeadResult(
                assigned=False, key=row.key, rule=row.rule, reason="the assigned rep was removed", retry_after=retry
            )
        return AssignLeadResult(
            assigned=True,
            key=row.key,
            rule=row.rule,
            team=team.name,
            rep_id=rep.id,
            rep_name=rep.name,
            rep_timezone=rep.timezone,
            sla=timedelta(seconds=team.sla_seconds),
            business_hours=SendWindow.model_validate(team.hours),
            has_manager=team.manager_email is not None,
            retry_after=retry,
        )

    @activity.defn(name="close_assignment")
    async def close_assignment(self, input: CloseAssignmentInput) -> None:
        """Mark a hand-over lapsed, accepted, rejected or closed; already closed is success."""
        async with self.sessionmaker() as session:
            await close_assignments(session, input.status, key=input.key)
            await session.commit()
