"""What came back of the report's emails: inbound messages per step and cadence, and the rates providers judge."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.infra.db import InboundMessage, Outbox
from leadloop.reporting.definitions import THRESHOLDS
from leadloop.reporting.models import CadenceCameBack, CameBack, Flag, InboundSummary, StepStats, ratio
from leadloop.reporting.scope import SENT, Scope

#: inbound kinds as the report's counts name them (an unsubscribe request is counted with the suppressions)
COUNTED = {
    "human_reply": "replies",
    "auto_reply": "auto_replies",
    "hard_bounce": "hard_bounces",
    "soft_bounce": "soft_bounces",
    "policy_block": "policy_blocks",
    "complaint": "complaints",
}
#: how a message no rule classified is listed among the unmatched
UNCLASSIFIED = "not_classified"


async def gather_came_back(session: AsyncSession, where: list[Any], stats: dict[tuple[str, str], StepStats]) -> None:
    """Each step's sent emails that got a reply, an auto-reply, a bounce or a complaint (whenever it came);
    `where` selects the step table's emails."""
    m = InboundMessage
    rows = await session.execute(
        select(Outbox.cadence, Outbox.step_id, m.kind, func.count(distinct(Outbox.key)))
        .join(Outbox, Outbox.key == m.outbox_key)
        .where(*where, Outbox.status.in_(SENT), m.kind.in_(list(COUNTED)))
        .group_by(Outbox.cadence, Outbox.step_id, m.kind)
    )
    for cadence, step, kind, emails in rows.all():
        item = stats.setdefault((cadence, step), StepStats(cadence=cadence, step=step))
        setattr(item, COUNTED[kind], int(emails))


def finish(item: CameBack) -> None:
    """The rates of what came back, flagged where they reach a published threshold."""
    item.reply_rate = ratio(item.replies, item.sends)
    item.complaint_rate = ratio(item.complaints, item.sends)
    item.bounce_rate = ratio(item.bounces + item.hard_bounces, item.sends + item.bounces)
    item.flags = flags(complaint_rate=item.complaint_rate, bounce_rate=item.bounce_rate)


def flags(**rates: float | None) -> list[Flag]:
    """The highest threshold each rate reaches (>=), if any."""
    found: list[Flag] = []
    for metric, rate in rates.items():
        if rate is None:
            continue
        reached = [t for t in THRESHOLDS if t.metric == metric and rate >= t.rate]
        if reached:
            top = max(reached, key=lambda t: t.rate)
            found.append(Flag(metric=metric, level=top.level, threshold=top.rate, text=top.text))
    return found


def by_cadence(steps: Sequence[StepStats]) -> tuple[list[CadenceCameBack], CadenceCameBack]:
    """Each cadence's emails added up, in the step table's order, and every cadence together."""
    cadences: dict[str, CadenceCameBack] = {}
    total = CadenceCameBack()
    for step in steps:
        cadences.setdefault(step.cadence, CadenceCameBack(cadence=step.cadence)).add(step)
        total.add(step)
    for item in [*cadences.values(), total]:
        finish(item)
    return list(cadences.values()), total


async def unmatched_in_period(session: AsyncSession, f: Scope) -> dict[str, int]:
    """Messages received in the period that no send was found for, by kind (every cadence: they have none)."""
    m = InboundMessage
    rows = await session.execute(
        select(m.kind, func.count()).where(m.outbox_key.is_(None), f.period(m.received_at)).group_by(m.kind)
    )
    counts = {str(kind or UNCLASSIFIED): int(n) for kind, n in rows.all()}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


async def gather_inbound(session: AsyncSession, f: Scope, steps: Sequence[StepStats]) -> InboundSummary:
    """The report's inbound summary: per cadence and in all (from the step table), and the unmatched."""
    cadences, total = by_cadence(steps)
    return InboundSummary(cadences=cadences, total=total, unmatched=await unmatched_in_period(session, f))
