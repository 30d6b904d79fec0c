"""The schema on SQLite and PostgreSQL: migrations, one lead per email, exact text, unique send keys."""

from typing import Any

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError

from leadloop.db import Lead, Outbox, make_engine
from leadloop.enrollment import upsert_lead
from leadloop.intake import LeadIn
from leadloop.migrate import upgrade_database


async def test_migrations_create_the_tables_and_are_idempotent(database_url: str) -> None:
    await upgrade_database(database_url)  # a second run is a no-op
    engine = make_engine(database_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    await engine.dispose()
    assert {"leads", "outbox", "suppressions", "alembic_version"} <= tables


async def test_one_lead_per_email_and_details_merge(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        first, outcome1 = await upsert_lead(session, LeadIn(email="Ann@Example.com", first_name="Ann"), "welcome")
        again, outcome2 = await upsert_lead(
            session, LeadIn(email="ann@example.com", company="Acme", first_name="Anne"), "welcome"
        )
        same, outcome3 = await upsert_lead(session, LeadIn(email="ann@example.com"), "welcome")
        await session.commit()
    assert (outcome1, outcome2, outcome3) == ("new", "merged", "unchanged")
    assert first.id == again.id == same.id
    async with sessionmaker() as session:
        lead = await session.get(Lead, first.id)
        count = await session.scalar(select(func.count()).select_from(Lead))
    assert count == 1
    assert (lead.first_name, lead.company) == ("Ann", "Acme")  # the first value is kept, gaps filled


async def test_the_database_enforces_unique_email(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        session.add(Lead(email="dup@example.com", attributes={}))
        await session.commit()
    async with sessionmaker() as session:
        session.add(Lead(email="dup@example.com", attributes={}))
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_names_in_any_script_round_trip_exactly(sessionmaker: Any) -> None:
    names = {"el@example.com": ("Μαρία", "Παπαδοπούλου"), "pl@example.com": ("Łukasz", "Żółkiewski-Gęś"),
             "hu@example.com": ("Szőke", "Tünde Árvíztűrő"), "emoji@example.com": ("Zoë", "O'Brien 🚀")}  # fmt: skip
    async with sessionmaker() as session:
        for email, (first, last) in names.items():
            await upsert_lead(
                session, LeadIn(email=email, first_name=first, last_name=last, attributes={"note": last}), "welcome"
            )
        await session.commit()
    async with sessionmaker() as session:
        rows = (await session.execute(select(Lead))).scalars().all()
    assert {r.email: (r.first_name, r.last_name) for r in rows} == names
    assert {r.attributes["note"] for r in rows} == {last for _, last in names.values()}


def outbox_row(lead_id: int, key: str, message_id: str) -> Outbox:
    return Outbox(
        key=key, lead_id=lead_id, cycle=0, step_id="a", cadence="welcome", status="pending", message_id=message_id
    )


async def test_one_outbox_row_per_lead_cycle_and_step(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        lead, _ = await upsert_lead(session, LeadIn(email="o@example.com"), "welcome")
        session.add(outbox_row(lead.id, "k1", "<1@x>"))
        await session.commit()
    async with sessionmaker() as session:
        session.add(outbox_row(lead.id, "k2", "<2@x>"))
        with pytest.raises(IntegrityError):
            await session.commit()
