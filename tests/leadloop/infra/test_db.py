"""The schema on SQLite and PostgreSQL: migrations, one lead per email, exact text, unique send keys."""

from typing import Any

import pytest
from sqlalchemy import Column, DateTime, MetaData, String, Table, event, func, inspect, select
from sqlalchemy.exc import IntegrityError

from leadloop.domain.intake import LeadIn
from leadloop.domain.mail import email_hash
from leadloop.infra.db import (
    Lead,
    Outbox,
    Suppression,
    _with_defaults,
    insert_new,
    insert_or_get,
    make_engine,
    suppress,
)
from leadloop.infra.migrate import upgrade_database
from leadloop.services.enrollment import upsert_lead


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
    names = {
        "el@example.com": ("Μαρία", "Παπαδοπούλου"),
        "pl@example.com": ("Łukasz", "Żółkiewski-Gęś"),
        "hu@example.com": ("Szőke", "Tünde Árvíztűrő"),
        "emoji@example.com": ("Zoë", "O'Brien 🚀"),
    }
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


async def test_erasure_strips_the_person_keeps_the_counts_and_suppresses_the_hash(sessionmaker: Any) -> None:
    from leadloop.domain.mail import email_hash
    from leadloop.infra.db import DispositionRow, EngagementEvent, Suppression
    from leadloop.services.erasure import erase_in_database

    async with sessionmaker() as session:
        lead, _ = await upsert_lead(session, LeadIn(email="zoe@example.com", first_name="Zoë", company="Z"), "welcome")
        lead.attributes = {"phone": "+44 20"}
        session.add(
            Outbox(
                key="k1",
                lead_id=lead.id,
                cycle=0,
                step_id="a",
                cadence="welcome",
                status="sent",
                message_id="<k1@x>",
                subject="Hi Zoë",
            )
        )
        session.add(
            EngagementEvent(
                id="ev1",
                lead_id=lead.id,
                kind="visit",
                human=True,
                reason="browser",
                url="https://s.example/?u=zoe",
                user_agent="UA",
                client_ip="10.0.0.1",
            )
        )
        session.add(
            DispositionRow(
                key="d1",
                lead_id=lead.id,
                cycle=0,
                action="reject",
                reason="no_budget",
                note="Zoë said call in May",
                source="cli",
            )
        )
        await session.commit()
        lead_id = lead.id
    async with sessionmaker() as session:
        rows = await erase_in_database(session, "zoe@example.com", lead_id)
        await session.commit()
    assert rows == {"leads": 1, "outbox": 1, "engagement_events": 1, "dispositions": 1, "handovers_closed": 0}
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id)
        assert lead.email == f"erased-{lead_id}@erased.invalid" and lead.erased_at is not None
        assert (lead.first_name, lead.company, lead.attributes) == (None, None, {})
        assert (await session.get(Outbox, "k1")).subject is None
        event = await session.get(EngagementEvent, "ev1")
        assert (event.kind, event.human, event.url, event.client_ip) == ("visit", True, None, None)
        decision = await session.get(DispositionRow, "d1")
        assert (decision.reason, decision.note) == ("no_budget", None)
        assert (await session.get(Suppression, email_hash("zoe@example.com"))).reason == "erased"
    async with sessionmaker() as session:  # an address never seen: suppressed all the same; twice is fine
        assert await erase_in_database(session, "new@example.com", None) == {}
        assert await erase_in_database(session, "new@example.com", None) == {}
        await session.commit()
        assert await session.get(Suppression, email_hash("new@example.com")) is not None


async def test_a_big_intake_upserts_in_batches_with_the_same_outcomes_as_one_by_one(sessionmaker: Any) -> None:
    from leadloop.domain.mail import email_hash
    from leadloop.infra.db import Suppression
    from leadloop.services.enrollment import BATCH, suppressed_addresses, upsert_leads

    count = BATCH * 2 + 7  # three batches
    async with sessionmaker() as session:
        await upsert_lead(session, LeadIn(email="l5@example.com", first_name="Five"), "welcome")
        await upsert_lead(session, LeadIn(email="l9@example.com", company="Nine Ltd"), "welcome")
        session.add(Suppression(email_hash=email_hash("l7@example.com"), reason="unsubscribe"))
        await session.commit()
    leads = [LeadIn(email=f"l{i}@example.com", first_name=f"F{i}", attributes={"n": str(i)}) for i in range(count)]
    async with sessionmaker() as session:
        assert await suppressed_addresses(session, [lead.email for lead in leads]) == {"l7@example.com"}
        results = await upsert_leads(session, leads, "welcome")
        await session.commit()
    outcomes = {row.email: outcome for row, outcome in results}
    assert len(results) == count and [row.email for row, _ in results] == [lead.email for lead in leads]
    assert outcomes["l5@example.com"] == "merged" and outcomes["l9@example.com"] == "merged"
    assert sum(o == "new" for o in outcomes.values()) == count - 2
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Lead)) == count
        five = (await session.execute(select(Lead).where(Lead.email == "l5@example.com"))).scalar_one()
        nine = (await session.execute(select(Lead).where(Lead.email == "l9@example.com"))).scalar_one()
    assert five.first_name == "Five" and five.attributes == {"n": "5"}  # kept, gaps filled
    assert (nine.first_name, nine.company) == ("F9", "Nine Ltd")


async def test_conflict_inserts_keep_the_first_row_and_are_compiled_once(sessionmaker: Any) -> None:
    """The claim of an outbox row and the insert-if-new of a suppression: first write wins, the
    statement comes from SQLAlchemy's cache after its first run (the dialects' own ON CONFLICT is never
    cached), and left-out columns get their model defaults."""
    cache_hits: list[bool] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if "ON CONFLICT" in statement and "leads" not in statement:
            cache_hits.append(context.cache_hit == context.dialect.CACHE_HIT)

    async with sessionmaker() as session:
        event.listen(session.get_bind(), "before_cursor_execute", note)
        lead, _ = await upsert_lead(session, LeadIn(email="ann@example.com"), "welcome")
        first = await insert_or_get(
            session, Outbox, key="k1", lead_id=lead.id, cycle=0, step_id="s1", cadence="welcome", message_id="<m1@x>"
        )
        first.attempts = 3
        await session.commit()
        again = await insert_or_get(
            session, Outbox, key="k1", lead_id=lead.id, cycle=0, step_id="s1", cadence="welcome", message_id="<m1@x>"
        )
        new = await insert_new(session, Suppression, email_hash="h1", reason="unsubscribe", detail="first")
        repeat = await insert_new(session, Suppression, email_hash="h1", reason="hard_bounce", detail="second")
        await suppress(session, "Bob@Example.com ", "not_interested", "rep")
        await session.commit()
        event.remove(session.get_bind(), "before_cursor_execute", note)
    assert (first.status, first.created_at is not None) == ("pending", True)  # model defaults filled in
    assert again.attempts == 3 and again.status == "pending"  # the existing row, as it stands
    assert (new, repeat) == (True, False)
    async with sessionmaker() as session:
        kept = await session.get(Suppression, "h1")
        bob = await session.get(Suppression, email_hash("bob@example.com"))
    assert (kept.reason, kept.detail) == ("unsubscribe", "first")
    assert bob is not None and bob.reason == "not_interested"
    assert cache_hits == [False, True, False, True, True]


def test_a_default_the_conflict_insert_cannot_apply_is_refused() -> None:
    """A SQL-expression default would be skipped silently by a text statement: asking for the value instead."""
    table = Table("t", MetaData(), Column("k", String, primary_key=True), Column("at", DateTime, default=func.now()))
    assert _with_defaults(table, {"k": "a", "at": None}) == {"k": "a", "at": None}
    with pytest.raises(TypeError, match=r"t\.at: give its value"):
        _with_defaults(table, {"k": "a"})
