"""Applies the Alembic migrations to leadloop's database."""

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from leadloop import DATA_DIR
from leadloop.infra.db import make_engine


def alembic_config() -> Config:
    """Alembic reading the migrations shipped inside the package, so an installed wheel finds them too."""
    config = Config()
    config.set_main_option("script_location", str(DATA_DIR / "migrations"))
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
