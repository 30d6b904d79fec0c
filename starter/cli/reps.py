"""`leadloop reps import` and `list`: the sales teams and reps leads are routed to."""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadloop.domain.routing import Roster, load_roster
from leadloop.domain.rules import RuleFileError
from leadloop.infra.settings import Settings, get_settings
from starter.cli.connections import database, in_session, temporal_or_reason
from starter.cli.terminal import console, err, fail
from starter.output import styled

if TYPE_CHECKING:
    from leadloop.services.roster import ImportReport

# sqlalchemy and temporalio load inside the commands that use them (connections.py says why)


def reps_import(path: Annotated[Path, typer.Argument(help="reps.yaml: teams and their reps")]) -> None:
    """Make the database hold these teams and reps; reps left out become inactive. Waiting leads retry."""
    try:
        roster = load_roster(path)
    except RuleFileError as exc:
        raise fail("\n".join(exc.lines())) from None
    report, rerouted = asyncio.run(import_and_reroute(get_settings(), roster))
    console.print(
        f"{report.teams} team(s): {report.added} rep(s) added, {report.updated} updated, "
        f"{report.deactivated} deactivated; {rerouted} waiting lead(s) told to route again"
    )


async def import_and_reroute(settings: Settings, roster: Roster) -> "tuple[ImportReport, int]":
    """Store the roster, then tell the leads waiting for a rep to route again (when Temporal is there)."""
    from leadloop.services.operations import reroute_waiting
    from leadloop.services.roster import import_roster, waiting_leads

    async with database(settings) as sessions, sessions() as session:
        report = await import_roster(session, roster)
        await session.commit()
        waiting = await waiting_leads(session)
    if not waiting:
        return report, 0
    client = await temporal_or_reason(settings)
    if isinstance(client, str):
        err.print(styled(f"{client}; waiting leads retry on their own timer", "yellow"))
        return report, 0
    return report, await reroute_waiting(client, waiting)


def reps_list() -> None:
    """Every rep: team, time zone, whether active, open leads against capacity."""
    from leadloop.services.roster import list_reps

    rows = in_session(list_reps)
    table = Table(title="reps")
    for column in ("id", "team", "name", "email", "time zone", "active", "open / capacity"):
        table.add_column(column)
    for r in rows:
        active = "yes" if r.active else "no"
        table.add_row(str(r.id), r.team, r.name, r.email, r.timezone, active, f"{r.open_leads} / {r.capacity}")
    console.print(table)
    if not rows:
        console.print("no reps yet: `leadloop reps import examples/reps.yaml`")
