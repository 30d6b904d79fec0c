"""Raw inbound bodies dropped after LEADLOOP_INBOUND_RETENTION_DAYS, by every process that keeps inbound mail."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.services.inbound import drop_old_raw

log = logging.getLogger("leadloop.inbound")

#: how often the bodies past retention are looked for: a day's old mail is a few rows, dropped in one batched pass
RETENTION_EVERY = timedelta(days=1)


def _now() -> datetime:
    return datetime.now(UTC)


class Retention:
    """Drops what retention says to drop, at most once per `every`: at the first call, then once a day.

    Each process that stores inbound mail holds one (`leadloop inbox`, the HTTP service's relay for its webhooks,
    the demo's mailbox) and calls `run` from its own loop; between runs a call costs a clock read. Several
    processes doing it is harmless: a body dropped once is not dropped again.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention_days: int,
        *,
        every: timedelta = RETENTION_EVERY,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if retention_days < 1:  # said at start, not at the first run a day later
            raise ValueError(f"retention_days {retention_days}: at least 1 day (LEADLOOP_INBOUND_RETENTION_DAYS)")
        self.sessions = sessions
        self.retention_days = retention_days
        self.every = every
        self.clock = clock
        self._last: datetime | None = None

    async def run(self) -> int:
        """Drop the bodies past retention if the last run is `every` ago (or there was none); how many."""
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return 0
        async with self.sessions() as session:
            dropped = await drop_old_raw(session, self.retention_days, now=now)
            await session.commit()
        self._last = now
        if dropped:
            log.info("dropped the raw bodies of %d inbound message(s) older than %d days", dropped, self.retention_days)
        return dropped
