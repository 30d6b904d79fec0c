"""Alembic environment: runs on the connection leadloop hands it, or on LEADLOOP_DATABASE_URL."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from leadloop.infra.db import Base, make_engine
from leadloop.infra.settings import get_settings

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(get_settings().database_url)
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_async())
