"""The report's cadence step table from leadloop's database: each step's sends and what readers (and machines) did."""

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Outbox
from leadloop.reporting.inbound import finish, gather_came_back
from leadloop.reporting.models import UNCLASSIFIED, StepStats, ratio
from leadloop.reporting.scope import ENGAGING, SENT, Scope, email_time, marketing

Step = tuple[str, str]  # (cadence, step id)


async def gather_steps(session: AsyncSession, f: Scope, order: Mapping[str, Sequence[str]]) -> list[StepStats]:
    """Each step's emails in the period, the busiest cadence first and its steps in `order` (then by first email)."""
    where = [marketing(Outbox.cadence), f.period(email_time()), f.leads(Outbox.lead_id)]
    if f.cadence is not None:
        where.append(Outbox.cadence == f.cadence)
    stats, first = await _sends(session, where)
    await _engagement(session, where, stats)
    await gather_came_back(session, where, stats)
    for item in stats.values():
        item.open_rate = ratio(item.human_opened, item.sends)
        item.click_rate = ratio(item.human_clicked, item.sends)
        item.raw_open_rate = ratio(item.opened, item.sends)
        item.raw_click_rate = ratio(item.clicked, item.sends)
        item.confirmed_click_rate = ratio(item.confirmed_clicked, item.sends)
        item.machine_open_share = ratio(item.machine_opens, item.open_events)
        item.machine_click_share = ratio(item.machine_clicks, item.click_events)
        item.unsubscribe_rate = ratio(item.unsubscribes, item.sends)
        finish(item)

    volume = Counter[str]()
    for (name, _), item in stats.items():
        volume[name] += item.sends + item.bounces

    def position(key: Step) -> tuple[int, str, int, datetime]:
        """The busiest cadence first; its steps in the cadence file's order, or by their first email."""
        steps = list(order.get(key[0], ()))
        index = steps.index(key[1]) if key[1] in steps else len(steps)
        return -volume[key[0]], key[0], index, first.get(key, datetime.max.replace(tzinfo=UTC))

    return [stats[key] for key in sorted(stats, key=position)]


async def _sends(session: AsyncSession, where: list[Any]) -> tuple[dict[Step, StepStats], dict[Step, datetime]]:
    """Each step's sends and bounces, and when its first email went out."""
    stats: dict[Step, StepStats] = {}
    first: dict[Step, datetime] = {}
    rows = await session.execute(
        select(Outbox.cadence, Outbox.step_id, Outbox.status, func.count(), func.min(email_time()))
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
    return stats, first


async def _engagement(session: AsyncSession, where: list[Any], stats: dict[Step, StepStats]) -> None:
    """Each step's sent emails opened and clicked (by people, by anything, clicks confirmed by the landing page),
    unsubscribed through, and its open and click events by who made them."""
    e = EngagementEvent
    # a click is confirmed when the beacon's word was written on it, or a confirmation row names it
    named = select(e.confirms.label("click_id")).where(e.kind == "click", e.confirms.is_not(None))
    confirmations = named.group_by(e.confirms).subquery()
    confirmed = and_(e.kind == "click", or_(e.confirmed_at.is_not(None), confirmations.c.click_id.is_not(None)))
    # a row that confirms a click is no hit of its own: the click is, and it proves its email read by a person
    hit = and_(e.confirms.is_(None), e.kind.in_(ENGAGING))
    proof = and_(e.confirms.is_not(None), e.kind.in_(ENGAGING))
    person = or_(e.human.is_(True), confirmed)
    base = (
        select()
        .select_from(e)
        .join(Outbox, Outbox.key == e.outbox_key)
        .outerjoin(confirmations, confirmations.c.click_id == e.id)
        .where(*where, Outbox.status.in_(SENT))
    )

    def emails(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count(distinct(case((condition, Outbox.key))))

    def events(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    by_email = await session.execute(
        base.add_columns(
            Outbox.cadence,
            Outbox.step_id,
            emails(or_(and_(hit, person), proof)),
            emails(and_(hit, e.kind == "click", person)),
            emails(and_(hit, confirmed)),
            emails(hit),
            emails(and_(hit, e.kind == "click")),
            emails(e.kind == "unsubscribe"),
        ).group_by(Outbox.cadence, Outbox.step_id)
    )
    for cadence, step, *counts in by_email.all():
        item = stats.setdefault((cadence, step), StepStats(cadence=cadence, step=step))
        (
            item.human_opened,
            item.human_clicked,
            item.confirmed_clicked,
            item.opened,
            item.clicked,
            item.unsubscribes,
        ) = (int(n) for n in counts)

    by_verdict = await session.execute(
        base.add_columns(
            Outbox.cadence,
            Outbox.step_id,
            e.kind,
            e.machine_class,
            func.count(),
            events(confirmed),
            events(and_(e.human.is_(True), not_(confirmed))),
        )
        .where(hit)
        .group_by(Outbox.cadence, Outbox.step_id, e.kind, e.machine_class)
    )
    for cadence, step, kind, machine_class, total, by_beacon, by_people in by_verdict.all():
        item = stats.setdefault((cadence, step), StepStats(cadence=cadence, step=step))
        machines = int(total) - int(by_beacon) - int(by_people)
        if kind == "click":
            item.click_events += int(total)
            item.confirmed_clicks += int(by_beacon)
            item.unconfirmed_clicks += int(by_people)
            classes = item.machine_clicks_by_class
        else:
            item.open_events += int(total)
            item.human_opens += int(by_people)
            classes = item.machine_opens_by_class
        if machines:
            name = machine_class or UNCLASSIFIED
            classes[name] = classes.get(name, 0) + machines
    for item in stats.values():
        item.machine_opens = sum(item.machine_opens_by_class.values())
        item.machine_clicks = sum(item.machine_clicks_by_class.values())
