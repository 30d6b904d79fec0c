"""`leadloop segment add|list|count|remove` (saved filters over leads) and `leadloop bulk` (an action over one)."""

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leadloop.domain.models import STAGES
from leadloop.infra.settings import Settings, get_settings
from starter.cli.connections import database, temporal
from starter.cli.terminal import console, err, fail

if TYPE_CHECKING:
    from leadloop.services.bulk import BulkRequest, Outcome, Summary, Target
    from leadloop.services.segments import SavedSegment

# sqlalchemy and temporalio load inside the commands that use them (connections.py says why)

NAME = Annotated[str, typer.Argument(help="the segment's name")]


def scoring_categories(settings: Settings) -> list[str]:
    """scoring.yaml's category names (none: any category name may be saved)."""
    from leadloop.domain.rules import RuleFileError
    from leadloop.domain.scoring import current_scoring

    try:
        config = current_scoring(settings.scoring_file)
    except RuleFileError:
        return []
    return [rule.name for rule in config.categories] if config else []


def segment_add(
    name: NAME,
    stage: Annotated[
        list[str] | None, typer.Option(help=f"one of these stages, repeatable: {', '.join(STAGES)}")
    ] = None,
    min_score: Annotated[int | None, typer.Option("--min-score")] = None,
    max_score: Annotated[int | None, typer.Option("--max-score")] = None,
    category: Annotated[str | None, typer.Option(help="scoring.yaml's category")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="has this tag, repeatable: has every one")] = None,
    any_tag: Annotated[list[str] | None, typer.Option("--any-tag", help="repeatable: has at least one")] = None,
    cadence: str | None = None,
    rep: Annotated[int | None, typer.Option(help="assigned rep id")] = None,
    engaged_before: Annotated[
        str | None, typer.Option("--engaged-before", help="last engaged before a date or '30d' ago (or never)")
    ] = None,
    engaged_after: Annotated[
        str | None, typer.Option("--engaged-after", help="last engaged since a date or '30d' ago")
    ] = None,
    description: str = "",
    actor: Annotated[str, typer.Option(help="who saves it (recorded)")] = "cli",
) -> None:
    """Save a segment: a named filter over leads' stage, score, category, tags, cadence, rep and last engagement."""
    from leadloop.domain.segments import SegmentError
    from leadloop.services.segments import add_segment

    given = {
        "stage": stage or None,
        "min_score": min_score,
        "max_score": max_score,
        "category": category,
        "tags_all": tag or None,
        "tags_any": any_tag or None,
        "cadence": cadence,
        "rep": rep,
        "last_engaged_before": engaged_before,
        "last_engaged_after": engaged_after,
    }
    fields = {key: value for key, value in given.items() if value is not None}
    settings = get_settings()

    async def run() -> "SavedSegment":
        async with database(settings, migrated=True) as sessions, sessions() as session:
            saved = await add_segment(
                session,
                name,
                fields,
                description=description,
                actor=actor,
                categories=scoring_categories(settings),
            )
            await session.commit()
            return saved

    try:
        saved = asyncio.run(run())
    except SegmentError as exc:
        raise fail(f"{exc}; nothing was saved") from None
    console.print(f"segment '{saved.name}' saved: {saved.filter.described() or 'every lead'}", highlight=False)


def segment_list() -> None:
    """Every saved segment: name, filter, description, who saved it."""
    from leadloop.domain.segments import SegmentError
    from leadloop.services.segments import list_segments

    async def run() -> "list[SavedSegment]":
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            return await list_segments(session)

    try:
        rows = asyncio.run(run())
    except SegmentError as exc:
        raise fail(str(exc)) from None
    table = Table(title=f"{len(rows)} segment(s)")
    for column in ("name", "filter", "description", "saved by", "saved (UTC)"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            row.filter.described() or "every lead",
            row.description,
            row.created_by,
            f"{row.created_at:%Y-%m-%d}",
        )
    console.print(table)


def _segment(settings: Settings, name: str) -> "SavedSegment":
    from leadloop.domain.segments import SegmentError
    from leadloop.services.segments import find_segment

    async def run() -> "SavedSegment":
        async with database(settings, migrated=True) as sessions, sessions() as session:
            return await find_segment(session, name)

    try:
        return asyncio.run(run())
    except SegmentError as exc:
        raise fail(str(exc)) from None


def segment_count(name: NAME) -> None:
    """How many running leads the segment matches now (Temporal's visibility follows within moments)."""
    from leadloop.services.segments import count_running

    settings = get_settings()
    segment = _segment(settings, name)

    async def run() -> int:
        return await count_running(await temporal(settings), segment)

    console.print(f"segment '{name}': {asyncio.run(run())} running lead(s)")


def segment_remove(name: NAME) -> None:
    """Remove a saved segment (its leads are not touched)."""
    from leadloop.domain.segments import SegmentError
    from leadloop.services.segments import remove_segment

    async def run() -> None:
        async with database(get_settings(), migrated=True) as sessions, sessions() as session:
            await remove_segment(session, name)
            await session.commit()

    try:
        asyncio.run(run())
    except SegmentError as exc:
        raise fail(f"{exc}; nothing was removed") from None
    console.print(f"segment '{name}' removed")


ACTION_HELP = "pause, resume, stop (--reason), move (--cadence), tag (--add, --remove) or enrol (--cadence)"


def bulk(
    action: Annotated[str, typer.Argument(help=ACTION_HELP)],
    segment: Annotated[str, typer.Argument(help="the segment's name (`leadloop segment list`)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count the leads it would act on")] = False,
    rate: Annotated[float, typer.Option(help="leads a second, at most")] = 20.0,
    reason: Annotated[str, typer.Option(help="why (recorded in each lead's history; stop needs one)")] = "",
    cadence: Annotated[
        str | None, typer.Option(help="move: the cadence to move the leads to; enrol: the ended leads' new cadence")
    ] = None,
    add: Annotated[list[str] | None, typer.Option("--add", help="tag: a tag to add, repeatable")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="tag: a tag to remove, repeatable")] = None,
    actor: Annotated[str, typer.Option(help="who asks (recorded in each lead's history)")] = "cli",
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Act on every running lead of a segment (enrol: every lead whose nurture ended), at a pace; running it again
    changes nothing more."""
    from leadloop.services.bulk import BulkError, BulkRequest, cadence_loads, check_request

    settings = get_settings()
    try:
        request = check_request(
            BulkRequest(
                action=action,  # type: ignore[arg-type]  # check_request refuses what is not an Action
                actor=actor,
                reason=reason,
                cadence=cadence,
                add=tuple(add or ()),
                remove=tuple(remove or ()),
                rate=rate,
            ),
            cadence_loads(settings.cadence_dir),
        )
    except BulkError as exc:
        raise fail(f"{exc}; nothing was changed") from None
    saved = _segment(settings, segment)
    found = asyncio.run(_targets(settings, saved, request))
    acting = sum(1 for target in found if target.tags is not None)
    ended = len(found) - acting
    if request.action == "enrol":  # the other way round: it acts on the ended leads
        acting, ended = ended, acting
        reach = f"{acting} ended lead(s)" + (f" and {ended} running again" if ended else "")
    else:
        reach = f"{acting} running lead(s)" + (f" and {ended} ended" if ended else "")
    if dry_run:
        console.print(f"dry run: {request.action} would reach {reach} of '{segment}'", highlight=False)
        return
    if not yes and found:
        if not sys.stdin.isatty():
            raise fail("not at a terminal: pass --yes to confirm; nothing was changed")
        if not typer.confirm(f"{request.action} {acting} lead(s) of segment '{segment}'?"):
            raise fail("nothing was changed")
    say_summary(segment, asyncio.run(_run(settings, found, request)))


async def _targets(settings: Settings, segment: "SavedSegment", request: "BulkRequest") -> "list[Target]":
    from leadloop.services.bulk import targets

    return await targets(await temporal(settings), segment, request.action)


async def _run(settings: Settings, found: "list[Target]", request: "BulkRequest") -> "Summary":
    from leadloop.services.bulk import run_bulk

    client = await temporal(settings, then="nothing was changed")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    async with database(settings, migrated=True) as sessions:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(request.action, total=len(found))

            def advance(_: "Outcome") -> None:
                progress.advance(task)

            return await run_bulk(client, sessions, found, request, advance, settings)


def say_summary(segment: str, summary: "Summary") -> None:
    console.print(
        f"{summary.action} over '{segment}': {summary.matched} lead(s); {summary.changed} changed, "
        f"{summary.already} already so, {summary.failed} failed",
        highlight=False,
    )
    for reason, count in summary.reasons().items():
        leads = [str(o.lead_id) for o in summary.failures if o.detail == reason]
        shown = ", ".join(leads[:10]) + (f" and {len(leads) - 10} more" if len(leads) > 10 else "")
        console.print(f"  failed ({count}): {reason}: lead {shown}", highlight=False)
