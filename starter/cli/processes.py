"""The long-running commands: the Temporal dev server, the worker, the SMTP catcher, the HTTP service, the IMAP
reader, the demo."""

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from leadloop.infra.settings import DEV_SERVER_DB, InsecureSettings, get_settings, setting_errors
from starter.cli.terminal import configure_logging, console, fail, need_extra


def server(
    db_file: Annotated[
        Path | None, typer.Option("--db-file", help="SQLite file (default .leadloop/temporal-2.db)")
    ] = None,
    in_memory: Annotated[bool, typer.Option("--in-memory", help="keep nothing on disk")] = False,
    port: int = 7233,
    ui_port: int = 8233,
) -> None:
    """Run the Temporal dev server with leadloop's search attributes (Ctrl-C stops it)."""
    from starter.devserver import dev_server_args, temporal_cli, ui_codec_endpoint  # temporalio: see connections.py

    try:
        binary = temporal_cli()
    except RuntimeError as exc:
        raise fail(str(exc)) from None
    settings = get_settings()
    db = None if in_memory else (db_file or settings.state_dir / DEV_SERVER_DB)
    args = dev_server_args(db, port, ui_port, codec_endpoint=ui_codec_endpoint(settings))
    console.print(f"Temporal dev server on 127.0.0.1:{port}, UI http://localhost:{ui_port}")
    os.execv(binary, [binary, *args])


def worker() -> None:
    """Run the Temporal worker (the same as `python worker.py`)."""
    # the worker imports every workflow and activity, and the CLI reaches those only when it runs one
    import worker as worker_module

    worker_module.main()


def mailbox(
    host: str = "127.0.0.1",
    port: int = 1025,
    folder: Annotated[Path | None, typer.Option("--dir", help="where .eml files go")] = None,
    inbound: Annotated[
        bool,
        typer.Option(
            "--inbound",
            help="mail for the From address and bounces+…@LEADLOOP_BOUNCE_DOMAIN also goes through the inbound "
            "pipeline: stored in the database, signalled to the lead's workflow (as `make demo` runs it)",
        ),
    ] = False,
) -> None:
    """Run the local SMTP catcher: every message kept as an .eml file, one log line each."""
    need_extra("demo", "`leadloop mailbox` (the local SMTP catcher)")
    from starter.mailbox import InboundRoute, serve_mailbox  # aiosmtpd: only the `demo` extra installs it

    configure_logging()
    settings = get_settings()

    async def serve(route: InboundRoute | None) -> None:
        smtp = await serve_mailbox(folder or settings.mail_dir, host, port, inbound=route)
        async with smtp:
            await smtp.serve_forever()

    async def run() -> None:
        if not inbound:
            await serve(None)
            return
        from starter.cli.connections import database, temporal

        async with database(settings, migrated=True) as sessions:
            # connected on first use: with Temporal down, messages are stored and signalled on a later delivery
            client = await temporal(settings, lazy=True)
            await serve(InboundRoute.from_settings(settings, sessions, client))

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


def api(
    host: Annotated[str | None, typer.Option(help="default LEADLOOP_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default LEADLOOP_API_PORT")] = None,
) -> None:
    """Run the HTTP service (tracking, beacon, unsubscribe, intake) with its event relay.

    Outside the demo it refuses the published secret and API keys and a short secret (LEADLOOP_SECRET_KEY,
    LEADLOOP_API_KEYS). The access log shows paths with their tokens redacted; X-Forwarded-For counts only
    from LEADLOOP_TRUSTED_PROXIES.
    """
    # uvicorn and the HTTP service (FastAPI, sqlalchemy, temporalio) take a second to import: only when serving
    import uvicorn

    from leadloop.domain.ranges import PACKAGED_RANGES, RangesError, load_ranges
    from starter.api import create_app
    from starter.serving import uvicorn_options

    try:
        settings = get_settings()
        web = create_app(settings)
        # the app loads the ranges file as it starts; a broken one is said here in one line, before serving
        load_ranges(settings.machine_ranges_file or PACKAGED_RANGES)
    except ValidationError as exc:  # one line per bad setting, no traceback
        raise fail("\n".join(setting_errors(exc))) from None
    except (InsecureSettings, RangesError) as exc:
        raise fail(str(exc)) from None
    configure_logging()
    uvicorn.run(
        web, host=host or settings.api_host, port=port or settings.api_port, log_level="info", **uvicorn_options()
    )


def inbox(
    once: Annotated[bool, typer.Option("--once", help="read every folder once, then exit")] = False,
) -> None:
    """Read the inbound mailbox over IMAP (LEADLOOP_IMAP_*): store each reply, bounce or complaint, signal its
    lead, then mark or move it. Runs until stopped; IDLE where the server offers it, polling otherwise.

    A message is marked (or moved) only after it is stored, so a crash loses nothing; one read twice is kept
    once, and its lead's workflow applies it once. A refused login or a missing folder ends it with the reason.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from leadloop.infra.imap import ImapError
    from leadloop.services.imap_reader import InboxReader
    from starter.cli.connections import database, temporal

    try:
        settings = get_settings()
    except ValidationError as exc:  # one line per bad setting, no traceback
        raise fail("\n".join(setting_errors(exc))) from None
    if problems := settings.imap_problems():
        raise fail("`leadloop inbox` needs its mailbox: " + "; ".join(problems))
    try:
        # it verifies the VERP tokens the worker signed: a deployment with the published key stops here too
        settings.refuse_unsafe_secrets("the IMAP reader")
    except InsecureSettings as exc:
        raise fail(str(exc)) from None
    configure_logging()
    logging.getLogger("imapclient").setLevel(logging.WARNING)  # a line per connection and command otherwise

    async def run() -> str:
        async with database(settings, migrated=True) as sessions:
            client = await temporal(settings, lazy=True)  # it stores while Temporal is down; signals later
            done = await InboxReader(settings, sessions, client).run(once=once)
            summary = f"{done.stored} message(s) stored, {done.again} stored before, {done.marked} marked"
            if done.failed:
                raise fail(f"{summary}; {done.failed} could not be stored (the log says why), left unmarked")
            return summary

    try:
        summary = asyncio.run(run())
    except KeyboardInterrupt:
        return
    except ImapError as exc:
        raise fail(str(exc)) from None
    except SQLAlchemyError as exc:  # --once: nothing was marked, the next run reads the same messages
        raise fail(f"the database: {exc}; nothing was marked") from None
    console.print(summary)


def demo(
    leads_csv: Annotated[Path | None, typer.Option("--leads", help="CSV to enroll")] = None,
    cadence: str = "welcome",
    time_scale: Annotated[float | None, typer.Option(help="demo speed (default 86400: a day per second)")] = None,
) -> None:
    """Run the embedded stack (dev server, worker, mailbox) and enroll the sample leads."""
    need_extra("demo", "`leadloop demo`")
    from starter.demo import run_demo  # the whole stack, aiosmtpd (the `demo` extra) and the HTTP service

    configure_logging()
    settings = get_settings().model_copy(update={"demo": True})  # the published keys are fine on one's laptop
    if time_scale is not None or "time_scale" not in settings.model_fields_set:
        settings = settings.model_copy(update={"time_scale": time_scale or 86400.0})
    try:
        asyncio.run(run_demo(settings, leads_csv, cadence))
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        raise fail(str(exc)) from None
