"""`leadloop enroll`: leads from a CSV (or one from flags) written to the database and started on a cadence."""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadloop.domain.cadence import Cadence, cadence_path, load_cadence
from leadloop.domain.intake import (
    IntakeFileError,
    LeadIn,
    ParsedRows,
    RowError,
    intake_context,
    parse_csv,
    validate_lead,
)
from leadloop.domain.rules import RuleFileError
from leadloop.infra.settings import Settings, get_settings
from starter.cli.connections import database, temporal
from starter.cli.terminal import console, err, fail

if TYPE_CHECKING:
    from leadloop.services.enrollment import EnrolmentReport


def enroll(
    csv_file: Annotated[Path | None, typer.Argument(help="CSV of leads (header row with an email column)")] = None,
    cadence: Annotated[str, typer.Option(help="cadence name (cadences/<name>.yaml) or file")] = "welcome",
    email: Annotated[str | None, typer.Option(help="enroll one lead by email")] = None,
    first_name: Annotated[str | None, typer.Option()] = None,
    last_name: Annotated[str | None, typer.Option()] = None,
    company: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option()] = None,
    locale: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Enroll leads from a CSV (or one lead) into a cadence; re-enrolling is idempotent."""
    settings = get_settings()
    rules = intake_context(settings.intake_refuse_utf8_local_part)
    if (csv_file is None) == (email is None):
        raise fail("give a CSV file or --email (one of them)", 2)
    try:
        chosen = load_cadence(cadence_path(settings.cadence_dir, cadence))
    except RuleFileError as exc:
        raise fail("\n".join(exc.lines())) from None
    if csv_file is not None:
        try:
            parsed = parse_csv(csv_file, rules)
        except IntakeFileError as exc:
            raise fail(str(exc)) from None
    else:
        given = {
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "company": company,
            "timezone": timezone,
            "locale": locale,
        }
        parsed = one_lead({k: v for k, v in given.items() if v is not None}, rules)
    for error in parsed.errors:
        err.print(f"row {error.row}: {error.field}: {error.reason}", highlight=False, markup=False)
    report = asyncio.run(enroll_parsed(parsed.leads, chosen, settings))
    conflicts = [done for done in report.results if done.problem]
    for done in conflicts:
        rows = ", ".join(str(r) for r in parsed.rows_of.get(done.email, []))
        err.print(f"row {rows}: {done.problem}", highlight=False, markup=False)
    for done in report.results:
        if done.unknown_owner:
            rows = ", ".join(str(r) for r in parsed.rows_of.get(done.email, []))
            err.print(
                f"row {rows}: owner: {done.unknown_owner} is not a rep on the roster; enrolled without an owner "
                "(routing decides)",
                highlight=False,
                markup=False,
            )
    console.print(summary(parsed, report))
    if parsed.errors or conflicts:
        raise typer.Exit(1)


def one_lead(fields: dict[str, str], rules: dict[str, object]) -> ParsedRows:
    """The lead given by flags, as one CSV row would parse."""
    parsed = ParsedRows(total_rows=1)
    one = validate_lead(dict(fields), rules)
    if isinstance(one, list):
        parsed.errors = [RowError(1, field, reason) for field, reason in one]
    else:
        parsed.leads, parsed.rows_of = [one], {one.email: [1]}
    return parsed


async def enroll_parsed(leads: list[LeadIn], cadence: Cadence, settings: Settings) -> "EnrolmentReport":
    """Write and start the leads with a progress bar on stderr; the rule files must load first."""
    from leadloop.domain.recycle import current_recycle
    from leadloop.domain.scoring import current_scoring
    from leadloop.services.enrollment import enroll_leads  # see connections.py

    try:
        scoring = current_scoring(settings.scoring_file)
        recycle = current_recycle(settings.cadence_dir)
    except RuleFileError as exc:
        raise fail("\n".join(exc.lines())) from None
    client = await temporal(settings)
    async with database(settings, migrated=True) as sessions:
        columns = (TextColumn("enrolling", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err, disable=not leads) as progress:
            task = progress.add_task("enroll", total=len(leads))
            return await enroll_leads(
                leads,
                cadence,
                sessionmaker=sessions,
                client=client,
                task_queue=settings.task_queue,
                sales_task_queue=settings.sales_task_queue,
                time_scale=settings.time_scale,
                rep_time_scale=settings.rep_time_scale,
                scoring=scoring,
                recycle=recycle,
                progress=lambda _: progress.advance(task),
            )


def summary(parsed: ParsedRows, report: "EnrolmentReport") -> Table:
    """The enrolment table: rows read and rejected, what the database and Temporal made of the leads."""
    table = Table(title="enrolment", show_header=True)
    table.add_column("outcome")
    table.add_column("leads", justify="right")
    rows = [
        ("rows read", parsed.total_rows),
        ("rows rejected", len({e.row for e in parsed.errors})),
        ("duplicate rows merged", parsed.duplicates),
        ("new leads", report.count(db="new")),
        ("existing leads (details merged)", report.count(db="merged")),
        ("existing leads (unchanged)", report.count(db="unchanged")),
        ("suppressed, not enrolled", report.count(db="suppressed")),
        ("external id another lead's, not stored", report.count(db="conflict")),
        ("owner not on the roster (routing decides)", sum(bool(r.unknown_owner) for r in report.results)),
        ("workflows started", report.count(workflow="started")),
        ("already running (kept their cadence)", report.count(workflow="already_running")),
        ("finished earlier (not restarted)", report.count(workflow="finished_earlier")),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    return table
