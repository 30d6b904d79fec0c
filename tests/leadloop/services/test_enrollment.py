"""Enrolment's database side on SQLite and PostgreSQL: the owner column matched against the sales roster."""

from typing import Any

from sqlalchemy import select

from leadloop.domain.intake import parse_csv_text
from leadloop.domain.routing import Roster
from leadloop.infra.db import Lead
from leadloop.services.enrollment import match_owners, upsert_leads
from leadloop.services.roster import import_roster


async def test_the_owner_is_matched_against_the_roster_and_an_unknown_one_never_drops_the_lead(
    sessionmaker: Any,
) -> None:
    roster = {
        "teams": [{"name": "iberia", "reps": [{"email": "Rep.Madrid@leadloop.test", "name": "Marta", "active": False}]}]
    }
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate(roster))
        await session.commit()
    parsed = parse_csv_text(
        "email,owner\n"
        "a@example.es,REP.MADRID@leadloop.test\n"  # any case; an inactive rep is on the roster (routing decides)
        "b@example.es,ghost@leadloop.test\n"
        "c@example.es,\n"
    )
    async with sessionmaker() as session:
        leads, unknown = await match_owners(session, parsed.leads)
        await upsert_leads(session, leads, "welcome")
        await session.commit()
        stored = dict((await session.execute(select(Lead.email, Lead.owner))).all())
    assert unknown == {"b@example.es": "ghost@leadloop.test"}
    assert stored == {"a@example.es": "rep.madrid@leadloop.test", "b@example.es": None, "c@example.es": None}
