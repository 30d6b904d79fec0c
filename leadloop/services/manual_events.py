"""An engagement event injected by an operator: stored like a real hit, then signalled to the lead's workflow."""

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.services.events import EventSignaller, record_event


async def inject_event(
    sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
    *,
    lead_id: int,
    kind: Literal["open", "click", "visit"],
    url: str | None,
    machine: bool,
) -> int | None:
    """Store the event and signal the lead's pending events; None when there is no such lead, else how many
    were signalled (0: the workflow has ended or Temporal is unreachable, and the relay retries).

    Args:
        client: a lazy client (`connect(..., lazy=True)`), so the event is stored while Temporal is down.
    """
    async with sessionmaker() as session:
        stored = await record_event(
            session, lead_id=lead_id, kind=kind, human=not machine, reason="injected by an operator", url=url
        )
        await session.commit()
    if not stored:
        return None

    async def get_client() -> Client:
        return client

    return await EventSignaller(sessionmaker, get_client).flush(lead_id)
