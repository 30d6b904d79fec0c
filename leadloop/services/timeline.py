"""One lead's story as a timeline: Temporal's history of every run (continue-as-new, recycles) merged with
leadloop's own record (emails, engagement events, assignments, decisions)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from leadloop.domain.times import as_utc
from leadloop.infra.db import Assignment, DispositionRow, EngagementEvent, InboundMessage, Lead, Outbox, Rep

# signals whose every instance is already a database row (engagement) or carries nothing for people
_QUIET_SIGNALS = {"engagement", "enroll", "inbound"}
#: Characters of a reply's words a history line shows.
EXCERPT_CHARS = 120


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # run | email | event | inbound | score | stage | wait | operator | sales | decision
    detail: str
    run: int | None = None  # which Temporal run (1 = the first), None for database rows

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "detail": self.detail, "run": self.run}


async def temporal_entries(client: Client, workflow_id: str) -> list[Entry]:
    """Every run of the lead's workflow, oldest first, read from Temporal's history."""
    runs = [r async for r in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda r: r.start_time)
    entries: list[Entry] = []
    score: int | None = None
    stage: str | None = None
    for number, run in enumerate(runs, start=1):
        history = await client.get_workflow_handle(workflow_id, run_id=run.run_id).fetch_history()
        for event in history.events:
            at = as_utc(event.event_time.ToDatetime())
            kind, detail = await _describe(client, event)
            if kind == "search":
                values = _search_attributes(event)
                if "LeadScore" in values and values["LeadScore"] != score:
                    old, score = score, values["LeadScore"]
                    entries.append(
                        Entry(at, "score", f"score {old} → {score}" if old is not None else f"score {score}", number)
                    )
                if "LeadStage" in values and values["LeadStage"] != stage:
                    old_stage, stage = stage, values["LeadStage"]
                    text = f"stage {old_stage} → {stage}" if old_stage else f"stage {stage}"
                    entries.append(Entry(at, "stage", text, number))
            elif kind:
                entries.append(Entry(at, kind, detail, number))
    return entries


async def _summary(client: Client, event: HistoryEvent) -> str:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    (text,) = await client.data_converter.decode([event.user_metadata.summary], [str])
    return str(text)


async def _describe(client: Client, event: HistoryEvent) -> tuple[str, str]:
    t = event.event_type
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        a = event.workflow_execution_started_event_attributes
        how = "continued in a fresh history" if a.continued_execution_run_id else "started"
        (start,) = await client.data_converter.decode(a.input.payloads[:1], [dict])
        cadence = start.get("cadence", {})
        return "run", (
            f"{how}: cadence '{cadence.get('name')}' v{cadence.get('version')}, cycle {start.get('cycle', 0)}"
        )
    if t == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        return "search", ""
    if t == EventType.EVENT_TYPE_TIMER_STARTED:
        return "wait", await _summary(client, event) or "timer"
    if t == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        name = event.activity_task_scheduled_event_attributes.activity_type.name
        if name == "send_email":  # the outbox row tells the outcome
            return "", ""
        return "activity", await _summary(client, event) or name
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        signal = event.workflow_execution_signaled_event_attributes
        if signal.signal_name in _QUIET_SIGNALS:
            return "", ""
        note = ""
        if signal.input.payloads:
            (body,) = await client.data_converter.decode(signal.input.payloads[:1], [dict])
            note = f": {body['note']}" if isinstance(body, dict) and body.get("note") else ""
        return "operator", f"signal {signal.signal_name}{note}"
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        update = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        return "update", f"{update} accepted by the workflow"
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return "run", "run ended: continued as new"
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        done = event.workflow_execution_completed_event_attributes.result.payloads[:1]
        (result,) = await client.data_converter.decode(done, [dict]) if done else ({},)
        return "run", f"workflow completed: {result.get('stage', '')}, {result.get('sends', 0)} sent"
    if t == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        return "run", f"workflow terminated: {reason}"
    if t in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT):
        return "run", "workflow failed"
    return "", ""


def _search_attributes(event: HistoryEvent) -> dict[str, Any]:
    from temporalio.converter import decode_search_attributes

    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    return {k: v[0] if isinstance(v, list) and v else v for k, v in decode_search_attributes(fields).items()}


async def database_entries(sessionmaker: async_sessionmaker[AsyncSession], lead_id: int) -> list[Entry] | None:
    """leadloop's own record of the lead; None when there is no such lead."""
    async with sessionmaker() as session:
        lead = await session.get(Lead, lead_id)
        if lead is None:
            return None
        entries = [Entry(as_utc(lead.created_at), "lead", f"created (cadence '{lead.cadence}')")]
        for o in await session.scalars(select(Outbox).where(Outbox.lead_id == lead_id)):
            at = as_utc(o.sent_at or o.created_at)
            why = f" — {o.error}" if o.error else ""  # a sent row's is a note (the owner's stand-in)
            entries.append(Entry(at, "email", f"cycle {o.cycle} step '{o.step_id}' {o.status}: {o.subject!r}{why}"))
        for e in await session.scalars(select(EngagementEvent).where(EngagementEvent.lead_id == lead_id)):
            entries.append(Entry(as_utc(e.occurred_at), "event", event_line(e)))
        for m in await session.scalars(select(InboundMessage).where(InboundMessage.lead_id == lead_id)):
            entries.append(Entry(as_utc(m.received_at), "inbound", inbound_line(m)))
        reps = {r.id: r for r in await session.scalars(select(Rep))}
        for a in await session.scalars(select(Assignment).where(Assignment.lead_id == lead_id)):
            rep = reps.get(a.rep_id) if a.rep_id else None
            who = f"{rep.name} (rep-{rep.id}, {a.team})" if rep else "no rep available"
            entries.append(Entry(as_utc(a.assigned_at), "sales", f"assigned to {who} at score {a.score}: {a.rule}"))
            if a.closed_at:
                entries.append(Entry(as_utc(a.closed_at), "sales", f"assignment {a.status} ({who})"))
        for d in await session.scalars(select(DispositionRow).where(DispositionRow.lead_id == lead_id)):
            rep = reps.get(d.rep_id) if d.rep_id else None
            reason = f" ({d.reason})" if d.reason else ""
            note = f" “{d.note}”" if d.note else ""
            outcome = f" → {d.outcome}" if d.outcome else ""
            entries.append(
                Entry(
                    as_utc(d.created_at),
                    "decision",
                    f"{rep.name if rep else 'rep'} {d.action}ed{reason}{note}{outcome}",
                )
            )
        return entries


def event_line(event: EngagementEvent) -> str:
    """One hit as an operator reads it: where, human or machine (the class and the classifier's confidence), and
    for a click whether its landing page confirmed it; a confirmation says what it proves."""
    where = f" {event.url}" if event.url else ""
    if event.confirms:
        overturned = f", overturning the machine verdict ({event.machine_class})" if event.machine_class else ""
        return f"{event.kind}{where} — confirmation of click {event.confirms[:12]}{overturned}: {event.reason}"
    who = "human" if event.human else f"machine ({event.reason})"
    verdict = [c for c in (None if event.human else event.machine_class, _confidence(event.confidence)) if c]
    line = f"{event.kind}{where} — {who}" + (f" [{', '.join(verdict)}]" if verdict else "")
    if event.kind == "click" and event.confirmed_at is not None:
        after = (as_utc(event.confirmed_at) - as_utc(event.occurred_at)).total_seconds()
        line += f" — confirmed by the landing page {after:.0f} s later"
    elif event.kind == "click" and event.human and event.confidence is not None:
        line += " — not confirmed by the landing page"  # it counts with reduced weight and cannot escalate alone
    return line


def _confidence(value: float | None) -> str | None:
    return f"confidence {value:.2f}" if value is not None else None


def inbound_line(message: InboundMessage) -> str:
    """One message read back: its kind, what it said (a reply's words, shortened; a return date; a bounce's code),
    and whether the workflow heard of it."""
    evidence = message.evidence or {}
    kind = (message.kind or "unclassified").replace("_", " ")
    said = ""
    if message.kind == "human_reply":
        words = " ".join(str(evidence.get("reply_text") or "").split())
        cut = f"{words[:EXCERPT_CHARS]}…" if len(words) > EXCERPT_CHARS else words
        said = f": “{cut}”" if cut else ""
    elif evidence.get("left_company"):
        hint = f", contact {evidence['contact_hint']}" if evidence.get("contact_hint") else ""
        said = f": has left the company{hint}"
    elif message.return_date:
        said = f": back on {message.return_date:%a %d %b %Y}"
    elif evidence.get("status"):
        said = f" {evidence['status']}"
    answers = f" (answers {message.outbox_key})" if message.outbox_key else ""
    status = {"signalled": "", "pending": " — not yet applied"}.get(message.status, f" — {message.status}")
    return f"{kind}{said}{answers}{status}"


def merge(*sources: list[Entry]) -> list[Entry]:
    """One timeline, oldest first (stable: the order within a source is kept for equal times)."""
    return sorted((e for source in sources for e in source), key=lambda e: e.at)
