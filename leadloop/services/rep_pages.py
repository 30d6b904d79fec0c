"""What a rep's links and a CRM's decisions read: the rep behind an address, the hand-over behind a link."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.infra.db import Assignment, Lead, Rep


@dataclass(frozen=True)
class Handover:
    """A hand-over of a lead to a rep, and its status as the rep sees it (`superseded` included)."""

    assignment: Assignment
    lead: Lead
    status: str


async def rep_by_email(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> Rep | None:
    """The rep with this address (any case, surrounding spaces ignored)."""
    async with sessionmaker() as session:
        found = await session.execute(select(Rep).where(func.lower(Rep.email) == email.strip().lower()))
        return found.scalar_one_or_none()


async def rep_by_id(sessionmaker: async_sessionmaker[AsyncSession], rep_id: int | None) -> Rep | None:
    if not rep_id:
        return None
    async with sessionmaker() as session:
        return await session.get(Rep, rep_id)


async def find_handover(sessionmaker: async_sessionmaker[AsyncSession], key: str, lead_id: int) -> Handover | None:
    """The hand-over `key` of the lead, or None when it is gone, another lead's, or the lead is erased."""
    async with sessionmaker() as session:
        assignment = await session.get(Assignment, key)
        lead = await session.get(Lead, lead_id)
        newest = (
            await session.execute(
                select(Assignment.key)
                .where(Assignment.lead_id == lead_id)
                .order_by(Assignment.cycle.desc(), Assignment.assigned_at.desc(), Assignment.key.desc())
                .limit(1)
            )
        ).scalar()
    if assignment is None or lead is None or assignment.lead_id != lead_id or lead.erased_at:
        return None
    # "assigned" but not the newest: the lead went on to another hand-over before this row was closed
    status = "superseded" if assignment.status == "assigned" and newest != assignment.key else assignment.status
    return Handover(assignment, lead, status)
