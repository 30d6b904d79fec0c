"""The report's cadence step table from leadloop's database: each step's sends and what readers (and machines) did."""

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.times import as_utc
from leadloop.infra.db import EngagementEvent, Outbox
from leadloop.reporting.inbound import finish, gather_came_back
from leadloop.reporting.models import StepStats, ratio
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
    """Each step's sent emails opened and clicked by people, unsubscribed through, and the machines' events."""
    e = EngagementEvent
    human_engaged = and_(e.human.is_(True), e.kind.in_(ENGAGING))
    events = await session.execute(
        select(
            Outbox.cadence,
            Outbox.step_id,
            func.count(distinct(case((human_engaged, Outbox.key)))),
            func.count(distinct(case((and_(e.human.is_(True), e.kind == "click"), Outbox.key)))),
            func.count(distinct(case((e.kind == "unsubscribe", Outbox.key)))),
            # a confirmation (of a click, or the open it proves) is no hit of its own
            func.sum(case((and_(e.kind == "open", e.confirms.is_(None)), 1), else_=0)),
            func.sum(case((and_(e.kind == "open", e.human.is_(False)), 1), else_=0)),
            func.sum(case((and_(e.kind == "click", e.confirms.is_(None)), 1), else_=0)),
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
