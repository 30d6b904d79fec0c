"""What a rep's link finds, on SQLite and PostgreSQL: the hand-over as the rep sees it, or nothing."""

from datetime import UTC, datetime
from typing import Any

from leadloop.domain.routing import Roster
from leadloop.infra.db import Assignment, Lead
from leadloop.services.rep_pages import find_handover, rep_by_email, rep_by_id
from leadloop.services.roster import import_roster


async def seed(sessionmaker: Any) -> tuple[int, int]:
    """A lead handed to a rep twice (cycle 0, then cycle 1), and a second lead; the first lead's id and the rep's."""
    roster = {"teams": [{"name": "south", "reps": [{"email": "Rep.One@sales.example", "name": "Rep One"}]}]}
    async with sessionmaker() as session:
        await import_roster(session, Roster.model_validate(roster))
        await session.commit()
    rep = await rep_by_email(sessionmaker, "rep.one@sales.example")
    assert rep is not None
    async with sessionmaker() as session:
        lead, other = Lead(email="maria@example.gr", attributes={}), Lead(email="nikos@example.gr", attributes={})
        session.add_all([lead, other])
        await session.flush()
        for cycle in (0, 1):
            session.add(
                Assignment(
                    key=f"lead-{lead.id}.c{cycle}.a1",
                    lead_id=lead.id,
                    cycle=cycle,
                    rep_id=rep.id,
                    team="south",
                    rule="test",
                    status="assigned",
                    score=70,
                )
            )
        await session.commit()
        return lead.id, rep.id


async def test_an_older_hand_over_still_open_shows_as_superseded(sessionmaker: Any) -> None:
    lead_id, _ = await seed(sessionmaker)
    older = await find_handover(sessionmaker, f"lead-{lead_id}.c0.a1", lead_id)
    newest = await find_handover(sessionmaker, f"lead-{lead_id}.c1.a1", lead_id)
    assert older is not None and older.status == "superseded"
    assert newest is not None and newest.status == "assigned" and newest.lead.id == lead_id


async def test_a_link_finds_nothing_for_another_lead_a_gone_hand_over_or_an_erased_lead(sessionmaker: Any) -> None:
    lead_id, _ = await seed(sessionmaker)
    assert await find_handover(sessionmaker, f"lead-{lead_id}.c1.a1", lead_id + 1) is None
    assert await find_handover(sessionmaker, f"lead-{lead_id}.c9.a1", lead_id) is None
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id)
        lead.erased_at = datetime.now(UTC)
        await session.commit()
    assert await find_handover(sessionmaker, f"lead-{lead_id}.c1.a1", lead_id) is None


async def test_a_rep_is_found_by_address_in_any_case_and_by_id(sessionmaker: Any) -> None:
    _, rep_id = await seed(sessionmaker)
    found = await rep_by_email(sessionmaker, "  REP.ONE@sales.example ")
    assert found is not None and found.id == rep_id
    assert await rep_by_email(sessionmaker, "someone@sales.example") is None
    named = await rep_by_id(sessionmaker, rep_id)
    assert named is not None and named.name == "Rep One"
    assert await rep_by_id(sessionmaker, None) is None
