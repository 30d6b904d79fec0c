"""Preparing where leadloop runs: the database's migrations and the Temporal namespace's search attributes."""

import asyncio

from leadloop.infra.settings import get_settings
from starter.cli.connections import safe_url, temporal
from starter.cli.terminal import console


def setup() -> None:
    """Register leadloop's search attributes on the configured Temporal namespace (an external cluster)."""
    # temporalio loads only when a command talks to Temporal (connections.py)
    from leadloop.domain.search import SEARCH_ATTRIBUTES
    from leadloop.infra.temporal import register_search_attributes

    async def run() -> list[str]:
        return await register_search_attributes(await temporal(get_settings()))

    added = asyncio.run(run())
    names = ", ".join(k.name for k in SEARCH_ATTRIBUTES)
    console.print(f"added: {', '.join(added)}" if added else f"all search attributes present ({names})")


def db_upgrade() -> None:
    """Apply the migrations to LEADLOOP_DATABASE_URL."""
    from leadloop.infra.migrate import upgrade_database  # alembic and sqlalchemy: only when migrating

    settings = get_settings()
    asyncio.run(upgrade_database(settings.database_url))
    console.print(f"database at revision head ({safe_url(settings.database_url)})")
