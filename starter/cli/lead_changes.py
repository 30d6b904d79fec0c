"""The CRM's changes from the command line: find a lead, its owner, a goal, stop, re-enrol, move, tags."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from leadloop.infra.settings import get_settings
from starter.cli.connections import database, temporal, temporal_or_reason
from starter.cli.terminal import console, fail, note

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from temporalio.client import Client

    from leadloop.domain.models import ChangeResult

# sqlalchemy and temporalio load inside the commands that use them (connections.py says why)

T = TypeVar("T")
LeadArg = Annotated[int, typer.Argument(help="lead id", min=1)]
ActorOpt = Annotated[str, typer.Option(help="who asks, recorded in the lead's history")]
CadenceOpt = Annotated[str, typer.Option(help="cadence name (cadences/<name>.yaml)")]


def run(work: "Callable[[async_sessionmaker[AsyncSession], Client], Awaitable[T]]") -> T:
    """`work` with the database and Temporal; a refused change is the error line, exit 1, nothing changed."""
    from leadloop.services.lead_changes import ChangeRefused

    async def go() -> T:
        settings = get_settings()
        client = await temporal(settings, then="nothing was changed")
        async with database(settings, migrated=True) as sessions:
            return await work(sessions, client)

    try:
        return asyncio.run(go())
    except ChangeRefused as exc:
        raise fail(str(exc)) from None


def look(work: "Callable[[async_sessionmaker[AsyncSession], Client | None], Awaitable[T]]") -> T:
    """`work` with the database, and Temporal if it answers (a look-up goes on without it, saying so)."""
    from leadloop.services.lead_changes import ChangeRefused

    async def go() -> T:
        settings = get_settings()
        client = await temporal_or_reason(settings)
        if isinstance(client, str):
            note(f"{client}; the database's facts only")
        async with database(settings, migrated=True) as sessions:
            return await work(sessions, None if isinstance(client, str) else client)

    try:
        return asyncio.run(go())
    except ChangeRefused as exc:
        raise fail(str(exc)) from None


def say(lead_id: int, result: "ChangeResult") -> None:
    suffix = "" if result.applied else " (nothing more to do)"
    console.print(f"lead {lead_id}: {result.outcome}{suffix}", highlight=False)


def find(
    email: Annotated[str | None, typer.Option(help="the lead's address")] = None,
    external_id: Annotated[str | None, typer.Option("--external-id", help="the CRM's id for the lead")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Find a lead by its address or the CRM's id: ids, cadence, owner, tags, stage and score."""
    from leadloop.services.lead_changes import find_lead

    if (email is None) == (external_id is None):
        raise fail("give --email or --external-id (one of them)", 2)
    found = look(lambda sessions, client: find_lead(sessions, client, email=email, external_id=external_id))
    if as_json:
        console.print_json(json.dumps(found.__dict__))
        return
    for label, value in (
        ("lead", found.lead_id),
        ("external id", found.external_id),
        ("email", found.email),
        ("cadence", found.cadence),
        ("owner", found.owner),
        ("tags", ", ".join(found.tags)),
        ("stage", found.stage),
        ("score", found.score),
        ("category", found.category),
    ):
        console.print(f"{label:12} {'-' if value in (None, '') else value}", highlight=False)


def owner(
    lead_id: LeadArg,
    email: Annotated[str | None, typer.Argument(help="the new owner rep's address")] = None,
    none: Annotated[bool, typer.Option("--none", help="no owner: routing decides")] = False,
    actor: ActorOpt = "cli",
) -> None:
    """Change a lead's owner rep (a rep on the roster), or remove it with --none."""
    from leadloop.services.lead_changes import set_owner

    if (email is None) == (not none):
        raise fail("give the owner's address or --none (one of them)", 2)
    say(lead_id, run(lambda sessions, client: set_owner(sessions, client, lead_id, email, actor)))


def goal(
    lead_id: LeadArg,
    kind: Annotated[str, typer.Argument(help="converted, meeting_booked or opportunity_created")],
    source: Annotated[str, typer.Option(help="where it happened (the CRM's name)")] = "cli",
    reference: Annotated[str | None, typer.Option(help="the CRM's deal or meeting id: applied once")] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Record a goal reached outside leadloop: the lead's nurture ends as an accept ends it."""
    from leadloop.domain.crm import GOAL_KINDS
    from leadloop.services.lead_changes import record_goal

    for known in GOAL_KINDS:
        if known == kind:
            chosen = known
            break
    else:
        raise fail(f"unknown goal {kind!r}; one of: {', '.join(GOAL_KINDS)}")
    say(
        lead_id,
        run(
            lambda sessions, client: record_goal(
                sessions, client, lead_id, chosen, source=source, reference=reference, actor=actor
            )
        ),
    )


def stop(
    lead_id: LeadArg,
    reason: Annotated[str, typer.Option(help="why its nurture stops (recorded)")],
    actor: ActorOpt = "cli",
) -> None:
    """Stop a lead's nurture for good (archived), with a reason; it may be re-enrolled later."""
    from leadloop.services.lead_changes import lead_row, stop_lead

    async def work(sessions: "async_sessionmaker[AsyncSession]", client: "Client") -> "ChangeResult":
        async with sessions() as session:
            await lead_row(session, lead_id)
        return await stop_lead(client, lead_id, reason, actor)

    say(lead_id, run(work))


def reenrol(lead_id: LeadArg, cadence: CadenceOpt, actor: ActorOpt = "cli") -> None:
    """Enrol a lead whose nurture has ended (converted, archived, cadence complete) again: a new run."""
    from leadloop.services.lead_changes import reenrol as enrol_again

    settings = get_settings()
    flow = run(lambda sessions, client: enrol_again(sessions, client, settings, lead_id, cadence, actor))
    console.print(f"lead {lead_id}: re-enrolled on cadence '{cadence}' (workflow {flow.replace('_', ' ')})")


def move(lead_id: LeadArg, cadence: CadenceOpt, actor: ActorOpt = "cli") -> None:
    """Move a running lead to another cadence, from its first step, at its next step boundary."""
    from leadloop.services.lead_changes import move_lead

    settings = get_settings()
    say(
        lead_id,
        run(lambda sessions, client: move_lead(sessions, client, settings.cadence_dir, lead_id, cadence, actor)),
    )


def tag(
    lead_id: LeadArg,
    add: Annotated[list[str] | None, typer.Option("--add", help="a tag to add (repeatable)")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="a tag to remove (repeatable)")] = None,
    actor: ActorOpt = "cli",
) -> None:
    """Add or remove a lead's tags; with neither, show them."""
    from leadloop.services.lead_changes import change_tags

    done = run(lambda sessions, client: change_tags(sessions, client, lead_id, add=add, remove=remove, actor=actor))
    tags = ", ".join(done.tags) or "none"
    told = "" if not done.changed else ("; its workflow was told" if done.workflow_told else "; no running workflow")
    console.print(f"lead {lead_id}: tags {tags}{told}", highlight=False)
