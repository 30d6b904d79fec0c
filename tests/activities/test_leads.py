"""`record_disposition` keeps what a decision led to as data: the workflow's, or read from its words."""

from pathlib import Path
from typing import Any

from sqlalchemy import select

from activities.leads import LeadActivities
from leadloop import PROJECT_ROOT
from leadloop.domain.models import DispositionInput, DispositionOutcome
from leadloop.infra.db import DispositionRow, Lead

BACK = "back to nurture with 'nurture-later' after a 90d cool-down, on Thu 04 Feb 2027 09:00 Europe/Athens"


async def _recorded(sessionmaker: Any, *inputs: DispositionInput) -> dict[str, DispositionRow]:
    async with sessionmaker() as session:
        session.add(Lead(id=1, email="l1@leads.example", attributes={}))
        await session.commit()
    activities = LeadActivities(sessionmaker, PROJECT_ROOT / "cadences", Path("scoring.yaml"))
    for item in inputs:
        await activities.record_disposition(item)
    async with sessionmaker() as session:
        return {r.key: r for r in (await session.scalars(select(DispositionRow))).all()}


async def test_the_outcome_the_workflow_sends_is_stored(sessionmaker: Any) -> None:
    given = DispositionOutcome(action="recycled", cadence="reengage", stage="nurturing")
    rows = await _recorded(
        sessionmaker,
        # the words say one thing, the data another: the data is what the workflow did
        DispositionInput(
            key="a1",
            lead_id=1,
            cycle=0,
            rep_id=None,
            action="reject",
            reason="not_ready",
            outcome="dormant; back with 'reengage' on Wed 06 May 2027",
            result=given,
        ),
    )
    row = rows["a1"]
    assert (row.outcome_action, row.outcome_cadence, row.outcome_stage) == ("recycled", "reengage", "nurturing")
    assert row.outcome == "dormant; back with 'reengage' on Wed 06 May 2027"


async def test_a_workflow_started_before_sends_words_only_and_the_outcome_is_read_from_them(sessionmaker: Any) -> None:
    rows = await _recorded(
        sessionmaker,
        DispositionInput(key="a1", lead_id=1, cycle=0, rep_id=None, action="reject", reason="no_budget", outcome=BACK),
        DispositionInput(key="a2", lead_id=1, cycle=1, rep_id=None, action="accept", outcome="converted"),
        DispositionInput(key="a3", lead_id=1, cycle=1, rep_id=None, action="reject", outcome="?"),
    )
    got = {k: (r.outcome_action, r.outcome_cadence, r.outcome_stage) for k, r in rows.items()}
    assert got == {
        "a1": ("recycled", "nurture-later", "nurturing"),
        "a2": ("converted", None, "converted"),
        "a3": ("other", None, None),
    }
