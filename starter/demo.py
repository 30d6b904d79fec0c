"""`make demo`: the embedded stack (dev server, mailbox, worker) with the sample leads enrolled."""

import asyncio
import contextlib
import email
import email.policy
import html as html_text
import json
import logging
import re
import secrets
import signal
from collections.abc import Generator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosmtplib
import httpx
import uvicorn
from pydantic import SecretStr

from leadloop import DATA_DIR
from leadloop.domain.cadence import cadence_path, load_cadence
from leadloop.domain.intake import LeadIn, parse_csv
from leadloop.domain.mail import parse_sender
from leadloop.domain.recycle import current_recycle
from leadloop.domain.routing import load_roster
from leadloop.domain.scoring import current_scoring
from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.settings import DEV_SERVER_DB, Settings
from leadloop.infra.temporal import connect
from leadloop.services.enrollment import enroll_leads
from leadloop.services.roster import import_roster
from starter.api import create_app
from starter.demo_inbound import REPLY_TEXT, DemoLead, play_replies
from starter.devserver import start_dev_server, stop_process, ui_codec_endpoint
from starter.mailbox import InboundRoute, serve_mailbox
from starter.output import plain_console, styled
from starter.serving import uvicorn_options

log = logging.getLogger("leadloop.demo")


async def _demo_reader(settings: Settings, address: str, stop: asyncio.Event) -> None:
    """Plays the first lead reading the welcome email: the mail client shows the pixel, the reader clicks
    'pricing' in a browser, the site's beacon reports the page; the score crosses the threshold."""
    found: EmailMessage | None = None
    while found is None and not stop.is_set():
        for path in sorted(settings.mail_dir.glob("*welcome*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address in str(message["To"]) and isinstance(message, EmailMessage):
                found = message
                break
        else:
            await asyncio.sleep(0.5)
    if found is None:
        return
    part = found.get_body(("html",))
    html = part.get_content() if part is not None else ""
    pixel = re.search(r'<img src="([^"]+/o/[^"]+)"', html)
    links = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+/c/[^"]+)"', html)]
    if not pixel or not links:
        return
    await asyncio.sleep(settings.machine_min_delay + 1)  # a reader is slower than a scanner
    browser = {
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "sec-fetch-mode": "navigate",
    }
    async with httpx.AsyncClient(timeout=10) as http:
        await http.get(pixel.group(1).replace("&amp;", "&"), headers={"user-agent": "Thunderbird/128.5.0 (X11)"})
        click = await http.get(links[0], headers=browser)
        landing = click.headers.get("location", "")
        visitor = parse_qs(urlsplit(landing).query).get("ll", [""])[0]
        if visitor and settings.site_keys:
            page = landing.split("?")[0]
            # the beacon reports the page's title too: the rep reads it beside the path
            shown = re.search(r"<title>([^<]*)</title>", (await http.get(page, headers=browser)).text)
            body = json.dumps(
                {
                    "site_key": settings.site_keys[0],
                    "visitor": visitor,
                    "url": page,
                    "title": html_text.unescape(shown.group(1)) if shown else None,
                }
            )
            # what a browser sends with the page's sendBeacon: the page's origin and address
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(page))
            sent_from = {"content-type": "text/plain", "origin": origin, "referer": page}
            await http.post(f"{settings.public_url}/v", content=body, headers={**browser, **sent_from})
    console.print(
        styled(
            "demo reader",
            "bold",
            f": {address} opened the welcome email, clicked through to "
            f"{landing.split('?')[0]} and browsed it: watch lead 1 go to sales (`.venv/bin/leadloop state 1`, "
            "the rep's email in the mail folder)",
        )
    )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the demo's event loop; Ctrl-C is the demo's to handle, not uvicorn's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


console = plain_console()

#: the demo's bounce domain (unless LEADLOOP_BOUNCE_DOMAIN names one): every send's envelope sender is a VERP
#: address there, and the local mailbox takes its mail, so an out-of-office or a bounce names its send
DEMO_BOUNCE_DOMAIN = "bounces.leadloop.example"
#: who writes back in the demo (with the sample leads): she replies to her welcome email, he is out of the office
REPLIER = "olivia.bennett@example.com"
AWAY = "lukas.mueller@example.de"


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: its HTTP service may use the published keys, and a rep's response deadline runs in
    real time (unless LEADLOOP_REP_TIME_SCALE says otherwise), so a person can act on the rep's email before the
    lead lapses to the next rep, while cadence days pass in seconds."""
    rep_scale = settings.rep_time_scale if settings.rep_time_scale is not None else 1.0
    bounce_domain = settings.bounce_domain or DEMO_BOUNCE_DOMAIN
    return settings.model_copy(update={"demo": True, "rep_time_scale": rep_scale, "bounce_domain": bounce_domain})


def writers_back(leads: list[LeadIn], started: set[str]) -> tuple[DemoLead, DemoLead] | None:
    """Who replies and who is away: the sample's Olivia and Lukas, or (another CSV) its second and third leads;
    only leads whose workflow this run started (a resumed demo does not write back twice). None: no such pair."""
    fresh = [lead for lead in leads if lead.email in started]
    by_email = {lead.email: lead for lead in fresh}
    replier, away = by_email.get(REPLIER), by_email.get(AWAY)
    if (replier is None or away is None) and len(fresh) >= 3:
        replier, away = fresh[1], fresh[2]
    if replier is None or away is None:
        return None

    def demo_lead(lead: LeadIn) -> DemoLead:
        name = " ".join(part for part in (lead.first_name, lead.last_name) if part) or lead.email
        return DemoLead(name=name, email=lead.email, locale=lead.locale or "en")

    return demo_lead(replier), demo_lead(away)


async def _demo_writers(settings: Settings, replier: DemoLead, away: DemoLead, stop: asyncio.Event) -> None:
    """Plays two leads writing back to their welcome emails over SMTP, and says where to watch."""
    try:
        sent = await play_replies(settings.mail_dir, settings.smtp_host, settings.smtp_port, replier, away, stop)
    except (aiosmtplib.SMTPException, OSError) as exc:  # the demo goes on without them
        console.print(styled("demo replies", "yellow", f": could not be sent to the local mailbox: {exc}"))
        return
    if len(sent) < 2:
        return
    console.print(
        styled(
            "demo replies",
            "bold",
            f': {replier.email} answered her welcome email "{REPLY_TEXT}"; {away.email}\'s mail server sent an '
            f"out-of-office with a return date. Watch them in `.venv/bin/leadloop inbound list`, "
            "`.venv/bin/leadloop status <lead id>` (inbound: …) and the Temporal UI (the 'inbound' signals).",
        )
    )


async def run_demo(settings: Settings, leads_csv: Path | None, cadence_name: str) -> None:
    settings = demo_settings(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    cadence = load_cadence(cadence_path(settings.cadence_dir, cadence_name))
    parsed = parse_csv(leads_csv or DATA_DIR / "examples" / "leads.csv")
    roster = load_roster(DATA_DIR / "examples" / "reps.yaml")
    await upgrade_database(settings.database_url)
    if settings.encryption_keys and settings.codec_token is None:  # the UI needs the codec server to read
        settings = settings.model_copy(update={"codec_token": SecretStr(secrets.token_urlsafe(24))})
    server = await start_dev_server(settings.state_dir / DEV_SERVER_DB, codec_endpoint=ui_codec_endpoint(settings))
    mailbox = None
    http: asyncio.Task[None] | None = None
    api: _EmbeddedServer | None = None
    inbound_engine = make_engine(settings.database_url)
    try:
        import worker as worker_module  # the worker is the one process allowed to load activities

        # the worker's Prometheus endpoint, as `python worker.py` serves it (the SDK runtime is per process)
        client = await connect(settings, runtime=worker_module.metrics_runtime(settings))
        # mail for the From/Reply-To and bounce addresses goes through the inbound pipeline, as a real inbox would
        route = InboundRoute.from_settings(settings, make_sessionmaker(inbound_engine), client)
        mailbox = await serve_mailbox(settings.mail_dir, settings.smtp_host, settings.smtp_port, inbound=route)
        api = _EmbeddedServer(
            uvicorn.Config(
                create_app(settings, client=client),
                host=settings.api_host,
                port=settings.api_port,
                log_level="warning",
                **uvicorn_options(),
            )
        )
        http = asyncio.create_task(api.serve())

        async with worker_module.build_worker(client, settings):
            engine = make_engine(settings.database_url)
            async with make_sessionmaker(engine)() as session:
                await import_roster(session, roster)
                await session.commit()
            report = await enroll_leads(
                parsed.leads,
                cadence,
                sessionmaker=make_sessionmaker(engine),
                client=client,
                task_queue=settings.task_queue,
                sales_task_queue=settings.sales_task_queue,
                time_scale=settings.time_scale,
                rep_time_scale=settings.rep_time_scale,
                source="demo",
                scoring=current_scoring(settings.scoring_file),
                recycle=current_recycle(settings.cadence_dir),
            )
            await engine.dispose()
            for error in parsed.errors:
                console.print(styled(f"skipped row {error.row}", "yellow", f": {error.field}: {error.reason}"))
            day = 86400 / settings.time_scale
            reply_to = parse_sender(settings.from_address)[1]
            encryption = (
                f"on (key '{settings.encryption_key_id}'); the UI decodes through {settings.public_url}/codec/…"
                if settings.encryption_keys
                else "off (set LEADLOOP_ENCRYPTION_KEYS to seal lead data in Temporal)"
            )
            console.print()
            console.print(
                styled(
                    "leadloop demo",
                    "bold",
                    f": {len(report.results)} leads: "
                    f"{report.count(workflow='started')} started, "
                    f"{report.count(workflow='already_running')} already running, "
                    f"{report.count(workflow='finished_earlier')} finished their cadence earlier "
                    f"(cadence '{cadence.name}', {len(cadence.steps)} steps; a cadence day lasts {day:g} s)\n"
                    f"  Temporal UI   http://localhost:8233/namespaces/{settings.temporal_namespace}/workflows\n"
                    f"  encryption    {encryption}\n"
                    f"  mail folder   {settings.mail_dir}\n"
                    f"  HTTP service  {settings.public_url}/docs (pixel, clicks, unsubscribe, beacon, POST /leads)\n"
                    f"  demo website  {settings.site_url}/pricing\n"
                    f"  lead state    .venv/bin/leadloop state <lead id>\n"
                    f"  replies       .venv/bin/leadloop inbound list (mail to {reply_to} and to "
                    f"bounces+…@{settings.bounce_domain} at the local mailbox goes inbound)\n"
                    f"  engage        open a link in an .eml file, or .venv/bin/leadloop event click 1 "
                    f"--url {settings.site_url}/pricing\n"
                    f"  reps          .venv/bin/leadloop reps list (from examples/reps.yaml)\n"
                    "Ctrl-C stops everything; `make demo` again resumes the same leads.\n",
                )
            )
            first = report.results[0] if report.results else None
            players = []
            if first is not None and first.workflow == "started":
                players.append(asyncio.create_task(_demo_reader(settings, first.email, stop)))
            started = {result.email for result in report.results if result.workflow == "started"}
            if (pair := writers_back(parsed.leads, started)) is not None:
                players.append(asyncio.create_task(_demo_writers(settings, *pair, stop)))
            await stop.wait()
            for player in players:
                player.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await player
            console.print("stopping: worker, HTTP service, mailbox, Temporal dev server ...")
    finally:
        if api is not None and http is not None:
            api.should_exit = True
            await http
        if mailbox is not None:
            mailbox.close()
            await mailbox.wait_closed()
        await inbound_engine.dispose()
        await stop_process(server)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
