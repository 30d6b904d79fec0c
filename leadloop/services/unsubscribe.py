"""Unsubscribes from a link: whether the lead's address is already on the suppression list."""

from sqlalchemy.ext.asyncio import AsyncSession

from leadloop.domain.mail import email_hash
from leadloop.infra.db import Lead, Suppression


async def already_unsubscribed(session: AsyncSession, lead_id: int) -> bool:
    """Whether the lead exists and its address is suppressed (a repeated unsubscribe)."""
    lead = await session.get(Lead, lead_id)
    return lead is not None and await session.get(Suppression, email_hash(lead.email)) is not None
