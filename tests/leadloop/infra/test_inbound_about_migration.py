"""Migration 0012 (who a bounce is about): its column matches the model, and it goes down and up keeping the rows."""

from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from leadloop.infra.db import Base, InboundMessage, make_engine
from leadloop.infra.migrate import alembic_config


def _alembic(connection: Connection, verb: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, verb)(config, revision)


def _columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("inbound_messages")}


def _indexes(connection: Connection) -> set[str]:
    return {index["name"] or "" for index in inspect(connection).get_indexes("inbound_messages")}


async def test_the_about_column_matches_the_model_and_goes_down_and_up(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as connection:
            assert await connection.run_sync(_columns) == {c.name for c in Base.metadata.tables["inbound_messages"].c}
            assert "ix_inbound_messages_about_hash" in await connection.run_sync(_indexes)
            await connection.execute(
                text(
                    "INSERT INTO inbound_messages (source, source_key, received_at, evidence, raw_size, status,"
                    " about_hash) VALUES ('imap', 'INBOX:1:1', '2026-12-01', '{}', 0, 'unmatched', 'h')"
                )
            )
            await connection.run_sync(_alembic, "downgrade", "0011")
            assert "about_hash" not in await connection.run_sync(_columns)
            await connection.run_sync(_alembic, "upgrade", "head")
            assert "about_hash" in await connection.run_sync(_columns)
            # the row outlives both ways; what 0011 could not hold is gone (forget reads such rows' bodies)
            found = (await connection.execute(select(InboundMessage.source_key, InboundMessage.about_hash))).all()
            assert [tuple(row) for row in found] == [("INBOX:1:1", None)]
    finally:
        await engine.dispose()
