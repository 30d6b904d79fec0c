"""Reading leads: one lead's workflow state, its status at a glance, its history; found leads; reps' decisions."""

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadloop.domain.models import LeadState
from leadloop.infra.settings import get_settings
from starter.cli.connections import database, in_session, lead_workflow, temporal, temporal_or_reason
from starter.cli.terminal import console, fail, note
from starter.output import styled

if TYPE_CHECKING:
    from leadloop.services.timeline import Entry


def lead_state(lead_id: int) -> LeadState:
    """The lead's workflow state (its `state` query); a clear error when there is none or no Temporal."""
    from leadloop.services.lead_client import LeadClient  # temporalio: see connections.py

    async def run() -> LeadState:
        return await LeadClient(await temporal(get_settings()), lead_id).state()

    with lead_workflow(lead_id):
        return asyncio.run(run())


def state(lead_id: Annotated[int, typer.Argument(help="lead id")]) -> None:
    """Show a lead's workflow state (stage, step, next send)."""
    table = Table(show_header=False)
    for key, value in lead_state(lead_id).model_dump().items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


def status(lead_id: Annotated[int, typer.Argument(help="lead id")]) -> None:
    """A lead at a glance: stage, score with its breakdown, assignee, what happens next and when."""
    s = lead_state(lead_id)
    step = min(s.step_index + 1, s.steps_total)
    where = f"cadence '{s.cadence}' v{s.cadence_version}, cycle {s.cycle}, step {step} of {s.steps_total}"
    console.print(styled(f"lead {s.lead_id}", "bold", f"  {s.stage}  ·  {where}"))
    if s.stage == "send_blocked":  # waiting_for still names the step it was about to send
        console.print(f"blocked: {s.blocked_reason}", highlight=False)
        console.print(f"next: the cause fixed, then `leadloop retry {s.lead_id}`", highlight=False)
    else:
        console.print(f"next: {s.waiting_for or 'nothing (the lead has ended)'}", highlight=False)
    if s.next_send_at:
        console.print(f"next email at {s.next_send_at:%Y-%m-%d %H:%M} UTC", highlight=False)
    if s.assigned_rep:
        due = f", response due {s.response_due:%Y-%m-%d %H:%M} UTC" if s.response_due else ""
        console.print(f"rep: {s.assigned_rep} (team {s.team}){due}", highlight=False)
    console.print(f"category: {s.category or 'none'}  ·  tags: {', '.join(s.tags) or 'none'}", highlight=False)
    console.print(score_table(s))
    e = s.engagement
    # clicks a landing page has not confirmed (yet) score in part and cannot escalate: an operator sees how many
    waiting = f", {e.unconfirmed_clicks} unconfirmed" if e.unconfirmed_clicks else ""
    proven = f", {e.confirmed_clicks} confirmed by the landing page" if e.confirmed_clicks else ""
    console.print(
        f"sent {s.sends} ({s.uncertain_sends} uncertain); opens {e.human_opens} human / {e.machine_opens} machine; "
        f"clicks {e.human_clicks} human{waiting}{proven} / {e.machine_clicks} machine; visits {e.visits}; "
        f"unopened streak {s.unopened_streak}; "
        f"recycled {s.recycles}x; dormant cycles {s.dormant_cycles}",
        highlight=False,
    )
    came_back = {kind.replace("_", " "): n for kind, n in s.inbound.model_dump().items() if n}
    if came_back:
        shown = ", ".join(f"{kind} {n}" for kind, n in came_back.items())
        console.print(f"inbound: {shown} (`leadloop inbound list`)", highlight=False)
    if s.last_disposition:
        console.print(f"last decision: {s.last_disposition}", highlight=False)
    inbound = inbound_line(s)
    if inbound:
        console.print(inbound, highlight=False)
    counts = category_counts()
    if counts:
        console.print(counts, highlight=False)
    for line in webhook_lines():
        console.print(line, highlight=False)


def webhook_lines() -> list[str]:
    """What the operator must hear of the CRM's webhooks wherever they look: endpoints disabled, deliveries failing
    or dead (nothing when all is well, or when the database cannot be read: the lead's status stands alone)."""
    from sqlalchemy.exc import SQLAlchemyError

    from leadloop.services.outbound_webhooks import webhook_health

    try:
        health = in_session(webhook_health)
    except (SQLAlchemyError, OSError):
        return []
    lines = [
        f"webhooks: endpoint '{e.name}' DISABLED"
        + (f" since {e.disabled_at:%Y-%m-%d %H:%M} UTC" if e.disabled_at else "")
        + f" ({e.disabled_reason or 'by hand'}); `leadloop webhooks enable {e.name}`"
        for e in health.disabled
    ]
    if health.failing or health.dead:
        lines.append(
            f"webhooks: {health.failing} delivery(ies) failing, {health.dead} dead "
            "(`leadloop webhooks deliveries --failed`)"
        )
    return lines


def category_counts() -> str:
    """The running leads per scoring.yaml category, in one line ('' when scoring.yaml names none)."""
    from leadloop.domain.scoring import current_scoring
    from leadloop.services.visibility import count_by_category

    settings = get_settings()
    config = current_scoring(settings.scoring_file)
    names = [rule.name for rule in config.categories] if config else []
    if not names:
        return ""

    from temporalio.service import RPCError

    async def run() -> dict[str, int]:
        return await count_by_category(await temporal(settings), names)

    try:
        counts = asyncio.run(run())
    except RPCError as exc:  # the lead's state was shown: a visibility that cannot count only loses this line
        note(f"running leads by category: Temporal could not count them ({exc.message})")
        return ""
    shown = ", ".join(f"{name or 'none'} {n}" for name, n in counts.items())
    return f"running leads by category: {shown}"


def inbound_line(s: LeadState) -> str:
    """Mail read back from the lead, by kind ('' when none came): policy blocks show here, as the sender's problem
    to fix (the address is not suppressed for them)."""
    counts = {kind.replace("_", " "): n for kind, n in s.inbound.model_dump().items() if n}
    if not counts:
        return ""
    line = "inbound: " + ", ".join(f"{kind} {n}" for kind, n in counts.items())
    if s.inbound.policy_block:
        line += " (policy blocks: our sending was refused by policy, not the address; see the relay's advice)"
    if s.back_at is not None:
        line += f"; out of office until {s.back_at:%Y-%m-%d %H:%M} UTC"
    return line


def score_table(s: LeadState) -> Table:
    """The score's rules and their points, titled with the total (and the threshold, when there is one)."""
    threshold = f" / {s.threshold}" if s.threshold else ""
    table = Table(title=f"score {s.score.total}{threshold}", show_header=True)
    table.add_column("rule")
    table.add_column("points", justify="right")
    for item in s.score.items:
        table.add_row(item.rule, f"{item.points:+d}")
    return table


def history(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    waits: Annotated[bool, typer.Option("--waits/--no-waits", help="the drip's timers too")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """A lead's story across every run: emails, events, score and stage changes, assignments, decisions."""
    from leadloop.services.timeline import merge  # sqlalchemy and temporalio: see connections.py

    stored, told, notes = asyncio.run(story(lead_id))
    if stored is None and not told:
        raise fail(f"no lead {lead_id}")
    if not told and not notes:
        notes.append("Temporal keeps no run of this lead (ended beyond its retention, or never started)")
    timeline = [e for e in merge(stored or [], told) if waits or e.kind != "wait"]
    if as_json:
        for entry in timeline:
            print(json.dumps(entry.as_dict(), ensure_ascii=False))
        return
    for text in notes:
        note(text)
    table = Table(title=f"lead {lead_id}: {len(timeline)} entries")
    for column in ("when (UTC)", "run", "what", "detail"):
        table.add_column(column)
    for e in timeline:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", str(e.run or ""), e.kind, e.detail)
    console.print(table)


async def story(lead_id: int) -> "tuple[list[Entry] | None, list[Entry], list[str]]":
    """The lead's entries from the database (None: no such lead) and from Temporal, and notes on what is missing."""
    from leadloop.services.enrollment import workflow_id
    from leadloop.services.timeline import database_entries, temporal_entries

    settings = get_settings()
    async with database(settings) as sessions:
        stored = await database_entries(sessions, lead_id)
    client = await temporal_or_reason(settings)
    if isinstance(client, str):
        return stored, [], [f"{client}; leadloop's database only"]
    return stored, await temporal_entries(client, workflow_id(lead_id)), []


def list_leads(
    stage: Annotated[str | None, typer.Option(help="nurturing, with_sales, dormant, ...")] = None,
    rep: Annotated[int | None, typer.Option(help="assigned rep id (see `leadloop reps list`)")] = None,
    min_score: Annotated[int | None, typer.Option("--min-score")] = None,
    cadence: str | None = None,
    all_runs: Annotated[bool, typer.Option("--all", help="ended leads too")] = False,
    limit: int = 200,
    category: Annotated[str | None, typer.Option(help="scoring.yaml's category")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="has this tag, repeatable: has every one")] = None,
) -> None:
    """Find leads through Temporal's visibility (search attributes): a table of the running ones."""
    from leadloop.services.visibility import LeadListing, find_leads, lead_query  # temporalio: see connections.py

    try:
        query = lead_query(
            stage, rep, min_score, cadence, running_only=not all_runs, category=category, tags=tuple(tag or ())
        )
    except ValueError as exc:
        raise fail(str(exc)) from None

    async def run() -> list[LeadListing]:
        return await find_leads(await temporal(get_settings()), query, limit)

    found = asyncio.run(run())
    table = Table(title=f"{len(found)} lead(s)")
    columns = ("lead", "stage", "score", "category", "cadence", "step", "rep", "streak", "recycled", "last engaged")
    for column in (*columns, "tags"):
        table.add_column(column)
    for lead in found:
        engaged = lead.last_engaged_at
        table.add_row(
            lead.lead,
            lead.stage or "",
            str(lead.score or 0),
            lead.category or "",
            lead.cadence or "",
            lead.step or "",
            lead.rep or "",
            str(lead.unopened_streak or 0),
            str(lead.recycles or 0),
            f"{engaged:%Y-%m-%d %H:%M}" if engaged else "",
            ", ".join(lead.tags),
        )
    console.print(table)


def dispositions(
    lead_id: Annotated[int | None, typer.Option("--lead", help="only this lead")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: int = 50,
) -> None:
    """Reps' decisions, newest first: lead, rep, accept or reject, reason, note, outcome, time."""
    from leadloop.services.leads import list_dispositions  # sqlalchemy: see connections.py

    rows = in_session(lambda session: list_dispositions(session, lead_id=lead_id, reason=reason, limit=limit))
    table = Table(title="dispositions")
    for column in ("when (UTC)", "lead", "rep", "action", "reason", "note", "outcome"):
        table.add_column(column)
    for row in rows:
        cells = (row["at"], str(row["lead_id"]), row["rep"], row["action"], row["reason"], row["note"], row["outcome"])
        table.add_row(*(cell or "" for cell in cells))
    console.print(table)
