"""The `leadloop` command line: every command people run (Typer + Rich)."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.rules import RuleFileError
from leadloop.infra.process import run_and_exit
from leadloop.infra.settings import Settings, get_settings
from starter.output import plain_console, styled

app = typer.Typer(help="leadloop: durable lead nurture and recycle automation on Temporal.", no_args_is_help=True)
cadence_app = typer.Typer(help="Check and preview marketers' cadence files.", no_args_is_help=True)
db_app = typer.Typer(help="leadloop's own database.", no_args_is_help=True)
app.add_typer(cadence_app, name="cadence")
app.add_typer(db_app, name="db")
reps_app = typer.Typer(help="Sales teams and reps.", no_args_is_help=True)
app.add_typer(reps_app, name="reps")
event_app = typer.Typer(help="Inject an engagement event by hand (operators, demos).", no_args_is_help=True)
app.add_typer(event_app, name="event")
lead_app = typer.Typer(help="One lead's data.", no_args_is_help=True)
app.add_typer(lead_app, name="lead")

console = plain_console()  # never markup: data and arguments print as they are (starter/output.py)
err = plain_console(stderr=True)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command


def _in_session(work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(session)` against leadloop's database and close the pool after it."""
    from leadloop.infra.db import make_engine, make_sessionmaker

    async def run() -> Any:
        engine = make_engine(get_settings().database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(styled("error:", "red", f" {message}"))
    return typer.Exit(code)


def _require_extra(extra: str, feature: str) -> None:
    """Exit 1 naming the extra to install when `feature` needs one this installation lacks."""
    from leadloop.infra.extras import MissingExtra, require_extra

    try:
        require_extra(extra, feature)
    except MissingExtra as exc:
        raise _fail(str(exc)) from None


@app.command()
def server(
    db_file: Annotated[
        Path | None, typer.Option("--db-file", help="SQLite file (default .leadloop/temporal-2.db)")
    ] = None,
    in_memory: Annotated[bool, typer.Option("--in-memory", help="keep nothing on disk")] = False,
    port: int = 7233,
    ui_port: int = 8233,
) -> None:
    """Run the Temporal dev server with leadloop's search attributes (Ctrl-C stops it)."""
    from leadloop.infra.settings import DEV_SERVER_DB
    from starter.devserver import dev_server_args, temporal_cli, ui_codec_endpoint

    try:
        binary = temporal_cli()
    except RuntimeError as exc:
        raise _fail(str(exc)) from None
    settings = get_settings()
    db = None if in_memory else (db_file or settings.state_dir / DEV_SERVER_DB)
    args = dev_server_args(db, port, ui_port, codec_endpoint=ui_codec_endpoint(settings))
    console.print(f"Temporal dev server on 127.0.0.1:{port}, UI http://localhost:{ui_port}")
    import os

    os.execv(binary, [binary, *args])


@app.command()
def setup() -> None:
    """Register leadloop's search attributes on the configured Temporal namespace (an external cluster)."""
    from leadloop.domain.search import SEARCH_ATTRIBUTES
    from leadloop.infra.temporal import connect, register_search_attributes

    async def run() -> list[str]:
        return await register_search_attributes(await connect(get_settings()))

    try:
        added = asyncio.run(run())
    except RuntimeError as exc:
        raise _fail(f"cannot reach Temporal at {get_settings().temporal_address}: {exc}") from None
    names = ", ".join(k.name for k in SEARCH_ATTRIBUTES)
    console.print(f"added: {', '.join(added)}" if added else f"all search attributes present ({names})")


@app.command()
def worker() -> None:
    """Run the Temporal worker (the same as `python worker.py`)."""
    import worker as worker_module

    worker_module.main()


@app.command()
def mailbox(
    host: str = "127.0.0.1",
    port: int = 1025,
    folder: Annotated[Path | None, typer.Option("--dir", help="where .eml files go")] = None,
) -> None:
    """Run the local SMTP catcher: every message kept as an .eml file, one log line each."""
    _require_extra("demo", "`leadloop mailbox` (the local SMTP catcher)")
    from starter.mailbox import serve_mailbox

    _logging()

    async def run() -> None:
        server = await serve_mailbox(folder or get_settings().mail_dir, host, port)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to LEADLOOP_DATABASE_URL."""
    from leadloop.infra.migrate import upgrade_database

    settings = get_settings()
    asyncio.run(upgrade_database(settings.database_url))
    console.print(f"database at revision head ({_safe_url(settings.database_url)})")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _require_tables(engine: Any, settings: Settings) -> None:
    """A clear error, not a traceback, when leadloop's tables are not there yet."""
    from sqlalchemy import inspect

    async with engine.connect() as conn:
        if not await conn.run_sync(lambda c: inspect(c).has_table("leads")):
            raise _fail(f"the database at {_safe_url(settings.database_url)} has no tables: run `leadloop db upgrade`")


def _rule_loaders() -> dict[str, Callable[[Path], object]]:
    from leadloop.domain.recycle import load_recycle
    from leadloop.domain.routing import load_routing
    from leadloop.domain.scoring import load_scoring

    def recycle(path: Path) -> object:
        return load_recycle(path, path.parent)  # every cadence it names must load, here and now

    return {"scoring.yaml": load_scoring, "routing.yaml": load_routing, "recycle.yaml": recycle}


RULE_FILES = _rule_loaders()


@cadence_app.command("check")
def cadence_check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="cadence files or folders (default LEADLOOP_CADENCE_DIR)")
    ] = None,
    lead: Annotated[Path | None, typer.Option(help="sample lead JSON to render with")] = None,
) -> None:
    """Validate cadence files and render every step; errors name file, line and field."""
    from leadloop import DATA_DIR
    from leadloop.domain.templates import EmailRenderer
    from leadloop.services.preview import check_cadence, load_sample_lead

    settings = get_settings()
    files: list[Path] = []
    for path in paths or [settings.cadence_dir]:
        if path.is_dir():
            files += sorted(path.glob("*.y*ml"))
        else:
            files.append(path)
    if not files:
        raise _fail("no cadence files to check")
    try:
        sample = load_sample_lead(lead or DATA_DIR / "examples" / "lead.json")
    except ValueError as exc:
        raise _fail(str(exc)) from None
    renderer = EmailRenderer(settings.template_dir)
    failed = 0
    for file in files:
        if file.name in RULE_FILES:
            try:
                RULE_FILES[file.name](file)
            except RuleFileError as exc:
                failed += 1
                for problem in exc.lines():
                    err.print(problem, highlight=False, markup=False)
            else:
                console.print(styled("ok", "green", f" {file}: {file.stem} rules"))
            continue
        result = check_cadence(file, renderer, sample, settings)
        if result.problems:
            failed += 1
            for problem in result.problems:
                err.print(problem, highlight=False, markup=False)
        else:
            assert result.cadence
            console.print(
                styled("ok", "green", f" {file}: '{result.cadence.name}' v{result.cadence.version}, "
                                      f"{len(result.cadence.steps)} steps, {result.rendered} renders")
            )  # fmt: skip
    if failed:
        raise typer.Exit(1)


@cadence_app.command("preview")
def cadence_preview(
    name: Annotated[str, typer.Argument(help="cadence name or file")],
    lead: Annotated[Path, typer.Option(help="lead JSON (fields as in the CSV)")],
    out: Annotated[Path, typer.Option(help="folder to write the emails into")],
) -> None:
    """Write every step's subject, text and HTML as this lead would receive them."""
    from jinja2 import TemplateError

    from leadloop.domain.templates import EmailRenderer, TemplateMissing
    from leadloop.services.preview import load_sample_lead, preview_cadence

    settings = get_settings()
    try:
        cadence = load_cadence(cadence_path(settings.cadence_dir, name))
        sample = load_sample_lead(lead)
        written = preview_cadence(cadence, sample, EmailRenderer(settings.template_dir), settings, out)
    except RuleFileError as exc:
        raise _fail("\n".join(exc.lines())) from None
    except (ValueError, TemplateError, TemplateMissing) as exc:
        raise _fail(str(exc)) from None
    for path in written:
        console.print(str(path), highlight=False)


@app.command()
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
    from leadloop.domain.intake import IntakeFileError, ParsedRows, RowError, intake_context, parse_csv, validate_lead

    settings = get_settings()
    rules = intake_context(settings.intake_refuse_utf8_local_part)
    if (csv_file is None) == (email is None):
        raise _fail("give a CSV file or --email (one of them)", 2)
    try:
        chosen = load_cadence(cadence_path(settings.cadence_dir, cadence))
    except RuleFileError as exc:
        raise _fail("\n".join(exc.lines())) from None
    if csv_file is not None:
        try:
            parsed = parse_csv(csv_file, rules)
        except IntakeFileError as exc:
            raise _fail(str(exc)) from None
    else:
        data: dict[str, Any] = {"email": email, "first_name": first_name, "last_name": last_name,
                                "company": company, "timezone": timezone, "locale": locale}  # fmt: skip
        parsed = ParsedRows(total_rows=1)
        one = validate_lead({k: v for k, v in data.items() if v is not None}, rules)
        if isinstance(one, list):
            parsed.errors = [RowError(1, f, r) for f, r in one]
        else:
            parsed.leads, parsed.rows_of = [one], {one.email: [1]}
    for error in parsed.errors:
        err.print(f"row {error.row}: {error.field}: {error.reason}", highlight=False, markup=False)
    report = asyncio.run(_enroll(parsed.leads, chosen, settings))
    for done in report.results:
        if done.unknown_owner:
            rows = ", ".join(str(r) for r in parsed.rows_of.get(done.email, []))
            err.print(f"row {rows}: owner: {done.unknown_owner} is not a rep on the roster; enrolled without an "
                      "owner (routing decides)", highlight=False, markup=False)  # fmt: skip
    _summary(parsed, report)
    if parsed.errors:
        raise typer.Exit(1)


async def _enroll(leads: list[Any], cadence: Any, settings: Settings) -> Any:
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.temporal import connect
    from leadloop.services.enrollment import current_recycle, current_scoring, enroll_leads

    try:
        scoring = current_scoring(settings.scoring_file)
        recycle = current_recycle(settings.cadence_dir)
    except RuleFileError as exc:
        raise _fail("\n".join(exc.lines())) from None
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        raise _fail(f"cannot reach Temporal at {settings.temporal_address}: {exc}") from None
    engine = make_engine(settings.database_url)
    try:
        await _require_tables(engine, settings)
        with Progress(
            TextColumn("enrolling", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
            disable=not leads,
        ) as progress:  # fmt: skip
            task = progress.add_task("enroll", total=len(leads))
            return await enroll_leads(
                leads, cadence, sessionmaker=make_sessionmaker(engine), client=client,
                task_queue=settings.task_queue, sales_task_queue=settings.sales_task_queue,
                time_scale=settings.time_scale, rep_time_scale=settings.rep_time_scale,
                scoring=scoring, recycle=recycle, progress=lambda _: progress.advance(task),
            )  # fmt: skip
    finally:
        await engine.dispose()


def _summary(parsed: Any, report: Any) -> None:
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
        ("owner not on the roster (routing decides)", sum(bool(r.unknown_owner) for r in report.results)),
        ("workflows started", report.count(workflow="started")),
        ("already running (kept their cadence)", report.count(workflow="already_running")),
        ("finished earlier (not restarted)", report.count(workflow="finished_earlier")),
    ]
    for label, value in rows:
        table.add_row(label, str(value))
    console.print(table)


@app.command()
def retry(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Tell a lead whose send was refused (policy, template) to try the step again."""
    from leadloop.infra.temporal import connect
    from leadloop.services.lead_client import LeadClient

    async def run() -> None:
        await LeadClient(await connect(get_settings()), lead_id).retry_send(note)

    asyncio.run(run())
    console.print(f"lead {lead_id}: retry requested")


def _lead_state(lead_id: int) -> Any:
    """The lead's workflow state (its `state` query); a clear error when there is none or no Temporal."""
    from temporalio.service import RPCError

    from leadloop.domain.models import LeadState
    from leadloop.infra.temporal import connect
    from leadloop.services.lead_client import LeadClient

    async def run() -> LeadState:
        return await LeadClient(await connect(get_settings()), lead_id).state()

    try:
        return asyncio.run(run())
    except RPCError as exc:
        raise _fail(f"lead {lead_id}: {exc.message}") from None
    except RuntimeError as exc:
        raise _fail(f"cannot reach Temporal: {exc}") from None


@app.command()
def state(lead_id: Annotated[int, typer.Argument(help="lead id")]) -> None:
    """Show a lead's workflow state (stage, step, next send)."""
    current = _lead_state(lead_id)
    table = Table(show_header=False)
    for key, value in current.model_dump().items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="default LEADLOOP_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default LEADLOOP_API_PORT")] = None,
) -> None:
    """Run the HTTP service (tracking, beacon, unsubscribe, intake) with its event relay.

    Outside the demo it refuses the published secret and API keys and a short secret (LEADLOOP_SECRET_KEY,
    LEADLOOP_API_KEYS). The access log shows paths with their tokens redacted; X-Forwarded-For counts only
    from LEADLOOP_TRUSTED_PROXIES.
    """
    import uvicorn
    from pydantic import ValidationError

    from leadloop.infra.settings import InsecureSettings, setting_errors
    from starter.api import create_app
    from starter.serving import uvicorn_options

    try:
        settings = get_settings()
        web = create_app(settings)
    except ValidationError as exc:  # one line per bad setting, no traceback
        raise _fail("\n".join(setting_errors(exc))) from None
    except InsecureSettings as exc:
        raise _fail(str(exc)) from None
    _logging()
    uvicorn.run(
        web, host=host or settings.api_host, port=port or settings.api_port, log_level="info", **uvicorn_options()
    )


@app.command()
def relay(
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
) -> None:
    """Signal stored events that their workflows have not heard of yet (Temporal was unreachable).

    Outside the demo it refuses the published or a short secret, as the HTTP service it relays for does.
    """
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.settings import InsecureSettings
    from leadloop.infra.temporal import connect
    from leadloop.services.events import EventSignaller

    settings = get_settings()
    try:
        # it signs nothing itself, but it runs beside `leadloop api` from the same settings: a deployment that
        # would put dead links into emails is stopped at every process it starts, not at the first that signs
        settings.refuse_unsafe_secrets("the event relay")
    except InsecureSettings as exc:
        raise _fail(str(exc)) from None
    _logging()

    async def run() -> int:
        engine = make_engine(settings.database_url)
        client = await connect(settings, lazy=True)

        async def get_client() -> Any:
            return client

        signaller = EventSignaller(make_sessionmaker(engine), get_client, settings.coalesce_seconds)
        try:
            if once:
                return await signaller.sweep()
            await signaller.relay(settings.relay_interval)
            return 0
        finally:
            await engine.dispose()

    try:
        sent = asyncio.run(run())
    except KeyboardInterrupt:
        return
    console.print(f"{sent} pending event(s) signalled")


@reps_app.command("import")
def reps_import(path: Annotated[Path, typer.Argument(help="reps.yaml: teams and their reps")]) -> None:
    """Make the database hold these teams and reps; reps left out become inactive. Waiting leads retry."""
    from leadloop.domain.routing import load_roster
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.services.roster import import_roster, waiting_leads

    settings = get_settings()
    try:
        roster = load_roster(path)
    except RuleFileError as exc:
        raise _fail("\n".join(exc.lines())) from None

    async def run() -> tuple[Any, int]:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                report = await import_roster(session, roster)
                await session.commit()
                waiting = await waiting_leads(session)
        finally:
            await engine.dispose()
        return report, await _reroute(settings, waiting)

    report, rerouted = asyncio.run(run())
    console.print(
        f"{report.teams} team(s): {report.added} rep(s) added, {report.updated} updated, "
        f"{report.deactivated} deactivated; {rerouted} waiting lead(s) told to route again"
    )


async def _reroute(settings: Settings, lead_ids: list[int]) -> int:
    """Tell leads waiting for a rep that reps changed; a lead whose workflow is gone is skipped."""
    from temporalio.service import RPCError

    from leadloop.infra.temporal import connect
    from leadloop.services.lead_client import LeadClient

    if not lead_ids:
        return 0
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        err.print(styled(f"Temporal unreachable ({exc}): waiting leads retry on their own timer", "yellow"))
        return 0
    told = 0
    for lead_id in lead_ids:
        try:
            await LeadClient(client, lead_id).reroute()
            told += 1
        except RPCError:
            continue
    return told


@reps_app.command("list")
def reps_list() -> None:
    """Every rep: team, time zone, whether active, open leads against capacity."""
    from leadloop.services.roster import list_reps

    rows = _in_session(list_reps)
    table = Table(title="reps")
    for column in ("id", "team", "name", "email", "time zone", "active", "open / capacity"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.team,
            r.name,
            r.email,
            r.timezone,
            "yes" if r.active else "no",
            f"{r.open_leads} / {r.capacity}",
        )
    console.print(table)
    if not rows:
        console.print("no reps yet: `leadloop reps import examples/reps.yaml`")


def _inject(kind: str, lead_id: int, url: str | None, machine: bool) -> None:
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.temporal import connect
    from leadloop.services.events import EventSignaller, record_event

    settings = get_settings()
    if url is not None and not url.startswith(("http://", "https://")):
        raise _fail(f"--url must be an http(s) address, not {url!r}")

    async def run() -> tuple[bool, int]:
        engine = make_engine(settings.database_url)
        try:
            maker = make_sessionmaker(engine)
            async with maker() as session:
                stored = await record_event(
                    session, lead_id=lead_id, kind=kind, human=not machine, reason="injected by an operator",
                    url=url,
                )  # fmt: skip
                await session.commit()
            if not stored:
                return False, 0
            client = await connect(settings, lazy=True)

            async def get_client() -> Any:
                return client

            return True, await EventSignaller(maker, get_client).flush(lead_id)
        finally:
            await engine.dispose()

    stored, signalled = asyncio.run(run())
    if not stored:
        raise _fail(f"no lead {lead_id} in the database")
    where = (
        "signalled to its workflow"
        if signalled
        else "stored, not signalled: the lead's workflow has ended or Temporal is unreachable (the relay retries)"
    )
    console.print(f"{'machine' if machine else 'human'} {kind} for lead {lead_id}: {where}")


@event_app.command("open")
def event_open(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    machine: Annotated[bool, typer.Option(help="record it as a machine hit")] = False,
) -> None:
    """An open, as if the lead's mail client fetched the pixel."""
    _inject("open", lead_id, None, machine)


@event_app.command("click")
def event_click(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    url: Annotated[str, typer.Option(help="the clicked URL")] = "https://leadloop.example/",
    machine: Annotated[bool, typer.Option(help="record it as a machine hit")] = False,
) -> None:
    """A click on a link in an email."""
    _inject("click", lead_id, url, machine)


@event_app.command("visit")
def event_visit(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    url: Annotated[str, typer.Option(help="the page visited")] = "https://leadloop.example/",
) -> None:
    """A page view on the marketer's site."""
    _inject("visit", lead_id, url, False)


def _decide(lead_id: int, action: str, request: Any) -> None:
    from leadloop.infra.temporal import connect
    from leadloop.services.decisions import DecisionRefused, decide

    async def run() -> Any:
        return await decide(await connect(get_settings()), lead_id, action, request)  # type: ignore[arg-type]

    try:
        result = asyncio.run(run())
    except DecisionRefused as exc:
        raise _fail(str(exc)) from None
    except RuntimeError as exc:
        raise _fail(f"cannot reach Temporal: {exc}") from None
    console.print(f"lead {lead_id}: {result.outcome}", highlight=False)


@app.command()
def accept(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    opportunity: Annotated[str | None, typer.Option(help="the CRM opportunity id")] = None,
    note: str = "",
) -> None:
    """Accept a lead for its assigned rep (an operator acting for the rep): converted, nurture stops."""
    from leadloop.domain.models import RepActionInput

    _decide(lead_id, "accept", RepActionInput(opportunity_id=opportunity, note=note, source="cli"))


@app.command()
def reject(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    reason: Annotated[str, typer.Option(help="not_ready, no_budget, no_authority, no_need, bad_fit, "
                                             "not_interested, invalid_data, unreachable, wrong_route, other")],
    note: str = "",
) -> None:  # fmt: skip
    """Reject a lead for its assigned rep; recycle.yaml decides by the reason what happens next."""
    from leadloop.domain.models import RepActionInput
    from leadloop.domain.recycle import REASONS

    if reason not in REASONS:
        raise _fail(f"unknown reason {reason!r}; one of: {', '.join(REASONS)}")
    _decide(lead_id, "reject", RepActionInput(reason=reason, note=note, source="cli"))


@lead_app.command("update")
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
    from leadloop.services.leads import LeadUpdateError, update_lead

    fields = {
        k: v
        for k, v in {"email": email, "first_name": first_name, "last_name": last_name, "company": company,
                     "title": title, "timezone": timezone, "locale": locale}.items()
        if v is not None
    }  # fmt: skip
    if not fields:
        raise _fail("nothing to change: give at least one of --email, --first-name, ...")
    try:
        changed, told = asyncio.run(update_lead(get_settings(), lead_id, fields))
    except LeadUpdateError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"lead {lead_id}: {', '.join(changed) or 'nothing'} changed"
        + ("; its workflow was told" if told else "; no running workflow to tell")
    )


@app.command()
def dispositions(
    lead_id: Annotated[int | None, typer.Option("--lead", help="only this lead")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
    limit: int = 50,
) -> None:
    """Reps' decisions, newest first: lead, rep, accept or reject, reason, note, outcome, time."""
    from leadloop.services.leads import list_dispositions

    rows = _in_session(lambda session: list_dispositions(session, lead_id=lead_id, reason=reason, limit=limit))
    table = Table(title="dispositions")
    for column in ("when (UTC)", "lead", "rep", "action", "reason", "note", "outcome"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["at"], str(row["lead_id"]), row["rep"] or "", row["action"], row["reason"] or "",
                      row["note"] or "", row["outcome"] or "")  # fmt: skip
    console.print(table)


def _operator_signal(lead_id: int, name: Literal["pause", "resume"], note: str) -> None:
    from temporalio.service import RPCError

    from leadloop.domain.models import LeadState
    from leadloop.infra.temporal import connect
    from leadloop.services.lead_client import LeadClient

    async def run() -> LeadState:
        lead = LeadClient(await connect(get_settings()), lead_id)
        before = await lead.state()
        if before.stage not in ("nurturing", "paused", "send_blocked", "big_bang"):
            raise _fail(f"lead {lead_id} is {before.stage.replace('_', ' ')}: there is no drip to {name}")
        await lead.hold(name, note)
        return before

    try:
        asyncio.run(run())
    except RPCError as exc:
        raise _fail(f"lead {lead_id}: {exc.message}") from None
    console.print(f"lead {lead_id}: {name}d" if name == "pause" else f"lead {lead_id}: resumed")


@app.command()
def pause(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Hold a lead's drip: nothing is sent until `leadloop resume`; engagement is still recorded."""
    _operator_signal(lead_id, "pause", note)


@app.command()
def resume(lead_id: Annotated[int, typer.Argument(help="lead id")], note: str = "") -> None:
    """Let a paused lead's drip go on from the step it stopped at."""
    _operator_signal(lead_id, "resume", note)


@app.command()
def status(lead_id: Annotated[int, typer.Argument(help="lead id")]) -> None:
    """A lead at a glance: stage, score with its breakdown, assignee, what happens next and when."""
    s = _lead_state(lead_id)
    threshold = f" / {s.threshold}" if s.threshold else ""
    step = min(s.step_index + 1, s.steps_total)
    console.print(
        styled(f"lead {s.lead_id}", "bold", f"  {s.stage}  ·  cadence '{s.cadence}' v{s.cadence_version}, "
                                            f"cycle {s.cycle}, step {step} of {s.steps_total}")
    )  # fmt: skip
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
    table = Table(title=f"score {s.score.total}{threshold}", show_header=True)
    table.add_column("rule")
    table.add_column("points", justify="right")
    for item in s.score.items:
        table.add_row(item.rule, f"{item.points:+d}")
    console.print(table)
    e = s.engagement
    console.print(
        f"sent {s.sends} ({s.uncertain_sends} uncertain); opens {e.human_opens} human / {e.machine_opens} machine; "
        f"clicks {e.human_clicks} / {e.machine_clicks}; visits {e.visits}; unopened streak {s.unopened_streak}; "
        f"recycled {s.recycles}x; dormant cycles {s.dormant_cycles}",
        highlight=False,
    )
    if s.last_disposition:
        console.print(f"last decision: {s.last_disposition}", highlight=False)


@app.command()
def history(
    lead_id: Annotated[int, typer.Argument(help="lead id")],
    waits: Annotated[bool, typer.Option("--waits/--no-waits", help="the drip's timers too")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """A lead's story across every run: emails, events, score and stage changes, assignments, decisions."""
    import json

    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.temporal import connect
    from leadloop.services.enrollment import workflow_id
    from leadloop.services.timeline import Entry, database_entries, merge, temporal_entries

    settings = get_settings()
    notes: list[str] = []

    async def run() -> tuple[list[Entry] | None, list[Entry]]:
        engine = make_engine(settings.database_url)
        try:
            stored = await database_entries(make_sessionmaker(engine), lead_id)
        finally:
            await engine.dispose()
        try:
            told = await temporal_entries(await connect(settings), workflow_id(lead_id))
        except RuntimeError as exc:
            notes.append(f"Temporal unreachable ({exc}): leadloop's database only")
            told = []
        return stored, told

    stored, told = asyncio.run(run())
    if stored is None and not told:
        raise _fail(f"no lead {lead_id}")
    if not told and not notes:
        notes.append("Temporal keeps no run of this lead (ended beyond its retention, or never started)")
    timeline = [e for e in merge(stored or [], told) if waits or e.kind != "wait"]
    if as_json:
        for entry in timeline:
            print(json.dumps(entry.as_dict(), ensure_ascii=False))
        return
    for note in notes:
        err.print(styled("note:", "yellow", f" {note}"))
    table = Table(title=f"lead {lead_id}: {len(timeline)} entries")
    for column in ("when (UTC)", "run", "what", "detail"):
        table.add_column(column)
    for e in timeline:
        table.add_row(f"{e.at:%Y-%m-%d %H:%M:%S}", str(e.run or ""), e.kind, e.detail)
    console.print(table)


@app.command()
def forget(
    who: Annotated[str, typer.Argument(help="the person's address (current or any earlier one) or their lead id")],
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Erase a person (GDPR): end their workflow, close their hand-over, remove their data, keep only hashes."""
    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.temporal import connect
    from leadloop.services.erasure import ErasureError, forget, parse_target

    try:
        target = parse_target(who)
    except ErasureError as exc:
        raise _fail(str(exc)) from None
    named = f"lead {target}" if isinstance(target, int) else target
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise _fail("not at a terminal: pass --yes to confirm; nothing erased")
        if not typer.confirm(f"Erase everything leadloop holds about {named}? This cannot be undone"):
            raise _fail("nothing erased")
    settings = get_settings()

    async def run() -> Any:
        engine = make_engine(settings.database_url)
        try:
            try:
                client = await connect(settings)
            except RuntimeError as exc:
                raise ErasureError(f"cannot reach Temporal ({exc}); nothing was changed") from None
            return await forget(make_sessionmaker(engine), client, target)
        finally:
            await engine.dispose()

    try:
        done = asyncio.run(run())
    except ErasureError as exc:
        raise _fail(str(exc)) from None
    if done.wal_truncated is False:
        err.print("warning: a reader kept SQLite's WAL from being emptied; it holds old pages until the next "
                  "checkpoint (run `forget` again when leadloop is idle)")  # fmt: skip
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


@app.command("list")
def list_leads(
    stage: Annotated[str | None, typer.Option(help="nurturing, with_sales, dormant, ...")] = None,
    rep: Annotated[int | None, typer.Option(help="assigned rep id (see `leadloop reps list`)")] = None,
    min_score: Annotated[int | None, typer.Option("--min-score")] = None,
    cadence: str | None = None,
    all_runs: Annotated[bool, typer.Option("--all", help="ended leads too")] = False,
    limit: int = 200,
) -> None:
    """Find leads through Temporal's visibility (search attributes): a table of the running ones."""
    from leadloop.domain.search import (
        ASSIGNED_REP,
        CADENCE_NAME,
        CADENCE_STEP,
        LAST_ENGAGED_AT,
        LEAD_SCORE,
        LEAD_STAGE,
        RECYCLE_COUNT,
        UNOPENED_STREAK,
        visibility_query,
    )
    from leadloop.infra.temporal import connect

    try:
        query = visibility_query(stage, rep, min_score, cadence)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not all_runs:
        query += " AND ExecutionStatus = 'Running'"

    async def run() -> list[Any]:
        client = await connect(get_settings())
        found = []
        async for execution in client.list_workflows(query, limit=limit):
            found.append(execution)
        return found

    try:
        found = asyncio.run(run())
    except RuntimeError as exc:
        raise _fail(f"cannot reach Temporal: {exc}") from None
    table = Table(title=f"{len(found)} lead(s)")
    for column in ("lead", "stage", "score", "cadence", "step", "rep", "streak", "recycled", "last engaged"):
        table.add_column(column)
    for ex in sorted(found, key=lambda e: e.id):
        a = ex.typed_search_attributes
        engaged = a.get(LAST_ENGAGED_AT)
        table.add_row(
            ex.id.removeprefix("lead-"), str(a.get(LEAD_STAGE) or ""), str(a.get(LEAD_SCORE) or 0),
            str(a.get(CADENCE_NAME) or ""), str(a.get(CADENCE_STEP) or ""), str(a.get(ASSIGNED_REP) or ""),
            str(a.get(UNOPENED_STREAK) or 0), str(a.get(RECYCLE_COUNT) or 0),
            f"{engaged:%Y-%m-%d %H:%M}" if engaged else "",
        )  # fmt: skip
    console.print(table)


@app.command()
def demo(
    leads_csv: Annotated[Path | None, typer.Option("--leads", help="CSV to enroll")] = None,
    cadence: str = "welcome",
    time_scale: Annotated[float | None, typer.Option(help="demo speed (default 86400: a day per second)")] = None,
) -> None:
    """Run the embedded stack (dev server, worker, mailbox) and enroll the sample leads."""
    _require_extra("demo", "`leadloop demo`")
    from starter.demo import run_demo

    _logging()
    settings = get_settings().model_copy(update={"demo": True})  # the published keys are fine on one's laptop
    if time_scale is not None or "time_scale" not in settings.model_fields_set:
        settings = settings.model_copy(update={"time_scale": time_scale or 86400.0})
    try:
        asyncio.run(run_demo(settings, leads_csv, cadence))
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        raise _fail(str(exc)) from None


def _report_since(since: str | None) -> Any:
    """--since as a date: YYYY-MM-DD, a real day, not in the future."""
    import re
    from datetime import UTC, date, datetime

    if since is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", since.strip()):
        raise _fail(f"--since {since!r} is not a date: give YYYY-MM-DD, e.g. 2026-11-01")
    try:
        day = date.fromisoformat(since.strip())
    except ValueError as exc:
        raise _fail(f"--since {since!r} is not a date: {exc}") from None
    if day > datetime.now(UTC).date():
        raise _fail(f"--since {day} is in the future: the period would be empty")
    return day


@app.command()
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
    _require_extra("report", "`leadloop report` (its charts)")
    start = _report_since(since)

    from leadloop.infra.db import make_engine, make_sessionmaker
    from leadloop.infra.temporal import connect
    from leadloop.reporting.gather import cadence_steps_from, gather_report
    from leadloop.reporting.html import render_html
    from leadloop.reporting.models import PlanError, ReportData, ReportError
    from leadloop.reporting.planner import check_plan_inputs, with_plan

    try:
        check_plan_inputs(target_conversions, growth)
    except PlanError as exc:
        raise _fail(str(exc)) from None
    settings = get_settings()

    async def run() -> ReportData:
        engine = make_engine(settings.database_url)
        try:
            await _require_tables(engine, settings)
            unreachable = None
            try:
                client = await asyncio.wait_for(connect(settings), 15)
            except (RuntimeError, TimeoutError, OSError) as exc:
                client, unreachable = None, " ".join(str(exc).split())[:160] or type(exc).__name__
            data = await gather_report(make_sessionmaker(engine), client, start, cadence,
                                       cadence_steps=cadence_steps_from(settings.cadence_dir))  # fmt: skip
        finally:
            await engine.dispose()
        if unreachable is not None:
            data.live_note = (
                f"the live stage counts are missing: Temporal at {settings.temporal_address} was not reachable "
                f"({unreachable}). Everything else comes from leadloop's database."
            )
        return data

    try:
        data = with_plan(asyncio.run(run()), target_conversions, growth)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    png_dir = out.with_name(f"{out.stem}_files")
    page = render_html(data, png_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".part")
    partial.write_text(page, encoding="utf-8")
    partial.replace(out)
    charts = sorted(p.name for p in png_dir.glob("*.png"))
    for note in (data.live_note, data.plan_note):
        if note:
            err.print(styled("note:", "yellow", f" {note}"))
    _report_summary(data)
    console.print(f"wrote {out} and {len(charts)} charts in {png_dir}/ ({', '.join(charts)})", highlight=False)


def _report_summary(data: Any) -> None:
    from leadloop.reporting.models import ratio

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.1f}%"

    funnel = {s.stage: s for s in data.funnel}
    sends = sum(s.sends for s in data.steps)
    period = f"{data.since:%Y-%m-%d} → now" if data.since else "all time"
    table = Table(title=f"report: {period}, {f'cadence {data.cadence}' if data.cadence else 'all cadences'}")
    table.add_column("")
    table.add_column("number", justify="right")
    table.add_column("rate", justify="right")
    rows: list[tuple[str, object, str]] = [
        ("new leads (enrolled)", funnel["enrolled"].leads, ""),
        ("engaged", funnel["engaged"].leads, pct(funnel["engaged"].rate)),
        ("escalated", funnel["escalated"].leads, pct(funnel["escalated"].rate)),
        ("converted", funnel["converted"].leads, pct(funnel["converted"].rate)),
        ("recycled / dormant / suppressed", " / ".join(str(data.outcomes[k]) for k in ("recycled", "dormant",
                                                                                       "suppressed")), ""),
        ("emails sent, human open rate", sends, pct(ratio(sum(s.human_opened for s in data.steps), sends))),
        ("hand-overs, SLA lapses", f"{data.sales.handovers}, {data.sales.lapsed}", pct(data.sales.lapse_rate)),
        ("recycled, later converted", data.sales.recycled_converted, pct(data.sales.recycled_converted_rate)),
    ]  # fmt: skip
    if data.live_stages is not None:
        rows.insert(0, ("leads in Temporal now", sum(data.live_stages.values()), ""))
    if data.plan is not None:
        rows.append((f"plan: new leads for {data.plan.target_conversions} conversions", data.plan.stages[0].needed, ""))
    for label, number, rate in rows:
        table.add_row(label, str(number), rate)
    console.print(table)


def main() -> None:
    """The `leadloop` command: the Typer app, ended past the interpreter's teardown (leadloop/infra/process.py)."""
    run_and_exit(app)


if __name__ == "__main__":
    main()
