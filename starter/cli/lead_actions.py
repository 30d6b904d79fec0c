"""Acting on one lead: retry a refused send, pause or resume its drip, decide for its rep, fix its data, forget it."""

import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from leadloop.domain.intake import intake_context
from leadloop.domain.models import RepActionInput, RepActionResult
from leadloop.domain.recycle import REASONS
from leadloop.infra.settings import get_settings
from starter.cli.connections import database, lead_workflow, temporal
from starter.cli.terminal import console, err, fail

if TYPE_CHECKING:
    from leadloop.services.erasure import Erasure

# sqlalchemy and temporalio load inside the commands that use them (connections.py says why)


def retry(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Tell a lead whose send was refused (policy, template) to try the step again."""
    from leadloop.services.lead_client import LeadClient

    async def run() -> None:
        await LeadClient(await temporal(get_settings()), lead_id).retry_send(note)

    with lead_workflow(lead_id):
        asyncio.run(run())
    console.print(f"lead {lead_id}: retry requested")


def hold(lead_id: int, action: Literal["pause", "resume"], note: str) -> None:
    from leadloop.services.operations import HoldRefused, hold_drip

    async def run() -> None:
        await hold_drip(await temporal(get_settings()), lead_id, action, note)

    try:
        with lead_workflow(lead_id):
            asyncio.run(run())
    except HoldRefused as exc:
        raise fail(str(exc)) from None
    console.print(f"lead {lead_id}: {action}d" if action == "pause" else f"lead {lead_id}: resumed")


def pause(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Hold a lead's drip: nothing is sent until `leadloop resume`; engagement is still recorded."""
    hold(lead_id, "pause", note)


def resume(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Let a paused lead's drip go on from the step it stopped at."""
    hold(lead_id, "resume", note)


def decide(lead_id: int, action: Literal["accept", "reject"], request: RepActionInput) -> None:
    from leadloop.services.decisions import DecisionRefused
    from leadloop.services.decisions import decide as send_decision

    async def run() -> RepActionResult:
        return await send_decision(await temporal(get_settings()), lead_id, action, request)

    try:
        result = asyncio.run(run())
    except DecisionRefused as exc:
        raise fail(str(exc)) from None
    console.print(f"lead {lead_id}: {result.outcome}", highlight=False)


def accept(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    opportunity: Annotated[str | None, typer.Option(help="the CRM opportunity id")] = None,
    note: str = "",
) -> None:
    """Accept a lead for its assigned rep (an operator acting for the rep): converted, nurture stops."""
    decide(lead_id, "accept", RepActionInput(opportunity_id=opportunity, note=note, source="cli"))


REASON_HELP = (
    "not_ready, no_budget, no_authority, no_need, bad_fit, not_interested, invalid_data, unreachable, wrong_route, "
    "other"
)


def reject(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    reason: Annotated[str, typer.Option(help=REASON_HELP)],
    note: str = "",
    recontact_on: Annotated[
        datetime | None,
        typer.Option(
            "--recontact-on",
            formats=["%Y-%m-%d"],
            help="not_ready: the day (YYYY-MM-DD, in the future) the lead comes straight back to this rep",
        ),
    ] = None,
) -> None:
    """Reject a lead for its assigned rep; recycle.yaml decides by the reason what happens next."""
    if reason not in REASONS:
        raise fail(f"unknown reason {reason!r}; one of: {', '.join(REASONS)}")
    day = recontact_on.date() if recontact_on else None
    decide(lead_id, "reject", RepActionInput(reason=reason, note=note, source="cli", recontact_on=day))


def lead_update(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    email: Annotated[str | None, typer.Option(help="the corrected address")] = None,
    first_name: Annotated[str | None, typer.Option("--first-name")] = None,
    last_name: Annotated[str | None, typer.Option("--last-name")] = None,
    company: str | None = None,
    title: str | None = None,
    timezone: str | None = None,
    locale: str | None = None,
) -> None:
    """Fix a lead's data; a lead held for invalid data goes back to nurture."""
    given = {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "company": company,
        "title": title,
        "timezone": timezone,
        "locale": locale,
    }
    fields = {k: v for k, v in given.items() if v is not None}
    if not fields:
        raise fail("nothing to change: give at least one of --email, --first-name, ...")
    changed, told = asyncio.run(update(lead_id, fields))
    console.print(
        f"lead {lead_id}: {', '.join(changed) or 'nothing'} changed"
        + ("; its workflow was told" if told else "; no running workflow to tell")
    )


async def update(lead_id: int, fields: dict[str, str]) -> tuple[list[str], bool]:
    """Change the lead's row, then tell its workflow which fields changed; returns them and whether it was told."""
    from leadloop.services.leads import LeadUpdateError, apply_update, tell_workflow

    settings = get_settings()
    async with database(settings) as sessions, sessions() as session:
        try:
            changed = await apply_update(
                session, lead_id, dict(fields), intake_context(settings.intake_refuse_utf8_local_part)
            )
        except LeadUpdateError as exc:
            raise fail(str(exc)) from None
        await session.commit()
    if not changed:
        return changed, False
    client = await temporal(settings, then=f"{', '.join(changed)} changed, its workflow not told")
    return changed, await tell_workflow(client, lead_id, changed)


def forget(
    who: Annotated[str, typer.Argument(help="the person's address (current or any earlier one) or their lead id")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase a person (GDPR): end their workflow, close their hand-over, remove their data, keep only hashes."""
    from leadloop.infra.lifecycle_events import WebhookRoute
    from leadloop.services.erasure import ErasureError, parse_target
    from leadloop.services.erasure import forget as erase

    try:
        target = parse_target(who)
    except ErasureError as exc:
        raise fail(str(exc)) from None
    named = f"lead {target}" if isinstance(target, int) else target
    if not yes:
        if not sys.stdin.isatty():
            raise fail("not at a terminal: pass --yes to confirm; nothing erased")
        if not typer.confirm(f"Erase everything leadloop holds about {named}? This cannot be undone"):
            raise fail("nothing erased")
    settings = get_settings()

    async def run() -> "Erasure":
        client = await temporal(settings, then="nothing was changed")
        async with database(settings) as sessions:
            return await erase(sessions, client, target, webhooks=WebhookRoute.of(settings))

    try:
        done = asyncio.run(run())
    except ErasureError as exc:
        raise fail(str(exc)) from None
    say_erased(done)


def say_erased(done: "Erasure") -> None:
    """What `forget` did, in one line (and a warning when SQLite kept old pages)."""
    if done.wal_truncated is False:
        err.print(
            "warning: a reader kept SQLite's WAL from being emptied; it holds old pages until the next checkpoint "
            "(run `forget` again when leadloop is idle)"
        )
    if done.lead_id is None:
        console.print("no lead has or had this address; it is on the suppression list now, so it is never enrolled")
        return
    closed = f"; {done.handovers_closed} open hand-over(s) closed" if done.handovers_closed else ""
    if done.already_erased:
        console.print(f"lead {done.lead_id} was erased earlier; nothing more to erase{closed}", highlight=False)
        return
    ended = "ended" if done.ended_workflow else "not running"
    rows = ", ".join(f"{n} {t}" for t, n in done.rows.items())
    console.print(
        f"lead {done.lead_id} erased: workflow {ended}, {done.runs_deleted} Temporal run(s) deleted, "
        f"personal data removed ({rows}){closed}; the hashes of its addresses stay on the suppression list",
        highlight=False,
    )
    if done.webhooks:
        console.print(
            f"the CRM is told: lead.suppressed (erasure), without personal data, to {done.webhooks} webhook "
            "endpoint(s)",
            highlight=False,
        )
