"""`leadloop report`: the funnel, cadence steps, sales and the planner as one HTML page of charts, and a summary."""

import asyncio
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadloop.infra.settings import Settings, get_settings
from leadloop.reporting.models import (
    PlanError,
    ReportData,
    ReportError,
    class_labels,
    machine_classes,
    ratio,
)
from leadloop.reporting.planner import check_plan_inputs, with_plan
from starter.cli.connections import database
from starter.cli.terminal import console, fail, need_extra, note

if TYPE_CHECKING:
    from leadloop.domain.scoring import ScoringConfig

# its charts (matplotlib, the `report` extra, seconds to import) and its queries (sqlalchemy, temporalio) load
# only when a report is made


def report_since(since: str | None) -> date | None:
    """--since as a date: YYYY-MM-DD, a real day, not in the future."""
    if since is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since.strip()):
        raise fail(f"--since {since!r} is not a date: give YYYY-MM-DD, e.g. 2026-11-01")
    try:
        day = date.fromisoformat(since.strip())
    except ValueError as exc:
        raise fail(f"--since {since!r} is not a date: {exc}") from None
    if day > datetime.now(UTC).date():
        raise fail(f"--since {day} is in the future: the period would be empty")
    return day


def report(
    since: Annotated[str | None, typer.Option(help="first day of the period, YYYY-MM-DD (UTC); default: all")] = None,
    cadence: Annotated[str | None, typer.Option(help="only this cadence's leads and emails")] = None,
    out: Annotated[Path, typer.Option(help="the HTML file; its charts also go to <name>_files/ as PNG")] = Path(
        "report.html"
    ),
    target_conversions: Annotated[
        int | None, typer.Option("--target-conversions", help="funnel planner: conversions to aim for")
    ] = None,
    growth: Annotated[
        float | None, typer.Option(help="funnel planner: or the measured conversions grown by this many percent")
    ] = None,
) -> None:
    """Funnel, cadence step performance, sales and the funnel planner: one self-contained HTML page of charts."""
    need_extra("report", "`leadloop report` (its charts)")
    start = report_since(since)
    from leadloop.reporting.html import render_html

    try:
        check_plan_inputs(target_conversions, growth)
    except PlanError as exc:
        raise fail(str(exc)) from None
    try:
        data = with_plan(asyncio.run(gather(get_settings(), start, cadence)), target_conversions, growth)
    except ReportError as exc:
        raise fail(str(exc)) from None
    png_dir = out.with_name(f"{out.stem}_files")
    page = render_html(data, png_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out)
    charts = sorted(p.name for p in png_dir.glob("*.png"))
    for text in (data.live_note, data.plan_note, *threshold_notes(data)):
        if text:
            note(text)
    console.print(summary(data))
    if data.steps:
        console.print(clicks_table(data))
    console.print(f"wrote {out} and {len(charts)} charts in {png_dir}/ ({', '.join(charts)})", highlight=False)


async def gather(settings: Settings, start: date | None, cadence: str | None) -> ReportData:
    """The report's numbers from the database, with live stage counts when Temporal answers within 15 s."""
    from leadloop.infra.temporal import connect
    from leadloop.reporting.gather import cadence_steps_from, gather_report

    async with database(settings, migrated=True) as sessions:
        unreachable = None
        try:
            client = await asyncio.wait_for(connect(settings), 15)
        except (RuntimeError, TimeoutError, OSError) as exc:
            client, unreachable = None, " ".join(str(exc).split())[:160] or type(exc).__name__
        steps = cadence_steps_from(settings.cadence_dir)
        data = await gather_report(sessions, client, start, cadence, cadence_steps=steps, scoring=_scoring(settings))
    if unreachable is not None:
        data.live_note = (
            f"the live stage counts are missing: Temporal at {settings.temporal_address} was not reachable "
            f"({unreachable}). Everything else comes from leadloop's database."
        )
    return data


def _scoring(settings: Settings) -> "ScoringConfig | None":
    """scoring.yaml for the report's categories; one that does not load gives none (`cadence check` says why)."""
    from leadloop.domain.rules import RuleFileError
    from leadloop.domain.scoring import current_scoring

    try:
        return current_scoring(settings.scoring_file)
    except RuleFileError:
        return None


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def threshold_notes(data: ReportData) -> list[str]:
    """One line per cadence (and for all of them) whose complaint or bounce rate reached a provider's threshold."""
    lines = []
    for item in [*data.inbound.cadences, data.inbound.total]:
        for flag in item.flags:
            rate = getattr(item, flag.metric)
            where = f"cadence {item.cadence}" if item.cadence else "all cadences"
            lines.append(f"{where}: {flag.metric.replace('_', ' ')} {pct(rate, 2)} is {flag.text}")
    return lines


def _flagged(rate: float | None, digits: int, flags: list[str]) -> str:
    return pct(rate, digits) + (f" ⚑ {flags[0]}" if flags else "")


def summary(data: ReportData) -> Table:
    """The headline numbers of the report, for the terminal."""
    funnel = {s.stage: s for s in data.funnel}
    sends = sum(s.sends for s in data.steps)
    opened = sum(s.human_opened for s in data.steps)
    outcomes = " / ".join(str(data.outcomes[k]) for k in ("recycled", "dormant", "suppressed"))
    period = f"{data.since:%Y-%m-%d} → now" if data.since else "all time"
    table = Table(title=f"report: {period}, {f'cadence {data.cadence}' if data.cadence else 'all cadences'}")
    table.add_column("")
    table.add_column("number", justify="right")
    table.add_column("rate", justify="right")
    sales = data.sales
    rows: list[tuple[str, object, str]] = [
        ("new leads (enrolled)", funnel["enrolled"].leads, ""),
        ("engaged", funnel["engaged"].leads, pct(funnel["engaged"].rate)),
        ("escalated", funnel["escalated"].leads, pct(funnel["escalated"].rate)),
        ("converted", funnel["converted"].leads, pct(funnel["converted"].rate)),
        ("recycled / dormant / suppressed", outcomes, ""),
        ("emails sent, human open rate", sends, pct(ratio(opened, sends))),
        ("emails clicked: by anything / a person / confirmed", *_clicked(data, sends)),
        ("hand-overs, SLA lapses", f"{sales.handovers}, {sales.lapsed}", pct(sales.lapse_rate)),
        ("recycled, later converted", sales.recycled_converted, pct(sales.recycled_converted_rate)),
        *_came_back_rows(data),
    ]
    if data.live_stages is not None:
        rows.insert(0, ("leads in Temporal now", sum(data.live_stages.values()), ""))
    if data.goals:
        shown = ", ".join(f"{g.kind.replace('_', ' ')} from {g.source} {g.goals}" for g in data.goals)
        rows.append(("goals by source", sum(g.goals for g in data.goals), shown))
    if data.categories:
        shown = ", ".join(f"{name} {n}" for name, n in data.categories.items())
        rows.append(("leads by category", sum(data.categories.values()), shown))
    if data.plan is not None:
        rows.append((f"plan: new leads for {data.plan.target_conversions} conversions", data.plan.stages[0].needed, ""))
    for label, number, rate in rows:
        table.add_row(label, str(number), rate)
    return table


def _came_back_rows(data: ReportData) -> list[tuple[str, object, str]]:
    """What came back of the period's emails, with the rates providers judge a sender by."""
    total = data.inbound.total
    flags = {flag.metric: [f"{flag.level}: {flag.text}"] for flag in total.flags}
    return [
        ("replies / auto-replies", f"{total.replies} / {total.auto_replies}", pct(total.reply_rate)),
        (
            "hard bounces (at the send + later), soft, policy blocks",
            f"{total.bounces + total.hard_bounces}, {total.soft_bounces}, {total.policy_blocks}",
            _flagged(total.bounce_rate, 1, flags.get("bounce_rate", [])),
        ),
        ("complaints", total.complaints, _flagged(total.complaint_rate, 2, flags.get("complaint_rate", []))),
        ("inbound not matched to a send", data.inbound.unmatched_total, ""),
    ]


def _clicked(data: ReportData, sends: int) -> tuple[str, str]:
    """Emails clicked by anything, by a person, and confirmed by the landing page, and each ÷ sends: every step."""
    clicked = [sum(getattr(s, n) for s in data.steps) for n in ("clicked", "human_clicked", "confirmed_clicked")]
    return " / ".join(map(str, clicked)), " / ".join(pct(ratio(n, sends)) for n in clicked)


def _by_class(counts: dict[str, int], classes: list[str]) -> str:
    named = zip(classes, class_labels(classes), strict=True)
    return ", ".join(f"{label} {counts[c]}" for c, label in named if counts.get(c)) or "none"


def clicks_table(data: ReportData) -> Table:
    """Per step: how much of the raw click (and open) rate was people, confirmed by the landing page, or machines."""
    classes = machine_classes(data.steps)
    table = Table(title="cadence steps: how much of the click rate was real")
    table.add_column("cadence / step")
    table.add_column("sends", justify="right")
    table.add_column("click rate\nraw / human / confirmed", justify="right")
    table.add_column("click events\nconfirmed, unconfirmed, machine", justify="right")
    table.add_column("machine clicks\nby class")
    table.add_column("open rate\nraw / human", justify="right")
    table.add_column("machine opens\nby class")
    for s in data.steps:
        table.add_row(
            f"{s.cadence} / {s.step}",
            str(s.sends),
            " / ".join(pct(r) for r in (s.raw_click_rate, s.click_rate, s.confirmed_click_rate)),
            f"{s.confirmed_clicks}, {s.unconfirmed_clicks}, {s.machine_clicks}",
            _by_class(s.machine_clicks_by_class, classes),
            f"{pct(s.raw_open_rate)} / {pct(s.open_rate)}",
            _by_class(s.machine_opens_by_class, classes),
        )
    return table
