"""Applies the Alembic migrations to leadloop's database."""

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from leadloop import PROJECT_ROOT
from leadloop.db import make_engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`; already there is success."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()
