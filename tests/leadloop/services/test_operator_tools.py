"""The services behind operators' commands: tables present or not, a hand-made event, the lead listing's query."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from leadloop.infra.db import EngagementEvent, Lead, make_engine
from leadloop.infra.temporal import connect
from leadloop.services.manual_events import inject_event
from leadloop.services.schema import has_tables
from leadloop.services.visibility import lead_query
from tests.conftest import free_port


async def test_has_tables_tells_a_fresh_file_from_a_migrated_database(database_url: str, tmp_path: Path) -> None:
    fresh = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    migrated = make_engine(database_url)
    try:
        assert not await has_tables(fresh)
        assert await has_tables(migrated)
    finally:
        await fresh.dispose()
        await migrated.dispose()


async def test_an_injected_event_is_stored_for_the_relay_when_temporal_is_down(
    sessionmaker: Any, make_settings: Any
) -> None:
    async with sessionmaker() as session:
        session.add(Lead(id=5, email="ana@example.com", cadence="welcome"))
        await session.commit()
    client = await connect(make_settings(temporal_address=f"127.0.0.1:{free_port()}"), lazy=True)
    args: dict[str, Any] = {"kind": "click", "url": "https://leadloop.example/p", "machine": False}
    assert await inject_event(sessionmaker, client, lead_id=404, **args) is None
    assert await inject_event(sessionmaker, client, lead_id=5, **args) == 0
    async with sessionmaker() as session:
        stored = (await session.execute(select(EngagementEvent))).scalars().all()
    assert [(e.lead_id, e.kind, e.human, e.status, e.url) for e in stored] == [
        (5, "click", True, "pending", "https://leadloop.example/p")
    ]


def test_the_lead_listing_shows_running_leads_unless_ended_ones_are_asked_for() -> None:
    running = lead_query("nurturing", 3, None, None, running_only=True)
    assert running.endswith(" AND ExecutionStatus = 'Running'") and "AssignedRep = 'rep-3'" in running
    assert "ExecutionStatus" not in lead_query(None, None, 10, "welcome", running_only=False)
    with pytest.raises(ValueError, match="unknown stage"):
        lead_query("sleeping", None, None, None, running_only=True)
