"""Migration 0007: decisions recorded before outcomes were data get theirs, read from their words."""

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection

from leadloop.infra.db import DispositionRow, Lead, make_engine, make_sessionmaker
from leadloop.infra.migrate import alembic_config, upgrade_database

BACK = "back to nurture with 'nurture-later' after a 90d cool-down, on Thu 04 Feb 2027 09:00 Europe/Athens"
#: (key, action, outcome in words) as a release before 0007 recorded them
OLD_ROWS = [
    ("lead-1.c0.a1", "accept", "converted, opportunity OPP-7"),
    ("lead-1.c0.a2", "reject", BACK),
    ("lead-1.c0.a3", "reject", "dormant; back with 'reengage' on Wed 06 May 2027"),
    ("lead-1.c0.a4", "reject", "archived (bad_fit)"),
    ("lead-1.c0.a5", "reject", "suppressed: never emailed again"),
    ("lead-1.c0.a6", "reject", "held until the lead's data is fixed (`leadloop lead update` or PATCH /leads/{id})"),
    ("lead-1.c0.a7", "reject", "re-routed to another rep; rep-2 excluded"),
    ("lead-1.c0.a8", "reject", "something a hand-edited row says"),
    ("lead-1.c0.a9", "reject", None),
]


def _downgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


async def test_decisions_recorded_before_get_their_outcome_from_their_words(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade, "0006")
            columns = (await connection.execute(text("SELECT * FROM dispositions"))).keys()
            assert "outcome_action" not in columns  # the table as it was
            await connection.execute(insert(Lead).values(id=1, email="l1@x.example", attributes={}))
            await connection.execute(
                text(
                    "INSERT INTO dispositions (key, lead_id, cycle, action, outcome, source, created_at)"
                    " VALUES (:key, 1, 0, :action, :outcome, 'api', :at)"
                ),
                [
                    {"key": k, "action": a, "outcome": o, "at": datetime(2026, 11, 3, tzinfo=UTC)}
                    for k, a, o in OLD_ROWS
                ],
            )
        await upgrade_database(database_url)
        async with make_sessionmaker(engine)() as session:
            rows = (await session.scalars(select(DispositionRow).order_by(DispositionRow.key))).all()
        got = {r.key[-2:]: (r.outcome_action, r.outcome_cadence, r.outcome_stage) for r in rows}
        assert got == {
            "a1": ("converted", None, "converted"),
            "a2": ("recycled", "nurture-later", "nurturing"),
            "a3": ("dormant", None, "dormant"),
            "a4": ("archived", None, "archived"),
            "a5": ("suppressed", None, "suppressed"),
            "a6": ("held", None, "held"),
            "a7": ("re-routed", None, "with_sales"),
            "a8": ("other", None, None),  # unreadable words: counted as "other", never guessed
            "a9": ("other", None, None),
        }
        assert [r.outcome for r in rows][:2] == ["converted, opportunity OPP-7", BACK]  # the words stay
    finally:
        await engine.dispose()
