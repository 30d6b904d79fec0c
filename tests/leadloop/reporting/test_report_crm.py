"""The report's CRM figures on both databases: goals in the period by kind and source, and leads per category by
their latest lifecycle event's score under scoring.yaml's rules; on the page and in the terminal's summary."""

from datetime import datetime
from pathlib import Path
from typing import Any

from leadloop.domain.scoring import ScoringConfig
from leadloop.infra.db import Goal, Lead, LifecycleEventRow
from leadloop.reporting.gather import gather_report
from leadloop.reporting.html import render_html
from starter.cli.report import summary
from tests.leadloop.reporting.test_report import NOW, SINCE, at, cell

SCORING = ScoringConfig.model_validate(
    {
        "version": 1,
        "categories": [
            {"name": "likely-buyer", "min_fit": 30, "min_engagement": 20},
            {"name": "educable", "min_fit": 15},
            {"name": "no-prospect", "max_fit": 14},
        ],
    }
)


def event(lead_id: int, n: int, when: datetime, fit: int | None, engaged: int = 0) -> LifecycleEventRow:
    breakdown = None if fit is None else {"total": fit + engaged, "profile": fit, "engagement": engaged, "items": []}
    return LifecycleEventRow(
        key=f"lead-{lead_id}.r1.e.{n}",
        lead_id=lead_id,
        type="lead.engaged",
        cycle=0,
        stage="nurturing",
        payload={"type": "lead.engaged", "lead_id": lead_id, "score_breakdown": breakdown},
        occurred_at=when,
    )


async def seed(sessionmaker: Any) -> None:
    """Five welcome leads and one influencer lead, their goals and lifecycle events (October's are outside)."""
    async with sessionmaker() as session:
        for lead_id in range(1, 7):
            cadence = "influencer" if lead_id == 6 else "welcome"
            session.add(Lead(id=lead_id, email=f"l{lead_id}@example.com", cadence=cadence, created_at=at(1, month=10)))
        await session.flush()
        goals = [
            (1, "converted", "hubspot", "D-1", at(3)),
            (2, "converted", "hubspot", "D-2", at(4)),
            (3, "meeting_booked", "salesforce", "M-3", at(5)),
            (4, "converted", "api", None, at(6)),
            (5, "converted", "hubspot", "D-5", at(20, month=10)),  # before the period
            (6, "opportunity_created", "hubspot", "O-6", at(7)),  # the influencer cadence's
        ]
        for lead_id, kind, source, reference, when in goals:
            session.add(
                Goal(lead_id=lead_id, kind=kind, source=source, reference=reference, actor="crm", created_at=when)
            )
        session.add_all(
            [
                event(1, 1, at(2), fit=10),
                event(1, 2, at(3), fit=35, engaged=25),  # the latest: likely buyer
                event(2, 1, at(4), fit=20),  # educable
                event(3, 1, at(5), fit=5),  # no prospect
                event(4, 1, at(6), fit=None),  # no score: none
                event(5, 1, at(20, month=10), fit=40, engaged=40),  # before the period
                event(6, 1, at(7), fit=20),
            ]
        )
        await session.commit()


async def test_goals_by_source_and_leads_by_category_in_the_period(sessionmaker: Any, tmp_path: Path) -> None:
    await seed(sessionmaker)
    data = await gather_report(sessionmaker, None, SINCE, None, now=NOW, scoring=SCORING)
    assert [(g.kind, g.source, g.goals) for g in data.goals] == [
        ("converted", "hubspot", 2),
        ("converted", "api", 1),
        ("meeting_booked", "salesforce", 1),
        ("opportunity_created", "hubspot", 1),
    ]
    assert data.categories == {"likely-buyer": 1, "educable": 2, "no-prospect": 1, "none": 1}

    welcome = await gather_report(sessionmaker, None, SINCE, "welcome", now=NOW, scoring=SCORING)
    assert sum(g.goals for g in welcome.goals) == 4 and "opportunity_created" not in {g.kind for g in welcome.goals}
    assert welcome.categories == {"likely-buyer": 1, "educable": 1, "no-prospect": 1, "none": 1}
    every = await gather_report(sessionmaker, None, None, None, now=NOW, scoring=SCORING)
    assert every.goals[0].goals == 3 and every.categories["likely-buyer"] == 2  # October counted too
    assert (await gather_report(sessionmaker, None, SINCE, None, now=NOW)).categories == {}  # no scoring.yaml

    page = render_html(data, tmp_path / "report_files")
    assert cell(page, "data-goal", "converted:hubspot") == ["converted", "hubspot", "2"]
    assert cell(page, "data-goal", "meeting_booked:salesforce") == ["meeting booked", "salesforce", "1"]
    assert cell(page, "data-category", "educable") == ["educable", "2"]
    assert cell(page, "data-category", "none") == ["none", "1"]
    rows = {row[0]: row[1:] for row in _rows(summary(data))}
    assert rows["goals by source"][0] == "5" and "converted from hubspot 2" in rows["goals by source"][1]
    assert rows["leads by category"] == ["5", "likely-buyer 1, educable 2, no-prospect 1, none 1"]


def _rows(table: Any) -> list[list[str]]:
    columns = [list(column.cells) for column in table.columns]
    return [list(row) for row in zip(*columns, strict=True)]
