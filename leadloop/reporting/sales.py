"""The report's sales figures from leadloop's database: hand-overs per rep, time to decide, rejection reasons."""

import statistics
from collections import Counter, defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.recycle import REASON_LABELS
from leadloop.domain.times import as_utc
from leadloop.infra.db import Assignment, DispositionRow, Rep, Team
from leadloop.reporting.models import ReasonStats, RepStats, SalesStats, ratio
from leadloop.reporting.scope import Scope


def _hours(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (as_utc(end) - as_utc(start)).total_seconds() / 3600


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


async def gather_sales(session: AsyncSession, f: Scope) -> SalesStats:
    """Hand-overs in the period by rep and how they ended; the rejections in the period and what they led to."""
    sales = await _handovers(session, f)
    await _decisions(session, f, sales)
    return sales


async def _handovers(session: AsyncSession, f: Scope) -> SalesStats:
    reps = {r.id: r for r in (await session.execute(select(Rep))).scalars()}
    teams = {t.name: t for t in (await session.execute(select(Team))).scalars()}
    handovers = (
        (await session.execute(select(Assignment).where(f.leads(Assignment.lead_id), f.period(Assignment.assigned_at))))
        .scalars()
        .all()
    )
    sales = SalesStats()
    by_rep: dict[int | None, RepStats] = {}
    decide: dict[int | None, list[float]] = defaultdict(list)
    to_accept: list[float] = []
    to_reject: list[float] = []
    for row in handovers:
        if row.status == "waiting" or (row.rep_id is None and row.status == "closed"):
            sales.waited += 1
            continue
        rep = reps.get(row.rep_id) if row.rep_id is not None else None
        team = teams.get(rep.team if rep else row.team or "")
        stats = by_rep.setdefault(
            row.rep_id,
            RepStats(
                rep_id=row.rep_id,
                rep=rep.name if rep else "(rep removed)",
                team=rep.team if rep else row.team,
                sla_hours=team.sla_seconds / 3600 if team else None,
            ),
        )
        stats.handovers += 1
        sales.handovers += 1
        if row.status in ("accepted", "rejected"):
            hours = _hours(row.assigned_at, row.closed_at)
            if hours is not None:
                decide[row.rep_id].append(hours)
                (to_accept if row.status == "accepted" else to_reject).append(hours)
        if row.status == "accepted":
            stats.accepted += 1
        elif row.status == "rejected":
            stats.rejected += 1
        elif row.status == "lapsed":
            stats.lapsed += 1
        elif row.status == "assigned":
            stats.open += 1
        else:
            stats.closed += 1
    for rep_id, stats in by_rep.items():
        stats.median_hours_to_decide = _median(decide[rep_id])
        stats.mean_hours_to_decide = statistics.fmean(decide[rep_id]) if decide[rep_id] else None
    sales.reps = sorted(by_rep.values(), key=lambda s: (-s.handovers, s.rep))
    sales.accepted = sum(s.accepted for s in sales.reps)
    sales.rejected = sum(s.rejected for s in sales.reps)
    sales.lapsed = sum(s.lapsed for s in sales.reps)
    sales.lapse_rate = ratio(sales.lapsed, sales.accepted + sales.rejected + sales.lapsed)
    sales.median_hours_to_accept = _median(to_accept)
    sales.median_hours_to_reject = _median(to_reject)
    return sales


async def _decisions(session: AsyncSession, f: Scope, sales: SalesStats) -> None:
    """Rejection reasons and what they led to (the outcome recorded as data), and recycled leads converted later."""
    decisions = (
        await session.execute(
            select(
                DispositionRow.lead_id,
                DispositionRow.action,
                DispositionRow.reason,
                DispositionRow.outcome_action,
                DispositionRow.created_at,
            ).where(f.leads(DispositionRow.lead_id))
        )
    ).all()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    recycles: dict[int, datetime] = {}
    accepts: dict[int, list[datetime]] = defaultdict(list)
    for lead_id, action, reason, outcome, created in decisions:
        at = as_utc(created)
        if action == "accept":
            accepts[lead_id].append(at)
            continue
        if not f.within(at):
            continue
        reasons[reason or "other"][outcome] += 1
        if outcome == "recycled":
            recycles[lead_id] = min(at, recycles.get(lead_id, at))
    sales.reasons = sorted(
        (
            ReasonStats(reason=r, label=REASON_LABELS.get(r, r), rejections=sum(c.values()), outcomes=dict(c))
            for r, c in reasons.items()
        ),
        key=lambda s: (-s.rejections, s.reason),
    )
    sales.recycled = len(recycles)
    sales.recycled_converted = sum(1 for lead, at in recycles.items() if any(a > at for a in accepts[lead]))
    sales.recycled_converted_rate = ratio(sales.recycled_converted, sales.recycled)
