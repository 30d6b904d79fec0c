"""One lead from the HTTP intake into the database: refused quietly when suppressed, else stored or merged."""

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.intake import LeadIn
from leadloop.domain.mail import email_hash
from leadloop.infra.db import Lead, Suppression
from leadloop.services.enrollment import DbOutcome, add_tags, external_id_clashes, match_owners, upsert_lead


@dataclass(frozen=True)
class Intake:
    """What became of the lead in the database; `lead` is None when its address is suppressed."""

    lead_id: int
    outcome: DbOutcome
    lead: Lead | None = None
    unknown_owners: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # the lead's whole set now
    problem: str | None = None  # outcome "conflict": its external id is another lead's; nothing was stored


async def store_lead(sessionmaker: async_sessionmaker[AsyncSession], fields: LeadIn, cadence: str) -> Intake:
    """Store (or merge) the lead with its owner matched against the roster and its tags, unless its address is
    suppressed or its external id is another lead's."""
    async with sessionmaker() as session:
        if await session.get(Suppression, email_hash(fields.email)) is not None:
            existing = (await session.execute(select(Lead.id).where(Lead.email == fields.email))).scalar()
            return Intake(lead_id=existing or 0, outcome="suppressed")
        clash = (await external_id_clashes(session, [fields])).get(fields.email)
        if clash is not None:
            return Intake(lead_id=0, outcome="conflict", problem=clash)
        (fields,), unknown = await match_owners(session, [fields])
        row, outcome = await upsert_lead(session, fields, cadence)
        tags = (await add_tags(session, [(row.id, fields.tags)])).get(row.id, [])
        await session.commit()
    return Intake(lead_id=row.id, outcome=outcome, lead=row, unknown_owners=list(unknown.values()), tags=tags)
