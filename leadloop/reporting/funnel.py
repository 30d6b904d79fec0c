"""The report's funnel from leadloop's database: the period's new leads, how far they got, where they went."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.cadence import BIG_BANG_STEP
from leadloop.domain.mail import email_hash
from leadloop.domain.times import as_utc
from leadloop.infra.db import Assignment, DispositionRow, EngagementEvent, Lead, Outbox, Suppression
from leadloop.reporting.models import FUNNEL, OUTCOMES, FunnelStage, ReportData, ratio
from leadloop.reporting.scope import ENGAGING, SENT, Scope, by_person, email_time, marketing

#: lead id -> the times something happened to it
Times = dict[int, list[datetime]]


async def gather_funnel(session: AsyncSession, f: Scope, data: ReportData) -> None:
    """The cohort funnel, where the cohort went, and what happened to every lead in scope in the period."""
    leads = (await session.execute(select(Lead.id, Lead.email, Lead.created_at).where(f.leads(Lead.id)))).all()
    cohort = {lead_id for lead_id, _, created in leads if f.within(created)}
    sent = (Outbox.status.in_(SENT), marketing(Outbox.cadence))
    emailed = await _last_by_lead(session, f, Outbox.lead_id, email_time(), *sent)
    human = (by_person(), EngagementEvent.kind.in_(ENGAGING))
    engaged = await _last_by_lead(session, f, EngagementEvent.lead_id, EngagementEvent.occurred_at, *human)
    handovers = await _last_by_lead(session, f, Assignment.lead_id, Assignment.assigned_at)
    decided = await _decisions(session, f)
    for lead_id, at in await _unanswered_big_bangs(session, f):
        decided["dormant"][lead_id].append(at)
    outcome_times = {**decided, "suppressed": await _suppressed(session, [(lead_id, e) for lead_id, e, _ in leads])}

    reached_sales = cohort & set(handovers)
    funnel_sets = {
        "enrolled": cohort,
        "engaged": (cohort & set(engaged)) | reached_sales,
        "escalated": reached_sales,
        "converted": cohort & set(decided["converted"]),
    }
    top = len(cohort)
    previous: int | None = None
    for name in FUNNEL:
        count = len(funnel_sets[name])
        rate = None if previous is None else ratio(count, previous)
        data.funnel.append(FunnelStage(stage=name, leads=count, rate=rate, of_top=ratio(count, top)))
        previous = count
    data.outcomes = {name: len(cohort & set(outcome_times[name])) for name in OUTCOMES}

    def in_period(times: Mapping[int, Iterable[datetime]]) -> int:
        return sum(1 for ats in times.values() if any(f.within(at) for at in ats))

    def single(times: Mapping[int, datetime]) -> Times:
        return {lead: [at] for lead, at in times.items()}

    data.activity = {
        "enrolled": len(cohort),
        "emailed": in_period(single(emailed)),
        "engaged": in_period(single(engaged)),
        "escalated": in_period(single(handovers)),
        "converted": in_period(decided["converted"]),
        **{name: in_period(outcome_times[name]) for name in OUTCOMES},
    }


async def _last_by_lead(session: AsyncSession, f: Scope, lead: Any, when: Any, *where: Any) -> dict[int, datetime]:
    """Each lead's latest time of something: it happened in the period if that is in the period."""
    rows = await session.execute(select(lead, func.max(when)).where(*where, f.leads(lead)).group_by(lead))
    return {int(lead_id): as_utc(at) for lead_id, at in rows.all() if at is not None}


async def _decisions(session: AsyncSession, f: Scope) -> dict[str, Times]:
    """When each lead was accepted (converted) and rejected, and what a rejection led to: the outcome recorded as
    data, never read from the words."""
    rows = await session.execute(
        select(
            DispositionRow.lead_id, DispositionRow.action, DispositionRow.outcome_action, DispositionRow.created_at
        ).where(f.leads(DispositionRow.lead_id))
    )
    times: dict[str, Times] = {name: defaultdict(list) for name in ("converted", "rejected", "recycled", "dormant")}
    for lead_id, action, outcome, created in rows.all():
        at = as_utc(created)
        if action == "accept":
            times["converted"][lead_id].append(at)
            continue
        times["rejected"][lead_id].append(at)
        if outcome in ("recycled", "dormant"):
            times[outcome][lead_id].append(at)
    return times


async def _suppressed(session: AsyncSession, leads: Iterable[tuple[int, str]]) -> Times:
    """When each lead's address went on the suppression list (matched by its hash)."""
    listed = (await session.execute(select(Suppression.email_hash, Suppression.created_at))).all()
    hashes = {h: as_utc(at) for h, at in listed}
    suppressed: Times = {}
    for lead_id, email in leads:
        when = hashes.get(email_hash(email))
        if when is not None:
            suppressed[lead_id] = [when]
    return suppressed


async def _unanswered_big_bangs(session: AsyncSession, f: Scope) -> list[tuple[int, datetime]]:
    """Big-bang emails with no human open or click of the lead after them, before its next cycle."""
    big_bang_leads = select(Outbox.lead_id).where(Outbox.step_id == BIG_BANG_STEP, marketing(Outbox.cadence))
    bangs = (
        await session.execute(
            select(Outbox.lead_id, Outbox.cycle, email_time()).where(
                Outbox.step_id == BIG_BANG_STEP,
                Outbox.status.in_(SENT),
                marketing(Outbox.cadence),
                f.leads(Outbox.lead_id),
            )
        )
    ).all()
    if not bangs:
        return []
    cycles: dict[int, dict[int, datetime]] = defaultdict(dict)
    for lead_id, cycle, started in (
        await session.execute(
            select(Outbox.lead_id, Outbox.cycle, func.min(email_time()))
            .where(Outbox.lead_id.in_(big_bang_leads), marketing(Outbox.cadence))
            .group_by(Outbox.lead_id, Outbox.cycle)
        )
    ).all():
        cycles[lead_id][cycle] = as_utc(started)
    answers: Times = defaultdict(list)
    for lead_id, at in (
        await session.execute(
            select(EngagementEvent.lead_id, EngagementEvent.occurred_at).where(
                EngagementEvent.lead_id.in_(big_bang_leads),
                by_person(),
                EngagementEvent.kind.in_(ENGAGING),
            )
        )
    ).all():
        answers[lead_id].append(as_utc(at))
    unanswered = []
    for lead_id, cycle, sent in bangs:
        sent = as_utc(sent)
        later = [started for c, started in cycles[lead_id].items() if c > cycle]
        until = min(later) if later else datetime.max.replace(tzinfo=UTC)
        if not any(sent <= at < until for at in answers[lead_id]):
            unanswered.append((lead_id, sent))
    return unanswered
