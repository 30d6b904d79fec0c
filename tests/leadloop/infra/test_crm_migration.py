"""Migration 0011 (the CRM's side): its tables and columns match the models, and it goes down and up again."""

from alembic import command
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.engine import Connection

from leadloop.infra.db import Base, DispositionRow, Lead, make_engine
from leadloop.infra.migrate import alembic_config

NEW_TABLES = {
    "lead_tags",
    "goals",
    "lifecycle_events",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
    "api_keys",
    "segments",
}


def _alembic(connection: Connection, verb: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, verb)(config, revision)


def _columns(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}


async def test_the_crm_tables_match_the_models_and_go_down_and_up(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            columns = await connection.run_sync(_columns)
            for table in NEW_TABLES | {"leads", "dispositions"}:
                assert columns[table] == {c.name for c in Base.metadata.tables[table].columns}, table
            await connection.execute(insert(Lead).values(id=7, email="kept@x.example", attributes={}))
            await connection.execute(
                text(
                    "INSERT INTO dispositions (key, lead_id, cycle, action, source, created_at, outcome_action)"
                    " VALUES ('lead-7.c0.a1', 7, 0, 'accept', 'api', '2026-11-03', 'converted')"
                )
            )
            await connection.run_sync(_alembic, "downgrade", "0010")
            columns = await connection.run_sync(_columns)
            assert not NEW_TABLES & set(columns)
            assert "external_id" not in columns["leads"] and "recontact_on" not in columns["dispositions"]
            await connection.run_sync(_alembic, "upgrade", "head")
            assert NEW_TABLES <= set(await connection.run_sync(_columns))
            # neither way drops the rows that point at a lead (a rebuilt `leads` on SQLite would cascade)
            assert (await connection.execute(select(DispositionRow.key))).scalars().all() == ["lead-7.c0.a1"]
    finally:
        await engine.dispose()
