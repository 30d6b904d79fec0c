"""`leadloop report`: the funnel, cadence step performance, sales figures and the funnel planner, drawn as charts."""

import asyncio
import base64
import html
import io
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, case, distinct, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from leadloop.domain.cadence import load_cadence
from leadloop.domain.mail import email_hash
from leadloop.domain.models import STAGES
from leadloop.domain.recycle import REASON_LABELS
from leadloop.domain.rules import RuleFileError
from leadloop.domain.times import as_utc
from leadloop.infra.db import Assignment, DispositionRow, EngagementEvent, Lead, Outbox, Rep, Suppression, Team

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: outbox statuses of an email handed to the relay: sent, or possibly sent and never sent twice
SENT = ("sent", "uncertain")
#: the step id the workflow gives a cadence's big-bang email (workflows/lead_nurture.py)
BIG_BANG_STEP = "big-bang"
ENGAGING = ("open", "click")
FUNNEL = ("enrolled", "engaged", "escalated", "converted")
OUTCOMES = ("rejected", "recycled", "dormant", "suppressed")
ACTIVITY = ("enrolled", "emailed", "engaged", "escalated", "converted", "rejected", "recycled", "dormant", "suppressed")
ENDED = ("converted", "archived", "cadence_complete", "suppressed")
#: what a rejection led to, from the start of the outcome the workflow records (workflows/lead_nurture.py)
OUTCOME_PREFIXES = (
    ("back to nurture", "recycled"),
    ("dormant", "dormant"),
    ("archived", "archived"),
    ("suppressed", "suppressed"),
    ("held", "held"),
    ("re-routed", "re-routed"),
)
CHARTS = ("stages_now", "funnel", "steps", "reps", "reasons", "planner")
RULE_FILES = ("scoring.yaml", "routing.yaml", "recycle.yaml")
VISIBILITY_TIMEOUT = 20.0

#: What every number counts; shown in the report next to its numbers, and in the README.
DEFINITIONS: dict[str, dict[str, str]] = {
    "period": {
        "period": "from --since (00:00 UTC that day) to the moment the report was made; without --since, "
        "everything leadloop's database holds. An email belongs to the period by when it went out (sent_at; "
        "when it has none — uncertain, bounced — when it was queued); an event, a hand-over, a decision or a "
        "suppression by when it happened.",
        "scope": "every lead; with --cadence C, the leads enrolled into C (the cadence on their record) or sent "
        "at least one email of C, and in the step table only C's emails.",
    },
    "live": {
        "leads by stage now": "Temporal's visibility: per LeadStage, the leads whose current run is running, "
        "plus those whose workflow completed in that stage (converted, suppressed, archived, cadence_complete); "
        "continued-as-new runs are not counted again. With --cadence: leads whose current cycle runs it. "
        "Not limited to the period.",
    },
    "funnel": {
        "enrolled": "the cohort: leads in scope whose record was created in the period (their first "
        "enrolment; re-enrolling a known lead does not make it new).",
        "engaged": "cohort leads with at least one human open or human click of any of their emails, at any "
        "time since. Machine opens and clicks (privacy prefetches, security scanners, link previews) never "
        "count, site visits do not either. A lead that reached sales without one counts as engaged too, so "
        "each stage holds the next.",
        "escalated": "cohort leads handed to sales at least once: their score reached the cadence's threshold "
        "(an assignment to a rep, or a wait for one).",
        "converted": "cohort leads a rep accepted. Accepting converts a lead: leadloop has no separate "
        "'accepted' stage.",
        "rate": "a stage's leads ÷ the previous stage's leads; 'of enrolled': ÷ the cohort.",
        "rejected": "cohort leads a rep rejected at least once.",
        "recycled": "cohort leads a rejection sent back to nurture (recycle.yaml's nurture action).",
        "dormant": "cohort leads a rejection made dormant, or whose big-bang email went out with no human "
        "open or click after it before their next cycle (a lead still inside its response window counts "
        "already).",
        "suppressed": "cohort leads whose address is on the suppression list (unsubscribe, hard bounce, a "
        "rep's 'not interested'), matched by the address's hash.",
        "activity in the period": "the same events for every lead in scope, whenever it was enrolled, counted "
        "when they happened in the period: enrolled = new leads; emailed = sent at least one email; engaged = "
        "a human open or click; escalated = handed to sales; converted = accepted; rejected, recycled, dormant "
        "(rejection, or a big bang sent in the period and unanswered), suppressed. Each is a number of leads.",
    },
    "steps": {
        "sends": "the step's emails handed to the SMTP relay in the period (status sent, or uncertain: "
        "possibly sent, never sent twice). Refused and suppressed attempts are not sends; bounces are apart. "
        "An email's events count whenever they happened.",
        "human open rate": "emails with at least one human open or human click ÷ sends (a click proves an "
        "open when images were blocked).",
        "human click rate": "emails with at least one human click ÷ sends.",
        "machine opens, machine clicks": "the share of the step's open (click) events the classifier marked "
        "machine: privacy prefetches, security gateways, link scanners and previews. They never count as "
        "engagement.",
        "unsubscribes": "emails of the step through which the lead unsubscribed; rate ÷ sends.",
        "bounces": "emails of the step the recipient's server refused for good (hard bounce); rate ÷ "
        "(sends + bounces).",
    },
    "sales": {
        "hand-overs": "assignments of a lead to a rep made in the period; a lapse and the hand-over to the "
        "next rep are two. Accepted, rejected, lapsed, open (still waiting for the rep) and closed (ended "
        "without a decision: the lead unsubscribed, the rep could not be notified) are their states now.",
        "waited for a rep": "escalations in the period when no rep was available (inactive or at capacity).",
        "time to decide": "from the hand-over to the rep's accept or reject, in wall-clock hours (the SLA "
        "counts business hours in the rep's time zone, so a decision inside it can take longer on the clock).",
        "SLA lapses": "hand-overs the rep let pass the team's SLA without a decision; the lead went to the "
        "next rep. Lapse rate: lapsed ÷ (accepted + rejected + lapsed).",
        "rejection reasons": "reps' rejections in the period by reason, and what recycle.yaml made of them.",
        "recycled, later converted": "leads a rejection in the period sent back to nurture, that a rep "
        "accepted afterwards (by the time of the report).",
        "suppressions": "addresses put on the suppression list in the period, by reason; 'erased' are people "
        "forgotten on request, whose lead no longer carries the address.",
    },
    "planner": {
        "planner": "works backwards from the target number of conversions: each stage needs the next stage's "
        "number ÷ the measured rate into it, rounded up to whole leads; the top is how many new leads to "
        "enrol. The rates are the cohort funnel's. A growth percentage applies to the cohort's conversions; "
        "without a target or growth the plan repeats the measured conversions.",
        "more needed": "needed − measured in the period (0 when the period already had enough).",
    },
}


class ReportError(ValueError):
    """The report cannot be made as asked (unknown cadence, a period in the future); nothing was written."""


class PlanError(ValueError):
    """The funnel planner refuses its input (a rate of zero, a negative target ...), saying why."""


class FunnelStage(BaseModel):
    stage: str
    leads: int
    rate: float | None = Field(default=None, description="÷ the previous stage; None at the top or after 0")
    of_top: float | None = None


class StepStats(BaseModel):
    """One cadence step's emails in the period and what readers (and machines) did with them."""

    cadence: str
    step: str
    sends: int = 0
    human_opened: int = Field(default=0, description="emails with a human open or click")
    human_clicked: int = 0
    open_events: int = 0
    machine_opens: int = 0
    click_events: int = 0
    machine_clicks: int = 0
    unsubscribes: int = 0
    bounces: int = 0
    open_rate: float | None = None
    click_rate: float | None = None
    machine_open_share: float | None = None
    machine_click_share: float | None = None
    unsubscribe_rate: float | None = None
    bounce_rate: float | None = None


class RepStats(BaseModel):
    rep_id: int | None
    rep: str
    team: str | None = None
    sla_hours: float | None = None
    handovers: int = 0
    accepted: int = 0
    rejected: int = 0
    lapsed: int = 0
    open: int = 0
    closed: int = 0
    median_hours_to_decide: float | None = None
    mean_hours_to_decide: float | None = None


class ReasonStats(BaseModel):
    reason: str
    label: str
    rejections: int
    outcomes: dict[str, int] = Field(default_factory=dict)


class SalesStats(BaseModel):
    reps: list[RepStats] = Field(default_factory=list)
    handovers: int = 0
    waited: int = 0
    accepted: int = 0
    rejected: int = 0
    lapsed: int = 0
    lapse_rate: float | None = None
    median_hours_to_accept: float | None = None
    median_hours_to_reject: float | None = None
    reasons: list[ReasonStats] = Field(default_factory=list)
    recycled: int = 0
    recycled_converted: int = 0
    recycled_converted_rate: float | None = None


class PlanStage(BaseModel):
    stage: str
    rate: float | None = Field(description="measured rate into this stage from the previous; None at the top")
    needed: int
    measured: int | None = None
    more_needed: int | None = None


class FunnelPlan(BaseModel):
    target_conversions: int
    growth_pct: float | None = None
    stages: list[PlanStage]


class ReportData(BaseModel):
    """Every number of a report: plain counts and rates, nothing from the database left attached."""

    generated_at: datetime
    since: datetime | None = None
    cadence: str | None = None
    live_stages: dict[str, int] | None = None
    live_note: str | None = None
    funnel: list[FunnelStage] = Field(default_factory=list)
    outcomes: dict[str, int] = Field(default_factory=dict)
    activity: dict[str, int] = Field(default_factory=dict)
    steps: list[StepStats] = Field(default_factory=list)
    sales: SalesStats = Field(default_factory=SalesStats)
    suppressions: dict[str, int] = Field(default_factory=dict)
    plan: FunnelPlan | None = None
    plan_note: str | None = None


# ---------------------------------------------------------------- gathering


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def period_start(since: date | datetime | None) -> datetime | None:
    if since is None:
        return None
    if isinstance(since, datetime):
        return as_utc(since).astimezone(UTC)
    return datetime(since.year, since.month, since.day, tzinfo=UTC)


def cadence_steps_from(cadence_dir: Path) -> dict[str, list[str]]:
    """Each loadable cadence file's step ids in order, the big bang last; files that do not load are skipped."""
    found: dict[str, list[str]] = {}
    for path in sorted(cadence_dir.glob("*.y*ml")):
        if path.name in RULE_FILES:
            continue
        try:
            cadence = load_cadence(path)
        except RuleFileError:
            continue
        found[cadence.name] = [s.id for s in cadence.steps] + ([BIG_BANG_STEP] if cadence.big_bang else [])
    return found


async def known_cadences(session: AsyncSession, cadence_steps: Mapping[str, Sequence[str]] | None = None) -> set[str]:
    """Cadences a report can be filtered to: those of the cadence files, and any the database has seen."""
    sent = (await session.execute(select(distinct(Outbox.cadence)))).scalars().all()
    enrolled = (await session.execute(select(distinct(Lead.cadence)).where(Lead.cadence.is_not(None)))).scalars()
    names = {str(n) for n in [*sent, *enrolled] if n and not str(n).startswith("_")}
    return names | set(cadence_steps or ())


@dataclass
class _Filters:
    since: datetime | None
    cadence: str | None

    def period(self, column: Any) -> ColumnElement[bool]:
        return column >= self.since if self.since is not None else true()

    def leads(self, column: Any) -> ColumnElement[bool]:
        """The lead id column restricted to the report's scope."""
        if self.cadence is None:
            return true()
        scoped = select(Lead.id).where(
            or_(Lead.cadence == self.cadence, Lead.id.in_(select(Outbox.lead_id).where(Outbox.cadence == self.cadence)))
        )
        return column.in_(scoped)  # type: ignore[no-any-return]

    def within(self, when: datetime | None) -> bool:
        return when is not None and (self.since is None or as_utc(when) >= self.since)


def _marketing(column: Any) -> ColumnElement[bool]:
    """Cadence emails, not the rep notifications the outbox also keeps (cadence "_sales")."""
    return ~column.startswith("_", autoescape=True)  # type: ignore[no-any-return]


async def gather_report(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client | None,
    since: date | datetime | None,
    cadence: str | None,
    *,
    cadence_steps: Mapping[str, Sequence[str]] | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Every number of the report, from leadloop's database and (for the stages now) Temporal's visibility.

    Args:
        client: None when Temporal is unreachable: the report says the live stage counts are missing.
        since: start of the period (a date is 00:00 UTC); None: all time.
        cadence: only this cadence's leads and emails; unknown names are refused (ReportError).
        cadence_steps: each cadence's step ids in order (`cadence_steps_from`), for the step table's order.
        now: end of the period (the report's time).
    """
    generated = as_utc(now) if now else datetime.now(UTC)
    start = period_start(since)
    if start is not None and start > generated:
        raise ReportError(f"the period starts {start:%Y-%m-%d}, after the report's time {generated:%Y-%m-%d %H:%M} UTC")
    f = _Filters(start, cadence)
    async with sessionmaker() as session:
        if cadence is not None:
            known = await known_cadences(session, cadence_steps)
            if cadence not in known:
                listed = ", ".join(sorted(known)) or "none yet"
                raise ReportError(f"unknown cadence {cadence!r}; known cadences: {listed}")
        data = ReportData(generated_at=generated, since=start, cadence=cadence)
        await _funnel(session, f, data)
        data.steps = await _steps(session, f, cadence_steps or {})
        data.sales = await _sales(session, f)
        data.suppressions = await _suppressions(session, f)
    data.live_stages, data.live_note = await live_stage_counts(client, cadence)
    return data


async def _funnel(session: AsyncSession, f: _Filters, data: ReportData) -> None:
    leads = (await session.execute(select(Lead.id, Lead.email, Lead.created_at).where(f.leads(Lead.id)))).all()
    cohort = {lead_id for lead_id, _, created in leads if f.within(created)}

    async def last_by_lead(lead: Any, when: Any, *where: Any) -> dict[int, datetime]:
        """Each lead's latest time of something: it happened in the period if that is in the period."""
        rows = await session.execute(select(lead, func.max(when)).where(*where, f.leads(lead)).group_by(lead))
        return {int(lead_id): as_utc(at) for lead_id, at in rows.all() if at is not None}

    email_time = func.coalesce(Outbox.sent_at, Outbox.created_at)
    emailed = await last_by_lead(Outbox.lead_id, email_time, Outbox.status.in_(SENT), _marketing(Outbox.cadence))
    engaged = await last_by_lead(
        EngagementEvent.lead_id,
        EngagementEvent.occurred_at,
        EngagementEvent.human.is_(True),
        EngagementEvent.kind.in_(ENGAGING),
    )
    handovers = await last_by_lead(Assignment.lead_id, Assignment.assigned_at)
    decisions = (
        await session.execute(
            select(DispositionRow.lead_id, DispositionRow.action, DispositionRow.outcome, DispositionRow.created_at)
            .where(f.leads(DispositionRow.lead_id))
        )
    ).all()  # fmt: skip
    converted: dict[int, list[datetime]] = defaultdict(list)
    rejected: dict[int, list[datetime]] = defaultdict(list)
    recycled: dict[int, list[datetime]] = defaultdict(list)
    dormant: dict[int, list[datetime]] = defaultdict(list)
    for lead_id, action, outcome, created in decisions:
        at = as_utc(created)
        if action == "accept":
            converted[lead_id].append(at)
            continue
        rejected[lead_id].append(at)
        kind = outcome_kind(outcome)
        if kind == "recycled":
            recycled[lead_id].append(at)
        elif kind == "dormant":
            dormant[lead_id].append(at)
    for lead_id, at in await _unanswered_big_bangs(session, f):
        dormant[lead_id].append(at)
    listed = (await session.execute(select(Suppression.email_hash, Suppression.created_at))).all()
    hashes = {h: as_utc(at) for h, at in listed}
    suppressed: dict[int, list[datetime]] = {}
    for lead_id, email, _ in leads:
        when = hashes.get(email_hash(email))
        if when is not None:
            suppressed[lead_id] = [when]

    reached_sales = cohort & set(handovers)
    funnel_sets = {
        "enrolled": cohort,
        "engaged": (cohort & set(engaged)) | reached_sales,
        "escalated": reached_sales,
        "converted": cohort & set(converted),
    }
    top = len(cohort)
    previous: int | None = None
    for name in FUNNEL:
        count = len(funnel_sets[name])
        rate = None if previous is None else ratio(count, previous)
        data.funnel.append(FunnelStage(stage=name, leads=count, rate=rate, of_top=ratio(count, top)))
        previous = count
    outcome_sets = {"rejected": rejected, "recycled": recycled, "dormant": dormant, "suppressed": suppressed}
    data.outcomes = {name: len(cohort & set(outcome_sets[name])) for name in OUTCOMES}

    def in_period(times: Mapping[int, Iterable[datetime]]) -> int:
        return sum(1 for ats in times.values() if any(f.within(at) for at in ats))

    def single(times: Mapping[int, datetime]) -> dict[int, list[datetime]]:
        return {lead: [at] for lead, at in times.items()}

    data.activity = {
        "enrolled": len(cohort),
        "emailed": in_period(single(emailed)),
        "engaged": in_period(single(engaged)),
        "escalated": in_period(single(handovers)),
        "converted": in_period(converted),
        **{name: in_period(outcome_sets[name]) for name in OUTCOMES},
    }


async def _unanswered_big_bangs(session: AsyncSession, f: _Filters) -> list[tuple[int, datetime]]:
    """Big-bang emails with no human open or click of the lead after them, before its next cycle."""
    email_time = func.coalesce(Outbox.sent_at, Outbox.created_at)
    big_bang_leads = select(Outbox.lead_id).where(Outbox.step_id == BIG_BANG_STEP, _marketing(Outbox.cadence))
    bangs = (
        await session.execute(
            select(Outbox.lead_id, Outbox.cycle, email_time)
            .where(Outbox.step_id == BIG_BANG_STEP, Outbox.status.in_(SENT), _marketing(Outbox.cadence),
                   f.leads(Outbox.lead_id))
        )
    ).all()  # fmt: skip
    if not bangs:
        return []
    cycles: dict[int, dict[int, datetime]] = defaultdict(dict)
    for lead_id, cycle, started in (
        await session.execute(
            select(Outbox.lead_id, Outbox.cycle, func.min(email_time))
            .where(Outbox.lead_id.in_(big_bang_leads), _marketing(Outbox.cadence))
            .group_by(Outbox.lead_id, Outbox.cycle)
        )
    ).all():  # fmt: skip
        cycles[lead_id][cycle] = as_utc(started)
    answers: dict[int, list[datetime]] = defaultdict(list)
    for lead_id, at in (
        await session.execute(
            select(EngagementEvent.lead_id, EngagementEvent.occurred_at).where(
                EngagementEvent.lead_id.in_(big_bang_leads),
                EngagementEvent.human.is_(True),
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


def outcome_kind(outcome: str | None) -> str:
    """What a rejection led to, from the outcome the workflow recorded."""
    text = (outcome or "").strip().lower()
    return next((kind for prefix, kind in OUTCOME_PREFIXES if text.startswith(prefix)), "other")


async def _steps(session: AsyncSession, f: _Filters, order: Mapping[str, Sequence[str]]) -> list[StepStats]:
    email_time = func.coalesce(Outbox.sent_at, Outbox.created_at)
    where = [_marketing(Outbox.cadence), f.period(email_time), f.leads(Outbox.lead_id)]
    if f.cadence is not None:
        where.append(Outbox.cadence == f.cadence)
    stats: dict[tuple[str, str], StepStats] = {}
    first: dict[tuple[str, str], datetime] = {}
    rows = await session.execute(
        select(Outbox.cadence, Outbox.step_id, Outbox.status, func.count(), func.min(email_time))
        .where(*where)
        .group_by(Outbox.cadence, Outbox.step_id, Outbox.status)
    )
    for cadence, step, status, count, earliest in rows.all():
        key = (cadence, step)
        item = stats.setdefault(key, StepStats(cadence=cadence, step=step))
        if status in SENT:
            item.sends += count
        elif status == "bounced":
            item.bounces += count
        if earliest is not None:
            first[key] = min(first.get(key, as_utc(earliest)), as_utc(earliest))
    e = EngagementEvent
    human_engaged = and_(e.human.is_(True), e.kind.in_(ENGAGING))
    events = await session.execute(
        select(
            Outbox.cadence,
            Outbox.step_id,
            func.count(distinct(case((human_engaged, Outbox.key)))),
            func.count(distinct(case((and_(e.human.is_(True), e.kind == "click"), Outbox.key)))),
            func.count(distinct(case((e.kind == "unsubscribe", Outbox.key)))),
            func.sum(case((e.kind == "open", 1), else_=0)),
            func.sum(case((and_(e.kind == "open", e.human.is_(False)), 1), else_=0)),
            func.sum(case((e.kind == "click", 1), else_=0)),
            func.sum(case((and_(e.kind == "click", e.human.is_(False)), 1), else_=0)),
        )
        .join(Outbox, Outbox.key == e.outbox_key)
        .where(*where, Outbox.status.in_(SENT))
        .group_by(Outbox.cadence, Outbox.step_id)
    )
    for cadence, step, opened, clicked, unsubscribed, opens, machine_opens, clicks, machine_clicks in events.all():
        item = stats.setdefault((cadence, step), StepStats(cadence=cadence, step=step))
        item.human_opened, item.human_clicked, item.unsubscribes = int(opened), int(clicked), int(unsubscribed)
        item.open_events, item.machine_opens = int(opens or 0), int(machine_opens or 0)
        item.click_events, item.machine_clicks = int(clicks or 0), int(machine_clicks or 0)
    for item in stats.values():
        item.open_rate = ratio(item.human_opened, item.sends)
        item.click_rate = ratio(item.human_clicked, item.sends)
        item.machine_open_share = ratio(item.machine_opens, item.open_events)
        item.machine_click_share = ratio(item.machine_clicks, item.click_events)
        item.unsubscribe_rate = ratio(item.unsubscribes, item.sends)
        item.bounce_rate = ratio(item.bounces, item.sends + item.bounces)

    volume = Counter[str]()
    for (name, _), item in stats.items():
        volume[name] += item.sends + item.bounces

    def position(key: tuple[str, str]) -> tuple[int, str, int, datetime]:
        """The busiest cadence first; its steps in the cadence file's order, or by their first email."""
        steps = list(order.get(key[0], ()))
        index = steps.index(key[1]) if key[1] in steps else len(steps)
        return -volume[key[0]], key[0], index, first.get(key, datetime.max.replace(tzinfo=UTC))

    return [stats[key] for key in sorted(stats, key=position)]


def _hours(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (as_utc(end) - as_utc(start)).total_seconds() / 3600


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


async def _sales(session: AsyncSession, f: _Filters) -> SalesStats:
    reps = {r.id: r for r in (await session.execute(select(Rep))).scalars()}
    teams = {t.name: t for t in (await session.execute(select(Team))).scalars()}
    handovers = (
        await session.execute(select(Assignment).where(f.leads(Assignment.lead_id), f.period(Assignment.assigned_at)))
    ).scalars().all()  # fmt: skip
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
        stats = by_rep.setdefault(row.rep_id, RepStats(
            rep_id=row.rep_id, rep=rep.name if rep else "(rep removed)", team=rep.team if rep else row.team,
            sla_hours=team.sla_seconds / 3600 if team else None,
        ))  # fmt: skip
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

    decisions = (
        await session.execute(
            select(DispositionRow.lead_id, DispositionRow.action, DispositionRow.reason, DispositionRow.outcome,
                   DispositionRow.created_at).where(f.leads(DispositionRow.lead_id))
        )
    ).all()  # fmt: skip
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
        kind = outcome_kind(outcome)
        reasons[reason or "other"][kind] += 1
        if kind == "recycled":
            recycles[lead_id] = min(at, recycles.get(lead_id, at))
    sales.reasons = sorted(
        (ReasonStats(reason=r, label=REASON_LABELS.get(r, r), rejections=sum(c.values()), outcomes=dict(c))
         for r, c in reasons.items()),
        key=lambda s: (-s.rejections, s.reason),
    )  # fmt: skip
    sales.recycled = len(recycles)
    sales.recycled_converted = sum(1 for lead, at in recycles.items() if any(a > at for a in accepts[lead]))
    sales.recycled_converted_rate = ratio(sales.recycled_converted, sales.recycled)
    return sales


async def _suppressions(session: AsyncSession, f: _Filters) -> dict[str, int]:
    """Suppressions in the period by reason; with --cadence, only those of leads in scope."""
    rows = (
        await session.execute(select(Suppression.email_hash, Suppression.reason, Suppression.created_at))
    ).all()  # fmt: skip
    rows = [r for r in rows if f.within(r[2])]
    if f.cadence is not None:
        emails = (await session.execute(select(Lead.email).where(f.leads(Lead.id)))).scalars()
        scoped = {email_hash(e) for e in emails}
        rows = [r for r in rows if r[0] in scoped]
    counts = Counter(str(r[1]) for r in rows)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def live_stage_counts(client: Client | None, cadence: str | None) -> tuple[dict[str, int] | None, str | None]:
    """Leads by stage now, counted with `leadloop list`'s visibility query; None and why when Temporal is not there."""
    missing = "the live stage counts are missing: "
    if client is None:
        return None, missing + "Temporal was not reachable. Everything else comes from leadloop's database."
    from leadloop.domain.search import visibility_query  # the query `leadloop list` runs: both count alike

    current = " AND (ExecutionStatus = 'Running' OR ExecutionStatus = 'Completed')"

    async def count(stage: str) -> int:
        query = visibility_query(stage, None, None, cadence) + current
        result = await client.count_workflows(query, rpc_timeout=timedelta(seconds=VISIBILITY_TIMEOUT / 2))
        return result.count

    try:
        counts = await asyncio.wait_for(asyncio.gather(*(count(s) for s in STAGES)), VISIBILITY_TIMEOUT)
    except (RPCError, RuntimeError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        return None, missing + f"Temporal's visibility did not answer ({reason}). Everything else comes from " \
            "leadloop's database."  # fmt: skip
    return dict(zip(STAGES, counts, strict=True)), None


# ---------------------------------------------------------------- the planner


def _fraction(value: Any, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise PlanError(f"{what} must be a number, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlanError(f"{what} must be a finite number, not {value}")
        return Fraction(value).limit_denominator(1_000_000)
    return Fraction(value)


def check_plan_inputs(target_conversions: int | None = None, growth_pct: float | None = None) -> None:
    """Refuse a target or growth that means nothing, before anything is gathered."""
    if target_conversions is not None and growth_pct is not None:
        raise PlanError("give a target number of conversions or a growth percentage, not both")
    if target_conversions is not None:
        if isinstance(target_conversions, bool) or not isinstance(target_conversions, int):
            raise PlanError(f"the target must be a whole number of conversions, not {target_conversions!r}")
        if target_conversions < 1:
            raise PlanError(f"the target must be at least 1 conversion, not {target_conversions}")
    if growth_pct is not None:
        growth = _fraction(growth_pct, "the growth percentage")
        if growth < 0:
            raise PlanError(f"the growth must be 0 % or more, not {growth_pct} % (give a smaller target instead)")


def plan_funnel(
    rates: Mapping[str, float | Fraction],
    target_conversions: int | None = None,
    growth_pct: float | None = None,
    current: Mapping[str, int] | None = None,
    *,
    top: str = "enrolled",
) -> FunnelPlan:
    """The backwards funnel: how many leads each stage needs for the target, from the measured stage rates.

    Args:
        rates: stage -> the share of the previous stage's leads that reach it, in funnel order after `top`
            (e.g. {"engaged": 0.4, "escalated": 0.25, "converted": 0.5}); each in (0, 1].
        target_conversions: how many leads should reach the last stage.
        growth_pct: or: the last stage's `current` number, grown by this percentage (rounded up).
        current: the measured number per stage; the plan shows how many more each stage needs.

    Raises:
        PlanError: no rates, a rate of zero or above one, both or neither of target and growth, a target
            below one, negative growth, growth with no measured conversions to grow from.
    """
    if not rates:
        raise PlanError("no stage rates to plan with")
    check_plan_inputs(target_conversions, growth_pct)
    if target_conversions is None and growth_pct is None:
        raise PlanError("give a target number of conversions or a growth percentage")
    stages = [top, *rates]
    if len(set(stages)) != len(stages):
        raise PlanError(f"each stage once: {', '.join(stages)}")
    exact: dict[str, Fraction] = {}
    for stage, value in rates.items():
        rate = _fraction(value, f"the rate into {stage!r}")
        if rate <= 0:
            raise PlanError(
                f"the rate into {stage!r} is {float(rate):g}: no lead passes that stage, so no number of leads "
                "reaches the target (measure a period where some do)"
            )
        if rate > 1:
            raise PlanError(f"the rate into {stage!r} is {float(rate):g}: a rate is a share of the previous stage, "
                            "at most 1")  # fmt: skip
        exact[stage] = rate
    for stage, count in (current or {}).items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PlanError(f"the measured number of {stage!r} must be a whole number ≥ 0, not {count!r}")
    last = stages[-1]
    if target_conversions is not None:
        target = target_conversions
    else:
        base = (current or {}).get(last, 0)
        if not base:
            raise PlanError(f"a growth percentage needs {last} leads measured in the period to grow from, and "
                            "there are none: give a target number of conversions instead")  # fmt: skip
        target = math.ceil(base * (1 + Fraction(str(growth_pct)) / 100))
    needed = {last: target}
    for later, earlier in zip(reversed(stages[1:]), reversed(stages[:-1]), strict=True):
        needed[earlier] = math.ceil(needed[later] / exact[later])
    plan = []
    for stage in stages:
        measured = (current or {}).get(stage)
        plan.append(PlanStage(
            stage=stage, rate=float(exact[stage]) if stage in exact else None, needed=needed[stage],
            measured=measured, more_needed=None if measured is None else max(0, needed[stage] - measured),
        ))  # fmt: skip
    return FunnelPlan(target_conversions=target, growth_pct=growth_pct, stages=plan)


def measured_rates(funnel: Sequence[FunnelStage]) -> dict[str, Fraction]:
    """The cohort funnel's stage rates as exact fractions of its counts (zero after an empty stage)."""
    return {
        stage.stage: Fraction(stage.leads, previous.leads) if previous.leads else Fraction(0)
        for previous, stage in itertools.pairwise(funnel)
    }


def with_plan(data: ReportData, target_conversions: int | None = None, growth_pct: float | None = None) -> ReportData:
    """The report with its funnel plan, or a note on why the measured funnel cannot be planned from.

    Without a target or a growth the plan repeats the measured conversions (growth 0 %).
    """
    check_plan_inputs(target_conversions, growth_pct)
    if target_conversions is None and growth_pct is None:
        growth_pct = 0.0
    counts = {s.stage: s.leads for s in data.funnel}
    try:
        data.plan = plan_funnel(measured_rates(data.funnel), target_conversions, growth_pct, counts,
                                top=data.funnel[0].stage)  # fmt: skip
        data.plan_note = None
    except PlanError as exc:
        data.plan, data.plan_note = None, f"no plan: {exc}"
    return data


# ---------------------------------------------------------------- charts

INK = "#1f2933"
MUTED = "#7b8794"
COLOURS = {"blue": "#2f6fb3", "teal": "#1c9c8c", "amber": "#d98c1f", "red": "#c8423b", "grey": "#9aa5b1",
           "violet": "#7658b8", "green": "#3f8f3f"}  # fmt: skip
WIDE, HALF = 10.0, 6.2  # inches at 100 dpi: a chart across the page, a chart beside its table


def _figure(width: float, height: float) -> "Figure":
    """A figure drawn by Agg without pyplot: nothing global keeps it, so it is freed with its last reference.
    (matplotlib is imported here, when a chart is drawn: it takes a second or two to import.)"""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Every label, title, tick, legend and annotation is plain text: names come from data, and matplotlib would
    # read `$...$` as mathtext (a rep called `Marta $$ López` ended the report with a ParseException) or, with
    # usetex in someone's matplotlibrc, hand them to LaTeX. Every chart starts here, and text (tick labels made
    # while drawing too) reads these settings when it is made.
    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["text.usetex"] = False
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _whole_numbers(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _png(fig: "Figure") -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    fig.clear()
    return buffer.getvalue()


def _style(ax: Any, title: str = "") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=9)
    if title:
        ax.set_title(title, fontsize=11, loc="left", color=INK)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, fontsize=11, transform=ax.transAxes)
    ax.set_axis_off()


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:.1f}{unit}"


def chart_stages_now(stages: Mapping[str, int]) -> bytes:
    shown = [s for s in stages if stages[s]]
    fig = _figure(HALF, max(2.2, 0.36 * len(shown) + 1.0))
    ax = fig.add_subplot()
    if not shown:
        _empty(ax, "no lead in Temporal yet")
        return _png(fig)
    names = shown[::-1]
    colours = [COLOURS["grey"] if n in ENDED else COLOURS["blue"] for n in names]
    bars = ax.barh([n.replace("_", " ") for n in names], [stages[n] for n in names], color=colours, height=0.65)
    ax.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.12)
    _style(ax, "Leads by stage now (grey: ended)")
    return _png(fig)


def chart_funnel(data: ReportData) -> bytes:
    fig = _figure(WIDE, 3.2)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    top = data.funnel[0].leads if data.funnel else 0
    if not top:
        _empty(left, "no new leads in the period")
    else:
        ys = list(range(len(data.funnel)))[::-1]
        values = [s.leads for s in data.funnel]
        colours = [COLOURS["blue"], COLOURS["teal"], COLOURS["amber"], COLOURS["green"]]
        left.barh(ys, values, left=[(top - v) / 2 for v in values], color=colours[: len(values)], height=0.72)
        for y, stage in zip(ys, data.funnel, strict=True):
            rate = "" if stage.rate is None else f" · {_pct(stage.rate)} of previous"
            label = f"{stage.leads} {stage.stage}{rate}"
            if stage.leads > top * 0.6:  # inside a wide bar, beside a narrow one
                left.text(top / 2, y, label, ha="center", va="center", fontsize=9.5, color="white", fontweight="bold")
            else:
                left.text((top + stage.leads) / 2 + top * 0.015, y, label, ha="left", va="center", fontsize=9.5,
                          color=INK, fontweight="bold")  # fmt: skip
        left.set_xlim(0, top)
        left.set_axis_off()
        left.set_title(f"New leads in the period: {_pct(data.funnel[-1].of_top)} converted", fontsize=11, loc="left",
                       color=INK)  # fmt: skip
    names = list(OUTCOMES)[::-1]
    colours = [COLOURS["red"], COLOURS["violet"], COLOURS["teal"], COLOURS["grey"]][::-1]
    bars = right.barh(names, [data.outcomes.get(n, 0) for n in names], color=colours, height=0.65)
    right.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(right.xaxis)
    right.margins(x=0.18)
    _style(right, "…and where they went")
    return _png(fig)


def chart_steps(steps: Sequence[StepStats]) -> bytes:
    fig = _figure(WIDE, 3.8)
    ax = fig.add_subplot()
    if not steps:
        _empty(ax, "no cadence emails in the period")
        return _png(fig)
    series = (
        ("human open rate", "open_rate", COLOURS["blue"]),
        ("human click rate", "click_rate", COLOURS["teal"]),
        ("machine share of opens", "machine_open_share", COLOURS["grey"]),
        ("machine share of clicks", "machine_click_share", COLOURS["amber"]),
    )
    width = 0.8 / len(series)
    for i, (label, field, colour) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(steps))]
        ax.bar(xs, [(getattr(s, field) or 0) * 100 for s in steps], width=width, label=label, color=colour)
    ax.set_xticks(range(len(steps)), [f"{s.cadence}\n{s.step}\n{s.sends} sent" for s in steps], fontsize=8.5)
    ax.set_ylabel("% of sends / of events", color=INK, fontsize=9)
    ax.set_ylim(0, 100)
    fig.legend(fontsize=9, ncols=4, loc="outside upper center", frameon=False)
    _style(ax)
    return _png(fig)


def chart_reps(sales: SalesStats) -> bytes:
    fig = _figure(HALF, max(2.4, 0.42 * len(sales.reps) + 1.3))
    ax = fig.add_subplot()
    if not sales.reps:
        _empty(ax, "no hand-overs to reps in the period")
        return _png(fig)
    reps = list(reversed(sales.reps))
    labels = [r.rep for r in reps]
    left = [0] * len(reps)
    for label, field, colour in (("accepted", "accepted", COLOURS["green"]), ("rejected", "rejected", COLOURS["red"]),
                                 ("lapsed", "lapsed", COLOURS["amber"]), ("open", "open", COLOURS["blue"]),
                                 ("closed", "closed", COLOURS["grey"])):  # fmt: skip
        values = [getattr(r, field) for r in reps]
        ax.barh(labels, values, left=left, label=label, color=colour, height=0.65)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total}", va="center", fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.08)
    fig.legend(fontsize=8.5, ncols=5, loc="outside lower center", frameon=False)
    _style(ax, "Hand-overs per rep")
    return _png(fig)


def chart_reasons(sales: SalesStats) -> bytes:
    fig = _figure(HALF, max(2.2, 0.34 * len(sales.reasons) + 1.0))
    ax = fig.add_subplot()
    if not sales.reasons:
        _empty(ax, "no rejections in the period")
        return _png(fig)
    reasons = list(reversed(sales.reasons))
    bars = ax.barh([r.label for r in reasons], [r.rejections for r in reasons], color=COLOURS["red"], height=0.65)
    ax.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.1)
    _style(ax, "Why reps rejected leads")
    return _png(fig)


def chart_planner(plan: FunnelPlan) -> bytes:
    fig = _figure(HALF, 3.2)
    ax = fig.add_subplot()
    xs = range(len(plan.stages))
    measured = ax.bar([x - 0.2 for x in xs], [s.measured or 0 for s in plan.stages], width=0.4,
                      label="measured in the period", color=COLOURS["grey"])  # fmt: skip
    needed = ax.bar([x + 0.2 for x in xs], [s.needed for s in plan.stages], width=0.4, label="needed for the target",
                    color=COLOURS["blue"])  # fmt: skip
    ax.bar_label(measured, padding=2, fontsize=9, color=INK)
    ax.bar_label(needed, padding=2, fontsize=9, color=INK)
    ax.set_xticks(list(xs), [s.stage for s in plan.stages])
    ax.margins(y=0.18)
    ax.legend(fontsize=8.5, frameon=False)
    _style(ax, f"Needed for {plan.target_conversions} conversions")
    return _png(fig)


# ---------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2933;margin:0;
background:#eef1f5;line-height:1.4;font-size:14px}
main{max-width:1100px;margin:0 auto;padding:20px 28px 36px;background:#fff}
h1{margin:0 0 2px;font-size:24px}h2{margin:30px 0 8px;border-bottom:2px solid #e4e7eb;padding-bottom:3px;font-size:20px}
h3{margin:16px 0 6px;font-size:15px}.meta{color:#52606d;margin:0 0 12px}
.note{background:#fff8e1;border-left:4px solid #d98c1f;padding:8px 12px;margin:10px 0}
.cards{display:grid;grid-template-columns:repeat(8,1fr);gap:8px;margin:12px 0}
.card{border:1px solid #e4e7eb;border-radius:6px;padding:8px 10px}
.card b{display:block;font-size:21px}.card span{color:#52606d;font-size:12px}
.pair{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:20px;align-items:start}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 9px;text-align:left;vertical-align:top}
thead th{background:#f0f4f8;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:6px 0}figure img{max-width:100%;height:auto;border:1px solid #e4e7eb}
figcaption{color:#7b8794;font-size:11px}
dl.defs{font-size:12px;color:#3e4c59;background:#f9fafb;border:1px solid #e4e7eb;padding:6px 12px;margin:8px 0;
columns:2;column-gap:28px}
dl.defs div{break-inside:avoid;margin:3px 0}dl.defs dt{font-weight:600;display:inline}
dl.defs dt::after{content:": "}dl.defs dd{display:inline;margin:0}
nav a{margin-right:14px}footer{margin-top:28px;color:#7b8794;font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(head: Sequence[str], rows: Iterable[Sequence[object]], *, numeric_from: int = 1, attr: str = "") -> str:
    """A table; columns from `numeric_from` on are right-aligned. With `attr`, each row's first item is not a cell
    but the row's key: `<tr attr="key">`."""
    heads = "".join(f'<th class="num">{_e(h)}</th>' if i >= numeric_from else f"<th>{_e(h)}</th>"
                    for i, h in enumerate(head))  # fmt: skip
    body = []
    for row in rows:
        key, cells = (row[0], row[1:]) if attr else (None, row)
        tds = "".join(f'<td class="num">{_e(c)}</td>' if i >= numeric_from else f"<td>{_e(c)}</td>"
                      for i, c in enumerate(cells))  # fmt: skip
        body.append(f'<tr {attr}="{_e(key)}">{tds}</tr>' if attr else f"<tr>{tds}</tr>")
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _defs(section: str) -> str:
    items = "".join(f"<div><dt>{_e(term)}</dt><dd>{_e(text)}</dd></div>" for term, text in DEFINITIONS[section].items())
    return f'<dl class="defs">{items}</dl>'


def _figure_html(charts: Mapping[str, bytes], name: str, alt: str, png_dir: Path) -> str:
    if name not in charts:
        return ""
    data = base64.b64encode(charts[name]).decode("ascii")
    return (f'<figure><img id="chart-{name}" src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(png_dir.name)}/{name}.png</figcaption></figure>")  # fmt: skip


def _pair(left: str, right: str) -> str:
    return f'<div class="pair"><div>{left}</div><div>{right}</div></div>'


def _row(*parts: str) -> str:
    return '<div class="row">' + "".join(f"<div>{p}</div>" for p in parts if p) + "</div>"


def draw_charts(data: ReportData) -> dict[str, bytes]:
    """Every chart the report shows, as PNG bytes by name."""
    charts = {
        "funnel": chart_funnel(data),
        "steps": chart_steps(data.steps),
        "reps": chart_reps(data.sales),
        "reasons": chart_reasons(data.sales),
    }
    if data.live_stages is not None:
        charts["stages_now"] = chart_stages_now(data.live_stages)
    if data.plan is not None:
        charts["planner"] = chart_planner(data.plan)
    return charts


def render_html(data: ReportData, png_dir: Path) -> str:
    """The report as one self-contained HTML page (charts inline as data URIs, no external resource); each
    chart is also written to `png_dir/<name>.png` (charts of an earlier report that this one has not are removed)."""
    charts = draw_charts(data)
    png_dir.mkdir(parents=True, exist_ok=True)
    for name in CHARTS:
        path = png_dir / f"{name}.png"
        if name in charts:
            partial = path.with_name(path.name + ".part")
            partial.write_bytes(charts[name])
            partial.replace(path)
        else:
            path.unlink(missing_ok=True)
    since = f"{data.since:%Y-%m-%d %H:%M} UTC" if data.since else "the beginning"
    scope = f"cadence {data.cadence}" if data.cadence else "all cadences"
    funnel = {s.stage: s for s in data.funnel}
    empty = FunnelStage(stage="", leads=0)
    sends = sum(s.sends for s in data.steps)
    opened = sum(s.human_opened for s in data.steps)
    cards = [
        (funnel.get("enrolled", empty).leads, "new leads"),
        (funnel.get("engaged", empty).leads, "engaged"),
        (funnel.get("escalated", empty).leads, "escalated"),
        (funnel.get("converted", empty).leads, "converted"),
        (_pct(funnel.get("converted", empty).of_top), "of new leads converted"),
        (sends, "emails sent"),
        (_pct(ratio(opened, sends)), "human open rate"),
        (data.sales.lapsed, "SLA lapses"),
    ]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>leadloop report · {_e(scope)} · since {_e(since)}</title><style>{CSS}</style></head><body><main>",
        "<h1>leadloop report</h1>",
        f'<p class="meta">Period: {_e(since)} → {data.generated_at:%Y-%m-%d %H:%M} UTC · {_e(scope)}</p>',
        *(f'<p class="note" id="note-live">Note: {_e(n)}</p>' for n in (data.live_note,) if n),
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(label)}</span></div>' for v, label in cards)
        + "</div>",
        '<nav><a href="#funnel">1. Funnel</a><a href="#steps">2. Cadence steps</a><a href="#sales">3. Sales</a>'
        '<a href="#planner">4. Funnel planner</a></nav>',
        _defs("period"),
        *_funnel_html(data, charts, png_dir),
        *_steps_html(data, charts, png_dir),
        *_sales_html(data, charts, png_dir),
        *_planner_html(data, charts, png_dir),
        f"<footer>Made by <code>leadloop report</code>; the charts are also in {_e(png_dir.name)}/ as PNG files."
        "</footer></main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _funnel_html(data: ReportData, charts: Mapping[str, bytes], png_dir: Path) -> list[str]:
    parts = ['<h2 id="funnel">1. Funnel</h2>', "<h3>Leads by stage now</h3>"]
    if data.live_stages is None:
        parts.append(f'<p class="note">{_e(data.live_note or "the live stage counts are missing")}</p>')
    else:
        rows = [(s, s.replace("_", " ") + (" (ended)" if s in ENDED else ""), n) for s, n in data.live_stages.items()]
        rows.append(("total", "total", sum(data.live_stages.values())))
        parts.append(_pair(_figure_html(charts, "stages_now", "leads by stage now", png_dir),
                           _table(("stage", "leads"), rows, attr="data-live")))  # fmt: skip
    top = data.funnel[0].leads if data.funnel else 0
    parts += [
        _defs("live"),
        "<h3>New leads in the period and how far they got</h3>",
        _figure_html(charts, "funnel", "the funnel of the period's new leads", png_dir),
        _row(
            _table(("stage", "leads", "of previous stage", "of enrolled"),
                   [(s.stage, s.stage, s.leads, _pct(s.rate), _pct(s.of_top)) for s in data.funnel],
                   attr="data-stage"),
            _table(("where they went", "leads", "of enrolled"),
                   [(n, n, data.outcomes.get(n, 0), _pct(ratio(data.outcomes.get(n, 0), top))) for n in OUTCOMES],
                   attr="data-outcome"),
            _table(("activity in the period: leads that …", "leads"),
                   [(n, n, data.activity.get(n, 0)) for n in ACTIVITY], attr="data-activity"),
        ),
        _defs("funnel"),
    ]  # fmt: skip
    return parts


def _steps_html(data: ReportData, charts: Mapping[str, bytes], png_dir: Path) -> list[str]:
    rows = [
        (f"{s.cadence}/{s.step}", s.cadence, s.step, s.sends, f"{_pct(s.open_rate)} ({s.human_opened})",
         f"{_pct(s.click_rate)} ({s.human_clicked})", f"{_pct(s.machine_open_share)} ({s.machine_opens} of "
         f"{s.open_events})", f"{_pct(s.machine_click_share)} ({s.machine_clicks} of {s.click_events})",
         f"{s.unsubscribes} ({_pct(s.unsubscribe_rate)})", f"{s.bounces} ({_pct(s.bounce_rate)})")
        for s in data.steps
    ]  # fmt: skip
    head = ("cadence", "step", "sends", "human open rate", "human click rate", "machine opens", "machine clicks",
            "unsubscribes", "bounces")  # fmt: skip
    return [
        '<h2 id="steps">2. Cadence step performance</h2>',
        _figure_html(charts, "steps", "open and click rates per cadence step", png_dir),
        _table(head, rows, numeric_from=2, attr="data-step") if rows else "<p>No cadence emails in the period.</p>",
        _defs("steps"),
    ]


def _sales_html(data: ReportData, charts: Mapping[str, bytes], png_dir: Path) -> list[str]:
    s = data.sales
    reps = [
        (r.rep_id if r.rep_id is not None else "removed", r.rep, r.team or "–", _num(r.sla_hours, " h"), r.handovers,
         r.accepted, r.rejected, r.lapsed, r.open, r.closed, _num(r.median_hours_to_decide, " h"),
         _num(r.mean_hours_to_decide, " h"))
        for r in s.reps
    ]  # fmt: skip
    head = ("rep", "team", "SLA (business)", "hand-overs", "accepted", "rejected", "lapsed", "open", "closed",
            "median time to decide", "mean time to decide")  # fmt: skip
    summary = [
        ("handovers", "hand-overs", s.handovers), ("waited", "waited for a rep", s.waited),
        ("accepted", "accepted", s.accepted), ("rejected", "rejected", s.rejected),
        ("lapsed", "SLA lapses", s.lapsed), ("lapse_rate", "lapse rate", _pct(s.lapse_rate)),
        ("to_accept", "median time to accept", _num(s.median_hours_to_accept, " h")),
        ("to_reject", "median time to reject", _num(s.median_hours_to_reject, " h")),
        ("recycled", "recycled by a rejection", s.recycled),
        ("recycled_converted", "… of them converted later",
         f"{s.recycled_converted} of {s.recycled} ({_pct(s.recycled_converted_rate)})"),
    ]  # fmt: skip
    kinds = sorted({k for r in s.reasons for k in r.outcomes})
    reasons = [(r.reason, r.label, r.rejections, *(r.outcomes.get(k, 0) for k in kinds)) for r in s.reasons]
    reasons_table = (
        _table(("reason", "rejections", *(f"→ {k}" for k in kinds)), reasons, attr="data-reason")
        if reasons
        else "<p>No rejections in the period.</p>"
    )
    supp = [(reason, reason, n) for reason, n in data.suppressions.items()]
    return [
        '<h2 id="sales">3. Sales</h2>',
        _pair(_figure_html(charts, "reps", "hand-overs per rep", png_dir),
              _table(("sales in the period", ""), summary, attr="data-sales")),
        _table(head, reps, numeric_from=3, attr="data-rep") if reps else "<p>No hand-overs in the period.</p>",
        "<h3>Rejection reasons</h3>",
        _pair(_figure_html(charts, "reasons", "rejection reasons", png_dir),
              "<h3>Suppressions in the period</h3>"
              + (_table(("reason", "addresses"), supp, attr="data-suppression") if supp else "<p>None.</p>")),
        reasons_table,
        _defs("sales"),
    ]  # fmt: skip


def _planner_html(data: ReportData, charts: Mapping[str, bytes], png_dir: Path) -> list[str]:
    parts = ['<h2 id="planner">4. Funnel planner</h2>']
    plan = data.plan
    if plan is None:
        parts.append(f'<p class="note" id="note-plan">{_e(data.plan_note or "no plan")}</p>')
    else:
        if plan.growth_pct is None:
            how = "the target given"
        elif plan.growth_pct:
            how = f"the measured conversions grown by {plan.growth_pct:g}%"
        else:
            how = "as many conversions as measured"
        table = _table(
            ("stage", "measured rate into it", "needed", "measured in the period", "more needed"),
            [(p.stage, p.stage, _pct(p.rate), p.needed, "–" if p.measured is None else p.measured,
              "–" if p.more_needed is None else p.more_needed) for p in plan.stages],
            attr="data-plan",
        )  # fmt: skip
        target = f"<p>Target: <b>{plan.target_conversions} conversions</b> ({_e(how)}).</p>"
        parts.append(_pair(_figure_html(charts, "planner", "the backwards funnel", png_dir), target + table))
    parts.append(_defs("planner"))
    return parts
