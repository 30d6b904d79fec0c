"""The service's own health: whether the database answers."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def database_answers(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Run a trivial query; raises when the database cannot be reached."""
    async with sessionmaker() as session:
        await session.execute(text("SELECT 1"))
