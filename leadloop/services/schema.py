"""Whether leadloop's database has its tables yet, so a command can say `leadloop db upgrade` instead of failing."""

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine


async def has_tables(engine: AsyncEngine) -> bool:
    """True once the migrations have created leadloop's tables (the `leads` table stands for them all)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: inspect(sync).has_table("leads"))
