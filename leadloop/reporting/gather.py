"""Every number of a report, gathered: the database's figures (funnel, steps, what came back, sales) and Temporal's."""

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import distinct, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.cadence import BIG_BANG_STEP, load_cadence
from leadloop.domain.mail import email_hash
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import ScoringConfig
from leadloop.domain.times import as_utc
from leadloop.infra.db import Lead, Outbox, Suppression
from leadloop.reporting.crm import gather_categories, gather_goals
from leadloop.reporting.funnel import gather_funnel
from leadloop.reporting.inbound import gather_inbound
from leadloop.reporting.live import live_stage_counts
from leadloop.reporting.models import ReportData, ReportError
from leadloop.reporting.sales import gather_sales
from leadloop.reporting.scope import Scope, period_start
from leadloop.reporting.steps import gather_steps

RULE_FILES = ("scoring.yaml", "routing.yaml", "recycle.yaml")


async def gather_report(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client | None,
    since: date | datetime | None,
    cadence: str | None,
    *,
    cadence_steps: Mapping[str, Sequence[str]] | None = None,
    now: datetime | None = None,
    scoring: ScoringConfig | None = None,
) -> ReportData:
    """Every number of the report, from leadloop's database and (for the stages now) Temporal's visibility.

    Args:
        client: None when Temporal is unreachable: the report says the live stage counts are missing.
        since: start of the period (a date is 00:00 UTC); None: all time.
        cadence: only this cadence's leads and emails; unknown names are refused (ReportError).
        cadence_steps: each cadence's step ids in order (`cadence_steps_from`), for the step table's order.
        now: end of the period (the report's time).
        scoring: scoring.yaml as it is now, whose categories the leads are counted in (None: no categories).
    """
    generated = as_utc(now) if now else datetime.now(UTC)
    start = period_start(since)
    if start is not None and start > generated:
        raise ReportError(f"the period starts {start:%Y-%m-%d}, after the report's time {generated:%Y-%m-%d %H:%M} UTC")
    f = Scope(start, cadence)
    async with sessionmaker() as session:
        if cadence is not None:
            known = await known_cadences(session, cadence_steps)
            if cadence not in known:
                listed = ", ".join(sorted(known)) or "none yet"
                raise ReportError(f"unknown cadence {cadence!r}; known cadences: {listed}")
        data = ReportData(generated_at=generated, since=start, cadence=cadence)
        await gather_funnel(session, f, data)
        data.steps = await gather_steps(session, f, cadence_steps or {})
        data.inbound = await gather_inbound(session, f, data.steps)
        data.sales = await gather_sales(session, f)
        data.suppressions = await _suppressions(session, f)
        data.goals = await gather_goals(session, f)
        data.categories = await gather_categories(session, f, scoring)
    data.live_stages, data.live_note = await live_stage_counts(client, cadence)
    return data


async def _suppressions(session: AsyncSession, f: Scope) -> dict[str, int]:
    """Suppressions in the period by reason; with --cadence, only those of leads in scope."""
    rows = (await session.execute(select(Suppression.email_hash, Suppression.reason, Suppression.created_at))).all()
    rows = [r for r in rows if f.within(r[2])]
    if f.cadence is not None:
        emails = (await session.execute(select(Lead.email).where(f.leads(Lead.id)))).scalars()
        scoped = {email_hash(e) for e in emails}
        rows = [r for r in rows if r[0] in scoped]
    counts = Counter(str(r[1]) for r in rows)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


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
