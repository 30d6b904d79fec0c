"""`make demo`: the embedded stack (dev server, mailbox, worker) with the sample leads enrolled."""

import asyncio
import logging
import signal
from pathlib import Path

from rich.console import Console

from leadloop import PROJECT_ROOT
from leadloop.cadence import cadence_path, load_cadence
from leadloop.db import make_engine, make_sessionmaker
from leadloop.enrollment import current_scoring, enroll_leads
from leadloop.intake import parse_csv
from leadloop.migrate import upgrade_database
from leadloop.settings import Settings
from leadloop.temporal import connect
from starter.devserver import start_dev_server, stop_process
from starter.mailbox import serve_mailbox

log = logging.getLogger("leadloop.demo")
console = Console()


async def run_demo(settings: Settings, leads_csv: Path | None, cadence_name: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    cadence = load_cadence(cadence_path(settings.cadence_dir, cadence_name))
    parsed = parse_csv(leads_csv or PROJECT_ROOT / "examples" / "leads.csv")
    await upgrade_database(settings.database_url)
    server = await start_dev_server(settings.state_dir / "temporal.db")
    mailbox = None
    try:
        mailbox = await serve_mailbox(settings.mail_dir, settings.smtp_host, settings.smtp_port)
        client = await connect(settings)
        import worker as worker_module  # the worker is the one process allowed to load activities

        async with worker_module.build_worker(client, settings):
            engine = make_engine(settings.database_url)
            report = await enroll_leads(
                parsed.leads, cadence, sessionmaker=make_sessionmaker(engine), client=client,
                task_queue=settings.task_queue, time_scale=settings.time_scale, source="demo",
                scoring=current_scoring(settings.scoring_file),
            )  # fmt: skip
            await engine.dispose()
            for error in parsed.errors:
                console.print(f"[yellow]skipped row {error.row}[/yellow]: {error.field}: {error.reason}")
            day = 86400 / settings.time_scale
            console.print(
                f"\n[bold]leadloop demo[/bold]: {len(report.results)} leads: "
                f"{report.count(workflow='started')} started, "
                f"{report.count(workflow='already_running')} already running, "
                f"{report.count(workflow='finished_earlier')} finished their cadence earlier "
                f"(cadence '{cadence.name}', {len(cadence.steps)} steps; a cadence day lasts {day:g} s)\n"
                f"  Temporal UI   http://localhost:8233/namespaces/{settings.temporal_namespace}/workflows\n"
                f"  mail folder   {settings.mail_dir}\n"
                f"  lead state    .venv/bin/leadloop state <lead id>\n"
                "Ctrl-C stops everything; `make demo` again resumes the same leads.\n",
                highlight=False,
            )
            await stop.wait()
            console.print("stopping: worker, mailbox, Temporal dev server ...")
    finally:
        if mailbox is not None:
            mailbox.close()
            await mailbox.wait_closed()
        await stop_process(server)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
