"""Engagement events: stored before any answer, then signalled to the lead's workflow, coalesced per lead."""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from leadloop.domain.models import EngagementEvent as EventModel
from leadloop.domain.times import as_utc
from leadloop.domain.visits import clean_title
from leadloop.infra.db import EngagementEvent, Lead, insert_new, suppress
from leadloop.services.lead_client import LeadClient

log = logging.getLogger("leadloop.events")  # the name operators filter on, kept from before the layers

#: Events of one lead sent in one signal at most; a backlog goes in several.
SIGNAL_BATCH = 500


async def record_event(
    session: AsyncSession,
    *,
    lead_id: int,
    kind: str,
    human: bool,
    reason: str,
    outbox_key: str | None = None,
    url: str | None = None,
    title: str | None = None,
    user_agent: str | None = None,
    client_ip: str | None = None,
    event_id: str | None = None,
    at: datetime | None = None,
    confidence: float | None = None,
    machine_class: str | None = None,
    evidence: list[dict[str, Any]] | None = None,
    confirms: str | None = None,
) -> bool:
    """Store one event (the caller commits); False when the lead is unknown or the id was stored before.

    An unsubscribe also lands on the suppression list here, so the very next send stops even
    before the workflow hears of it.
    """
    lead = await session.get(Lead, lead_id)
    if lead is None:
        return False
    now = at or datetime.now(UTC)
    stored = await insert_new(
        session,
        EngagementEvent,
        id=event_id or uuid.uuid4().hex,
        lead_id=lead_id,
        kind=kind,
        human=human,
        reason=reason[:500],
        outbox_key=outbox_key,
        url=url[:2000] if url else None,
        title=clean_title(title),
        user_agent=user_agent[:500] if user_agent else None,
        client_ip=client_ip,
        occurred_at=now,
        status="pending",
        confidence=confidence,
        machine_class=machine_class,
        evidence=evidence,
        confirms=confirms,
    )
    if kind == "unsubscribe":
        await suppress(session, lead.email, "unsubscribe", reason[:500], at=now)
    return stored


def fold(rows: list[EngagementEvent]) -> list[EventModel]:
    """Identical repeats (same kind, verdict, email and URL) become one event with a count."""
    folded: dict[tuple[Any, ...], EventModel] = {}
    for row in rows:
        # a human click stored with a verdict's confidence waits for its landing page's word (confirmed False), and a
        # confirmation names that click by id: neither folds into another event
        pending_word = row.kind == "click" and row.human and row.confirms is None and row.confidence is not None
        apart = row.id if pending_word or row.confirms else ""
        key = (row.kind, row.human, row.outbox_key, row.url, row.machine_class, apart)
        if key in folded:
            folded[key].count += 1
            folded[key].also.append(row.id)  # every id travels, so each is applied exactly once
            continue
        folded[key] = EventModel(
            id=row.id,
            kind=row.kind,
            human=row.human,
            reason=row.reason,
            outbox_key=row.outbox_key,
            url=row.url or "",
            at=as_utc(row.occurred_at),
            confidence=row.confidence,
            # a confirmation's row keeps in machine_class the verdict it overturns (NULL: the click was human)
            machine_class=None if row.confirms else row.machine_class,
            confirmed=False if pending_word else (True if row.confirms and row.kind == "click" else None),
            confirms=row.confirms,
            was_human=(row.machine_class is None) if row.confirms else None,
        )
    return list(folded.values())


async def every(interval: float, stop: asyncio.Event, sweep: Callable[[], Awaitable[int]], what: str) -> None:
    """Run `sweep` every `interval` seconds until `stop` is set, logging how many `what` it signalled; a round
    that fails is logged and the next one goes on (a relay must outlive a database or Temporal hiccup)."""
    while not stop.is_set():
        try:
            sent = await sweep()
            if sent:
                log.info("relay signalled %d %s", sent, what)
        except Exception:
            log.exception("relay round (%s) failed", what)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


class EventSignaller:
    """Signals stored events to their workflows: at once for the first event of a lead, then at most
    once per `coalesce` seconds, so a burst of hits becomes a few signals rather than a storm."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        client: Callable[[], Awaitable[Client]],
        coalesce: float = 0.5,
    ) -> None:
        self.sessionmaker = sessionmaker
        self._client = client
        self.coalesce = coalesce
        self._scheduled: dict[int, asyncio.TimerHandle] = {}
        self._last: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[int]] = set()
        self.signals_sent = 0

    def notify(self, lead_id: int) -> None:
        """A new event for the lead is stored: signal it soon."""
        if lead_id in self._scheduled:
            return  # the scheduled flush will carry it
        loop = asyncio.get_running_loop()
        delay = max(0.0, self._last.get(lead_id, float("-inf")) + self.coalesce - loop.time())
        self._scheduled[lead_id] = loop.call_later(delay, self._spawn, lead_id)

    def _spawn(self, lead_id: int) -> None:
        self._scheduled.pop(lead_id, None)
        # the window starts now, not when the flush gets the lock: a hit meanwhile waits for the next one
        self._last[lead_id] = asyncio.get_running_loop().time()
        task = asyncio.get_running_loop().create_task(self.flush(lead_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self, lead_id: int) -> int:
        """Signal the lead's pending events; those that cannot be signalled stay pending for the relay."""
        lock = self._locks.setdefault(lead_id, asyncio.Lock())
        sent = 0
        async with lock:
            self._last[lead_id] = asyncio.get_running_loop().time()
            while True:
                async with self.sessionmaker() as session:
                    rows = list(
                        (
                            await session.execute(
                                select(EngagementEvent)
                                .where(EngagementEvent.lead_id == lead_id, EngagementEvent.status == "pending")
                                .order_by(EngagementEvent.occurred_at)
                                .limit(SIGNAL_BATCH)
                            )
                        ).scalars()
                    )
                    if not rows:
                        break
                    status = await self._signal(lead_id, fold(rows))
                    if status is None:
                        break
                    await session.execute(
                        update(EngagementEvent)
                        .where(EngagementEvent.id.in_([r.id for r in rows]))
                        .values(status=status, signalled_at=datetime.now(UTC))
                    )
                    await session.commit()
                    sent += len(rows) if status == "signalled" else 0
                    if len(rows) < SIGNAL_BATCH:
                        break
        if len(self._locks) > 10_000 and not lock.locked():
            self._locks.pop(lead_id, None)
            self._last.pop(lead_id, None)
        return sent

    async def _signal(self, lead_id: int, events: list[EventModel]) -> str | None:
        """'signalled', 'no_workflow', or None when Temporal could not be reached."""
        try:
            client = await self._client()
            await LeadClient(client, lead_id).engagement(events)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                log.info("lead %s has no running workflow: %d event(s) kept, not signalled", lead_id, len(events))
                return "no_workflow"
            log.warning("signal to lead %s failed (%s): events stay pending", lead_id, exc)
            return None
        except (RuntimeError, OSError, TimeoutError) as exc:
            log.warning("Temporal unreachable (%s): events of lead %s stay pending", exc, lead_id)
            return None
        self.signals_sent += 1
        return "signalled"

    async def sweep(self) -> int:
        """Signal every lead that has pending events (the relay's round)."""
        async with self.sessionmaker() as session:
            leads = list(
                (
                    await session.execute(
                        select(EngagementEvent.lead_id).where(EngagementEvent.status == "pending").distinct()
                    )
                ).scalars()
            )
        total = 0
        for lead_id in leads:
            if lead_id not in self._scheduled:
                total += await self.flush(lead_id)
        return total

    async def relay(self, interval: float, stop: asyncio.Event | None = None) -> None:
        """Sweep every `interval` seconds until stopped; what Temporal missed is signalled later."""
        await every(interval, stop or asyncio.Event(), self.sweep, "pending event(s)")

    async def drain(self) -> None:
        """Run every scheduled flush now (shutdown, tests)."""
        for lead_id, handle in list(self._scheduled.items()):
            handle.cancel()
            self._scheduled.pop(lead_id, None)
            await self.flush(lead_id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
