"""`make bench`: leadloop against the floors of its own parts, measured in one run on this machine.

For each configuration (dev server persistence x leadloop's database) it starts, on loopback, the Temporal
dev server, an SMTP sink, leadloop's worker and HTTP service as their own processes, and measures:

- floors: the bare `start_workflow` rate; N workflows x S steps (durable timer + no-op activity, the drip's
  shape) on the same dev server with a worker process on the SDK's default settings, as leadloop's; and
  aiosmtplib sending N x S rendered messages to the same sink with leadloop's connection policy (the
  worker's pool: up to LEADLOOP_SMTP_MESSAGES_PER_CONNECTION messages on one connection) and the worker's
  activity concurrency;
- leadloop: N leads from a CSV enrolled into an S-step cadence at a high time scale (enrolments/s, emails/s
  end to end, each against its floor), the open-to-escalation latency (pixel request -> the rep's
  notification accepted by the sink) while a background drip runs at half of the measured top speed,
  history events per lead per cycle, database rows and bytes per lead, and every process's peak RSS;
- once, the memory of every process with `--mem-leads` leads waiting mid-cadence;
- once, before the configurations, µs per lookup in the shipped ranges file (`--range-hits`, bench/ranges.py).

Writes bench/results/<date>-<host>.json and .md and prints the table. Run: `make bench`, or
`PYTHONPATH=. .venv/bin/python bench/run.py --leads 2000 --steps 3`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from temporalio.client import Client
from temporalio.service import RPCError

from activities.email import SmtpConfig, SmtpPool
from bench.floor import Floor
from bench.inbound import ReplyTrigger, inbound_throughput, wait_for_first_sends
from bench.ranges import range_lookups
from leadloop import PROJECT_ROOT
from leadloop.domain.intake import parse_csv
from leadloop.domain.routing import load_roster
from leadloop.domain.search import dev_server_search_attribute_args
from leadloop.domain.tokens import Signer
from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.process import run_and_exit
from leadloop.infra.settings import Settings
from leadloop.infra.temporal import connect
from leadloop.services.enrollment import enroll_leads
from leadloop.services.roster import import_roster
from starter.devserver import SQLITE_PRAGMAS, start_dev_server, stop_process, temporal_cli

RESULTS = Path(__file__).parent / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TIME_SCALE = 86400.0  # a cadence day lasts a second
#: The latency phase's background drip: leads mid-cadence sending one email every STEADY_PERIOD_S seconds
STEADY_PERIOD_S = 10.0
STEADY_STEPS = 120
MAIL_CLIENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> dict[str, int]:
    """Resident and peak resident memory of a process (KiB), from /proc."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_usage(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Share of one core each process used over `wall` seconds."""
    return {name: round((after[name] - before[name]) / wall, 2) for name in before if name in after}


def tree_rss_kib(pid: int) -> dict[str, int]:
    """The process and its children (the dev server runs as `temporal` under nothing else, but be safe)."""
    total = rss_kib(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for kid in child.read_text().split():
            with_kid = rss_kib(int(kid))
            for key, value in with_kid.items():
                total[key] = total.get(key, 0) + value
    return total


# ----------------------------------------------------------------------------------------------- the sink


@dataclass
class Sink:
    """An SMTP server that accepts everything and remembers when; keeps bodies only of watched leads."""

    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (time, outbox key)
    keep: tuple[str, ...] = (
        "lead0@",
        "hot",
        "reply",
    )  # recipients whose message is kept (the SMTP floor's sample, latency)
    bodies: dict[str, bytes] = field(default_factory=dict)  # recipient -> the first message to them
    notifications: dict[str, asyncio.Future[float]] = field(default_factory=dict)  # "lead-<id>" -> arrival
    server: asyncio.AbstractServer | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.perf_counter()
        content = envelope.original_content or b""
        head = content[: content.find(b"\r\n\r\n")].decode("utf-8", "replace")
        found = re.search(r"^X-Leadloop-Outbox-Key: (\S+)", head, re.M)
        key = found.group(1) if found else ""
        self.arrivals.append((now, key))
        for rcpt in envelope.rcpt_tos:
            if rcpt.startswith(self.keep) and rcpt not in self.bodies:
                self.bodies[rcpt] = content
        lead = key.split(".")[0]
        if key.endswith(".notify") and lead in self.notifications and not self.notifications[lead].done():
            self.notifications[lead].set_result(now)
        return "250 2.0.0 accepted"

    async def start(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, enable_SMTPUTF8=True), "127.0.0.1", port)

    async def wait_for_addresses(self, addresses: list[str], within: float) -> None:
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            if all(a in self.bodies for a in addresses):
                return
            await asyncio.sleep(0.05)

    async def wait_for(self, count: int, since: int, within: float) -> float:
        """Until `count` messages arrived after the first `since`; the last one's arrival time."""
        deadline = time.perf_counter() + within
        while len(self.arrivals) - since < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(self.arrivals) - since} of {count} messages within {within:.0f} s")
            await asyncio.sleep(0.05)
        return max(t for t, _ in self.arrivals[since : since + count])


# ------------------------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    tmp: Path
    dev_mode: str  # "sqlite-wal" | "in-memory"
    db: str  # "sqlite" | "postgresql"
    temporal_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    server: asyncio.subprocess.Process | None = None
    worker: asyncio.subprocess.Process | None = None
    sales: asyncio.subprocess.Process | None = None  # the sales worker, with --sales-worker
    api: asyncio.subprocess.Process | None = None
    sink: Sink = field(default_factory=Sink)
    database_url: str = ""
    pg_database: str = ""
    server_args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def env(self) -> dict[str, str]:
        rules = self.tmp / "rules"
        return {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "LEADLOOP_TEMPORAL_ADDRESS": self.address,
            "LEADLOOP_TASK_QUEUE": "bench",
            "LEADLOOP_DATABASE_URL": self.database_url,
            "LEADLOOP_SMTP_PORT": str(self.smtp_port),
            "LEADLOOP_CADENCE_DIR": str(rules),
            "LEADLOOP_SCORING_FILE": str(rules / "scoring.yaml"),
            "LEADLOOP_ROUTING_FILE": str(rules / "routing.yaml"),
            "LEADLOOP_PUBLIC_URL": f"http://127.0.0.1:{self.api_port}",
            "LEADLOOP_MACHINE_MIN_DELAY": "0",
            "LEADLOOP_TIME_SCALE": str(TIME_SCALE),
            "LEADLOOP_WORKER_METRICS_ADDRESS": "",
            "LEADLOOP_STATE_DIR": str(self.tmp / "state"),
            "LEADLOOP_DEMO": "true",
        }

    def settings(self) -> Settings:
        return Settings(
            _env_file=None,
            **{k.removeprefix("LEADLOOP_").lower(): v for k, v in self.env().items() if k.startswith("LEADLOOP_")},
        )  # type: ignore[arg-type]

    async def start(self, steps: int) -> None:
        write_rules(self.tmp / "rules", steps)
        if self.db == "postgresql":
            import asyncpg  # type: ignore[import-untyped]

            self.pg_database = f"leadloop_bench_{uuid.uuid4().hex[:8]}"
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{self.pg_database}"')
            await admin.close()
            self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.pg_database}"
        else:
            self.database_url = f"sqlite+aiosqlite:///{self.tmp / 'leadloop.db'}"
        await upgrade_database(self.database_url)
        engine = make_engine(self.database_url)
        async with make_sessionmaker(engine)() as session:
            await import_roster(session, load_roster(self.tmp / "rules" / "reps.yaml"))
            await session.commit()
        await engine.dispose()
        args = [
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--headless",
            "--log-level",
            "never",
        ]
        if self.dev_mode == "sqlite-wal":
            args += ["--db-filename", str(self.tmp / "temporal.db")]
            for pragma in SQLITE_PRAGMAS:
                args += ["--sqlite-pragma", pragma]
        args += dev_server_search_attribute_args()
        self.server_args = args
        self.server = await start_dev_server(None, port=self.temporal_port, args=args)
        await self.sink.start(self.smtp_port)

    async def restart_server(self) -> None:
        """The dev server again, on the same port and (sqlite-wal) the same database file."""
        self.server = await start_dev_server(None, port=self.temporal_port, args=self.server_args)

    async def start_leadloop(self) -> None:
        await self.start_worker()
        if self.settings().sales_task_queue:  # --sales-worker: the sales path in a process of its own
            self.sales = await self._worker_process("sales")
        await self.start_api()

    async def start_worker(self) -> None:
        self.worker = await self._worker_process("nurture" if self.settings().sales_task_queue else "all")

    async def _worker_process(self, role: str) -> asyncio.subprocess.Process:
        with (self.tmp / f"worker-{role}.log").open("ab") as log:  # the child keeps its own descriptor
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "worker.py",
                cwd=PROJECT_ROOT,
                env={**self.env(), "LEADLOOP_WORKER_ROLE": role},
                stdout=log,
                stderr=log,
            )

    async def start_api(self) -> None:
        with (self.tmp / "api.log").open("ab") as api_log:
            self.api = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "starter.cli",
                "api",
                "--port",
                str(self.api_port),
                cwd=PROJECT_ROOT,
                env=self.env(),
                stdout=api_log,
                stderr=api_log,
            )
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"http://127.0.0.1:{self.api_port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the HTTP service did not start")

    def cpu(self, **extra: asyncio.subprocess.Process) -> dict[str, float]:
        found = {"bench (client, sink)": cpu_seconds(os.getpid())}
        named = {
            "worker": self.worker,
            "sales worker": self.sales,
            "http": self.api,
            "dev server": self.server,
            **extra,
        }
        for name, proc in named.items():
            if proc is not None and proc.returncode is None:
                found[name] = cpu_seconds(proc.pid)
        return found

    def memory(self) -> dict[str, dict[str, int]]:
        found = {}
        for name, proc in (
            ("worker", self.worker),
            ("sales worker", self.sales),
            ("http", self.api),
            ("dev server", self.server),
        ):
            if proc is not None and proc.returncode is None:
                found[name] = tree_rss_kib(proc.pid)
        found["bench (client, sink)"] = rss_kib(os.getpid())
        return found

    async def stop(self) -> None:
        for proc in (self.api, self.worker, self.sales, self.server):
            if proc is not None:
                await stop_process(proc)
        if self.sink.server is not None:
            self.sink.server.close()
        if self.pg_database:
            import asyncpg

            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            await admin.close()


def write_rules(folder: Path, steps: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    window = '{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}'
    lines = [
        f'  - {{id: s{i}, wait: {"0" if i == 0 else "1d"}, template: welcome, subject: "Step {i}"}}'
        for i in range(steps)
    ]
    (folder / "drip.yaml").write_text(
        f"name: drip\nversion: 1\ndefault_locale: en\nsend_window: {window}\n"
        "escalation: {threshold: 1000}\nsteps:\n" + "\n".join(lines) + "\n"
    )
    (folder / "hot.yaml").write_text(
        f"name: hot\nversion: 1\ndefault_locale: en\nsend_window: {window}\n"
        "escalation: {threshold: 50}\nsteps:\n"
        "  - {id: s0, wait: 0, template: welcome, subject: Hot}\n"
        "  - {id: s1, wait: 300d, template: tips, subject: Later}\n"
    )
    (folder / "idle.yaml").write_text(
        f"name: idle\nversion: 1\ndefault_locale: en\nsend_window: {window}\n"
        "escalation: {threshold: 1000}\nsteps:\n"
        "  - {id: s0, wait: 0, template: welcome, subject: First}\n"
        "  - {id: s1, wait: 365d, template: tips, subject: Much later}\n"
    )
    steady = "".join(
        f"  - {{id: s{i}, wait: {'0' if i == 0 else f'{STEADY_PERIOD_S:.0f}d'}, template: welcome, "
        f'subject: "Steady {i}"}}\n'
        for i in range(STEADY_STEPS)
    )
    (folder / "steady.yaml").write_text(
        f"name: steady\nversion: 1\ndefault_locale: en\nsend_window: {window}\n"
        "escalation: {threshold: 1000}\nsteps:\n" + steady
    )
    (folder / "sleepy.yaml").write_text(
        f"name: sleepy\nversion: 1\ndefault_locale: en\nsend_window: {window}\n"
        "escalation: {threshold: 1000}\nsteps:\n"
        "  - {id: s0, wait: 300d, template: welcome, subject: Later}\n"
    )
    (folder / "scoring.yaml").write_text("version: 1\nengagement:\n  - {name: open, kind: open, points: 50}\n")
    (folder / "routing.yaml").write_text("version: 1\nrules:\n  - {name: all, team: bench}\n")
    (folder / "reps.yaml").write_text(
        "teams:\n  - name: bench\n    strategy: round_robin\n    sla: 400h\n"
        "    business_hours: {days: [mon, tue, wed, thu, fri, sat, sun], start: '00:00', end: '23:59'}\n"
        "    reps:\n"
        + "".join(
            f"      - {{email: rep{i}@sales.example, name: Rep {i}, timezone: UTC, capacity: 100000}}\n"
            for i in range(4)
        )
    )


def write_csv(path: Path, first: int, count: int, tag: str) -> Path:
    rows = ["email,first_name,company,timezone,locale"]
    rows += [f"{tag}{i}@leads.example,Lead{i},Company {i % 97},Europe/Athens,en" for i in range(first, first + count)]
    path.write_text("\n".join(rows) + "\n")
    return path


async def enroll(stack: Stack, client: Client, csv: Path, cadence_name: str) -> tuple[float, list[int]]:
    from leadloop.domain.cadence import cadence_path, load_cadence
    from leadloop.domain.scoring import current_scoring

    settings = stack.settings()
    cadence = load_cadence(cadence_path(settings.cadence_dir, cadence_name))
    parsed = parse_csv(csv)
    engine = make_engine(stack.database_url)
    began = time.perf_counter()
    report = await enroll_leads(
        parsed.leads,
        cadence,
        sessionmaker=make_sessionmaker(engine),
        client=client,
        task_queue="bench",
        sales_task_queue=settings.sales_task_queue,
        time_scale=TIME_SCALE,
        source="bench",
        scoring=current_scoring(settings.scoring_file),
    )
    took = time.perf_counter() - began
    await engine.dispose()
    ids = [r.lead_id for r in report.results if r.lead_id is not None]
    assert report.count(workflow="started") == len(parsed.leads), "every lead must start"
    return took, ids


# --------------------------------------------------------------------------------------------- measures


async def orchestration_floor(stack: Stack, leads: int, steps: int) -> dict[str, Any]:
    queue = f"floor-{uuid.uuid4()}"
    log = (stack.tmp / "floor.log").open("ab")
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "bench/floor.py",
        stack.address,
        queue,
        cwd=PROJECT_ROOT,
        env=stack.env(),
        stdout=log,
        stderr=log,
    )
    try:
        client = await Client.connect(stack.address)
        gate = asyncio.Semaphore(32)  # enrol_leads' concurrency

        async def start(i: int) -> Any:
            async with gate:
                return await client.start_workflow(
                    Floor.run, args=[steps, 1.0], id=f"floor-{queue}-{i}", task_queue=queue
                )

        cpu_before = stack.cpu(floor_worker=worker)
        began = time.perf_counter()
        handles = await asyncio.gather(*(start(i) for i in range(leads)))
        started = time.perf_counter()
        waiters = asyncio.Semaphore(200)  # each result() is a long poll: the namespace limits them

        async def result(handle: Any) -> None:
            async with waiters:
                await handle.result()

        await asyncio.gather(*(result(h) for h in handles))
        done = time.perf_counter()
        cpu = cpu_usage(cpu_before, stack.cpu(floor_worker=worker), done - began)
        events = [len((await h.fetch_history()).events) for h in handles[:20]]
    finally:
        await stop_process(worker)
    return {
        "starts_per_s": leads / (started - began),
        "steps_per_s": leads * steps / (done - began),
        "history_events_per_workflow": statistics.median(events),
        "cpu_cores": cpu,
    }


async def smtp_floor(stack: Stack, messages: int, sample: bytes) -> dict[str, float]:
    gate = asyncio.Semaphore(stack.settings().worker_max_activities)  # as many at once as the worker runs
    since = len(stack.sink.arrivals)

    # the worker's connection policy: its pool, as many messages per connection as it sends
    pool = SmtpPool(replace(SmtpConfig.from_settings(stack.settings()), timeout=30))

    async def send(i: int) -> None:
        async with gate:
            conn = await pool.acquire()
            ok = False
            try:
                await conn.smtp.sendmail("hello@leadloop.example", [f"floor{i}@leads.example"], sample)
                ok = True
            finally:
                await pool.release(conn, ok)

    began = time.perf_counter()
    await asyncio.gather(*(send(i) for i in range(messages)))
    took = time.perf_counter() - began
    await pool.aclose()
    assert len(stack.sink.arrivals) - since == messages
    return {"emails_per_s": messages / took}


async def database_size(stack: Stack, leads: int) -> dict[str, Any]:
    engine = make_engine(stack.database_url)
    tables = ("leads", "outbox", "engagement_events", "assignments", "dispositions", "suppressions")
    async with engine.connect() as conn:
        rows = {t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in tables}
        grouped = (await conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status"))).all()
        statuses: dict[str, int] = {str(status): int(count) for status, count in grouped}
        if stack.db == "postgresql":
            size = (
                await conn.execute(
                    text(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                        "c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"
                    )
                )
            ).scalar_one()
        else:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            page = (await conn.execute(text("PRAGMA page_size"))).scalar_one()
            pages = (await conn.execute(text("PRAGMA page_count"))).scalar_one()
            size = page * pages
    await engine.dispose()
    return {
        "rows_per_lead": sum(rows.values()) / leads,
        "bytes_per_lead": float(size) / leads,
        "rows": rows,
        "outbox_status": statuses,
    }


def pixel_url(content: bytes) -> str:
    message = message_from_bytes(content)
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found = re.search(r'<img src="([^"]+/o/[^"]+\.gif)"', payload.decode())
            if found:
                return found.group(1).replace("&amp;", "&")
    raise AssertionError("no pixel in the email")


#: What sets off a hand-over in a latency phase: given the lead's id and its first email, it acts (a pixel
#: request, a reply) and returns when it has.
Trigger = Callable[[int, bytes], Awaitable[None]]


async def pixel_open(content: bytes) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(pixel_url(content), headers={"user-agent": MAIL_CLIENT})
    assert answer.status_code == 200


async def escalation_latency(
    stack: Stack,
    client: Client,
    hot: int,
    background_rate: float,
    first_id: int,
    trigger: Trigger | None = None,
    tag: str = "hot",
) -> dict[str, Any]:
    """A pixel request (or `trigger`) -> the rep's notification at the sink, for `hot` leads, while
    `background_rate` emails/s of other leads' drip flow through the same worker."""
    stop = asyncio.Event()

    async def background() -> None:
        """A steady drip of leads mid-cadence: rate × STEADY_PERIOD_S leads, enrolled one every 1/rate seconds
        over the first period, each then sending an email every period (no bursts, no new workflows after the
        first period, like the drip it stands for); their workflows are ended when the phase is over."""
        from leadloop.domain.cadence import cadence_path, load_cadence
        from leadloop.domain.intake import LeadIn

        steady = load_cadence(cadence_path(stack.settings().cadence_dir, "steady"))
        engine = make_engine(stack.database_url)
        maker = make_sessionmaker(engine)
        count = max(1, round(background_rate * STEADY_PERIOD_S))
        interval = STEADY_PERIOD_S / count
        next_at = time.perf_counter()
        started: list[Any] = []
        try:
            for i in range(count):
                if stop.is_set():
                    break
                lead = LeadIn(email=f"bg{i}@leads.example", first_name=f"Bg{i}", timezone="Europe/Athens")
                started.append(
                    asyncio.create_task(
                        enroll_leads(
                            [lead],
                            steady,
                            sessionmaker=maker,
                            client=client,
                            task_queue="bench",
                            time_scale=TIME_SCALE,
                            source="bench",
                            sales_task_queue=stack.settings().sales_task_queue,
                        )
                    )
                )
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await stop.wait()
        finally:
            for report in await asyncio.gather(*started, return_exceptions=True):
                for enrolled in getattr(report, "results", []):
                    if enrolled.lead_id is not None:
                        with contextlib.suppress(RPCError):
                            await client.get_workflow_handle(f"lead-{enrolled.lead_id}").terminate("bench phase over")
            await engine.dispose()

    task = asyncio.create_task(background())
    latencies: list[float] = []
    opened_at: dict[int, float] = {}
    timeouts = 0
    try:
        csv = write_csv(stack.tmp / f"{tag}.csv", first_id, hot, tag)
        _, ids = await enroll(stack, client, csv, "hot")
        # every hot lead's first email arrives before the first open: the opens meet the steady drip, not the
        # hot leads' own burst of first sends
        await stack.sink.wait_for_addresses([f"{tag}{first_id + n}@leads.example" for n in range(len(ids))], 120)
        for n, lead in enumerate(ids):
            address = f"{tag}{first_id + n}@leads.example"
            for _ in range(1200):
                if address in stack.sink.bodies:
                    break
                await asyncio.sleep(0.05)
            content = stack.sink.bodies[address]
            arrived = stack.sink.notifications.setdefault(f"lead-{lead}", asyncio.get_running_loop().create_future())
            sent, sent_wall = time.perf_counter(), time.time()
            if trigger is None:
                await pixel_open(content)
            else:
                await trigger(lead, content)
            try:
                latencies.append(await asyncio.wait_for(arrived, 60) - sent)
            except TimeoutError:  # counted at the bound, and reported, rather than losing the run
                latencies.append(60.0)
                timeouts += 1
            opened_at[lead] = sent_wall
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    phases = await latency_phases(client, opened_at)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]

    return {
        "samples": len(latencies),
        "p50_s": pct(50),
        "p95_s": pct(95),
        "p99_s": pct(99),
        "max_s": latencies[-1],
        "all_s": [round(x, 3) for x in latencies],
        "phases": phases,
        "over_60_s": timeouts,
    }


#: Where an escalation's time goes, read off each hot lead's history (server timestamps).
PHASES = (
    ("http_to_signal", "pixel request -> engagement signal in the history (HTTP service, its database, the RPC)"),
    ("signal_to_assign", "signal -> routing scheduled (the workflow task: queue + worker)"),
    ("assign_queue", "routing scheduled -> started (activity queue)"),
    ("assign_run", "routing started -> completed"),
    ("assign_to_notify", "routing completed -> notification scheduled (the workflow task)"),
    ("notify_queue", "notification scheduled -> started (activity queue)"),
    ("notify_run", "notification started -> completed (render, database, SMTP)"),
)


async def latency_phases(client: Client, opened_at: dict[int, float]) -> dict[str, dict[str, float]]:
    """p50 / p99 / max of each phase of the escalation, over the hot leads."""
    from temporalio.api.enums.v1 import EventType

    samples: dict[str, list[float]] = {name: [] for name, _ in PHASES}
    for lead, opened in opened_at.items():
        history = await client.get_workflow_handle(f"lead-{lead}").fetch_history()
        at: dict[str, float] = {}
        scheduled: dict[int, str] = {}
        for event in history.events:
            when = event.event_time.ToDatetime(tzinfo=UTC).timestamp()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED and "signal" not in at:
                signal = event.workflow_execution_signaled_event_attributes.signal_name
                if signal == "engagement" and when >= opened:  # the open's signal (one clock: the same machine)
                    at["signal"] = when
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                kind = event.activity_task_scheduled_event_attributes.activity_type.name
                if kind in ("assign_lead", "notify_rep") and f"{kind}.scheduled" not in at:
                    at[f"{kind}.scheduled"], scheduled[event.event_id] = when, kind
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                kind = scheduled.get(event.activity_task_started_event_attributes.scheduled_event_id, "")
                if kind and f"{kind}.started" not in at:
                    at[f"{kind}.started"] = when
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                kind = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id, "")
                if kind and f"{kind}.completed" not in at:
                    at[f"{kind}.completed"] = when
        steps = ["signal"] + [
            f"{kind}.{mark}" for kind in ("assign_lead", "notify_rep") for mark in ("scheduled", "started", "completed")
        ]
        marks = [opened] + [at.get(k) for k in steps]
        if any(m is None for m in marks):
            continue
        for (name, _), start, end in zip(PHASES, marks, marks[1:], strict=False):
            assert start is not None and end is not None
            samples[name].append(max(0.0, end - start))
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        if values:
            values.sort()
            p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
            out[name] = {"p50_s": values[len(values) // 2], "p99_s": p99, "max_s": values[-1]}
    return out


async def settle(stack: Stack, quiet: float = 0.1, within: float = 300) -> None:
    """Until the worker has run every new lead's first workflow task: its CPU stays under `quiet` of a core."""
    assert stack.worker is not None
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        before = cpu_seconds(stack.worker.pid)
        await asyncio.sleep(2)
        if (cpu_seconds(stack.worker.pid) - before) / 2 < quiet:
            return


async def start_profiler(stack: Stack, output: Path) -> tuple[asyncio.subprocess.Process, Path]:
    """py-spy samples the worker process while leadloop's drip runs (speedscope JSON + a flame graph)."""
    assert stack.worker is not None
    output.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(stack.worker.pid),
        "--rate",
        "50",
        "--format",
        "speedscope",
        "--output",
        str(output),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return proc, output


async def stop_profiler(profiler: tuple[asyncio.subprocess.Process, Path]) -> str:
    proc, output = profiler
    proc.send_signal(2)  # py-spy writes its file on SIGINT
    await proc.wait()
    return str(output)


async def run_config(
    dev_mode: str,
    db: str,
    leads: int,
    steps: int,
    hot: int,
    mem_leads: int,
    profile: Path | None = None,
    inbound: int = 0,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="leadloop-bench-") as tmp:
        stack = Stack(Path(tmp), dev_mode, db)
        result: dict[str, Any] = {"dev_server": dev_mode, "database": db, "leads": leads, "steps": steps}
        try:
            await stack.start(steps)
            print(f"[{dev_mode} / {db}] orchestration floor: {leads} x {steps} steps", flush=True)
            result["floor"] = await orchestration_floor(stack, leads, steps)
            await stack.start_leadloop()
            client = await connect(stack.settings())
            print(f"[{dev_mode} / {db}] leadloop: {leads} leads x {steps} steps", flush=True)
            since = len(stack.sink.arrivals)
            profiler = await start_profiler(stack, profile) if profile else None
            cpu_before = stack.cpu()
            began = time.perf_counter()
            enrol_took, ids = await enroll(stack, client, write_csv(stack.tmp / "leads.csv", 0, leads, "lead"), "drip")
            last = await stack.sink.wait_for(leads * steps, since, within=3600)
            if profiler is not None:
                result["profile"] = await stop_profiler(profiler)
            emails_took = last - began
            result["leadloop"] = {
                "enrolments_per_s": leads / enrol_took,
                "emails_per_s": leads * steps / emails_took,
                "cpu_cores": cpu_usage(cpu_before, stack.cpu(), time.perf_counter() - began),
            }
            sample = stack.sink.bodies["lead0@leads.example"]  # a rendered leadloop email
            print(f"[{dev_mode} / {db}] SMTP floor: {leads * steps} messages", flush=True)
            result["smtp_floor"] = await smtp_floor(stack, leads * steps, sample)
            histories = []
            for lead in ids[:20]:
                histories.append(len((await client.get_workflow_handle(f"lead-{lead}").fetch_history()).events))
            result["leadloop"]["history_events_per_lead_cycle"] = statistics.median(histories)
            result["leadloop"]["history_events_max"] = max(histories)
            result["database_per_lead"] = await database_size(stack, leads)
            half = result["leadloop"]["emails_per_s"] / 2
            print(
                f"[{dev_mode} / {db}] open-to-escalation latency, {hot} leads, drip at {half:.0f} emails/s", flush=True
            )
            result["latency"] = await escalation_latency(stack, client, hot, half, 5_000_000)
            result["latency"]["background_emails_per_s"] = half
            print(f"[{dev_mode} / {db}] reply-to-rep latency, {hot} leads, drip at {half:.0f} emails/s", flush=True)
            trigger = ReplyTrigger(stack.database_url, client, Signer(stack.settings().signing_keys()))
            try:
                result["reply_latency"] = await escalation_latency(
                    stack, client, hot, half, 6_000_000, trigger=trigger, tag="reply"
                )
            finally:
                await trigger.close()
            if inbound:
                print(f"[{dev_mode} / {db}] inbound: {inbound} messages for leads mid-cadence", flush=True)
                _, waiting = await enroll(
                    stack, client, write_csv(stack.tmp / "inbound.csv", 7_000_000, inbound, "inb"), "idle"
                )
                await wait_for_first_sends(stack.database_url, waiting, within=600)
                signer = Signer(stack.settings().signing_keys())
                result["inbound"] = await inbound_throughput(stack.database_url, client, signer, waiting)
            result["memory_kib"] = stack.memory()
            if mem_leads:
                print(f"[{dev_mode} / {db}] {mem_leads} more leads waiting mid-cadence", flush=True)
                took, _ = await enroll(
                    stack, client, write_csv(stack.tmp / "mem.csv", 20_000_000, mem_leads, "mem"), "sleepy"
                )
                await settle(stack)
                result["mid_cadence"] = {
                    "leads": mem_leads,
                    "enrolments_per_s": mem_leads / took,
                    "memory_kib": stack.memory(),
                }
            result["ratios"] = {
                "emails_vs_orchestration_floor": result["leadloop"]["emails_per_s"] / result["floor"]["steps_per_s"],
                "enrolments_vs_bare_starts": result["leadloop"]["enrolments_per_s"] / result["floor"]["starts_per_s"],
                "emails_vs_smtp_floor": result["leadloop"]["emails_per_s"] / result["smtp_floor"]["emails_per_s"],
            }
        finally:
            await stack.stop()
        return result


# ------------------------------------------------------------------------------------------------ report


TARGETS = {
    "emails_vs_orchestration_floor": 0.8,
    "enrolments_vs_bare_starts": 0.7,
}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# leadloop bench, {report['date']} on {report['host']}",
        "",
        f"`{report['command']}` — {report['machine']}, worker cache {report.get('worker_cached_workflows')} "
        f"workflows, {report.get('worker_max_activities')} activities at once"
        + ("; the sales path on its own task queue and worker process" if report.get("sales_worker") else ""),
        "",
    ]
    lines += [
        "| dev server / database | starts/s floor | enrol/s | ratio | steps/s floor | emails/s | ratio | "
        "SMTP floor/s | escalation p50 / p95 / p99 (s) | events/lead | rows, KiB /lead |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in report["configs"]:
        if "ratios" not in r:
            lines.append(f"| {r['dev_server']} / {r['database']} | failed: {r.get('error', '?')} |")
            continue
        lat, db = r["latency"], r["database_per_lead"]
        lines.append(
            f"| {r['dev_server']} / {r['database']} | {r['floor']['starts_per_s']:.0f} | "
            f"{r['leadloop']['enrolments_per_s']:.0f} | {r['ratios']['enrolments_vs_bare_starts']:.2f} | "
            f"{r['floor']['steps_per_s']:.1f} | {r['leadloop']['emails_per_s']:.1f} | "
            f"{r['ratios']['emails_vs_orchestration_floor']:.2f} | {r['smtp_floor']['emails_per_s']:.0f} | "
            f"{lat['p50_s']:.2f} / {lat['p95_s']:.2f} / {lat['p99_s']:.2f} | "
            f"{r['leadloop']['history_events_per_lead_cycle']:.0f} | {db['rows_per_lead']:.1f}, "
            f"{db['bytes_per_lead'] / 1024:.1f} |"
        )
    lines += [
        "",
        "Peak RSS (MiB):",
        "",
        "| dev server / database | worker | sales worker | HTTP | dev server |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in report["configs"]:
        if "memory_kib" in r:
            m = r["memory_kib"]
            peaks = [
                f"{m[k]['VmHWM'] / 1024:.0f}" if k in m else "-"
                for k in ("worker", "sales worker", "http", "dev server")
            ]
            lines.append(f"| {r['dev_server']} / {r['database']} | " + " | ".join(peaks) + " |")
    phased = [r for r in report["configs"] if r.get("latency", {}).get("phases")]
    if phased:
        lines += [
            "",
            "Where an escalation's time goes, p50 / p99 / max (s), from each hot lead's history:",
            "",
            "| phase | " + " | ".join(f"{r['dev_server']} / {r['database']}" for r in phased) + " |",
            "| --- |" + " --- |" * len(phased),
        ]
        for name, meaning in PHASES:
            cells = []
            for r in phased:
                ph = r["latency"]["phases"].get(name)
                cells.append(f"{ph['p50_s']:.2f} / {ph['p99_s']:.2f} / {ph['max_s']:.2f}" if ph else "-")
            lines.append(f"| {meaning} | " + " | ".join(cells) + " |")
    inbound = [r for r in report["configs"] if "reply_latency" in r or "inbound" in r]
    if inbound:
        lines += [
            "",
            "Inbound mail (a mix of 6 out-of-office, 3 hard bounces, 1 reply in 10, for leads mid-cadence), messages/s,"
            " and reply-to-rep latency (the reply stored and signalled -> the rep's notification at the sink) under "
            "the same half-speed drip:",
            "",
            "| dev server / database | classify alone | classify + match + store | signal | end to end | ratio to "
            "classify | reply-to-rep p50 / p95 / p99 (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in inbound:
            i, rl = r.get("inbound"), r.get("reply_latency")
            rates = (
                f"{i['classify_per_s']:.0f} | {i['store_per_s']:.0f} | {i['signal_per_s']:.0f} | "
                f"{i['end_to_end_per_s']:.0f} | {i['end_to_end_vs_classify']:.2f}"
                if i
                else "- | - | - | - | -"
            )
            latency = f"{rl['p50_s']:.2f} / {rl['p95_s']:.2f} / {rl['p99_s']:.2f}" if rl else "-"
            lines.append(f"| {r['dev_server']} / {r['database']} | {rates} | {latency} |")
    if "ranges" in report:
        rg = report["ranges"]
        us = rg["lookup_us"]
        lines += [
            "",
            f"Range lookup in the shipped ranges file ({rg['networks']} networks, version {rg['version']}, loaded in "
            f"{rg['load_s']:.2f} s), µs per hit, median of 5 batches of {rg['hits_per_sort']} (target < "
            f"{rg['target_us']:.0f} µs):",
            "",
            "| in a range, IPv4 | IPv6 | IPv4-mapped | in none, IPv4 | IPv6 | linear scan over ipaddress networks |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {us['in_v4']:.1f} | {us['in_v6']:.1f} | {us['in_v4_mapped']:.1f} | {us['out_v4']:.1f} | "
            f"{us['out_v6']:.1f} | {rg['linear_scan_us']:.0f} |",
        ]
    for r in report["configs"]:
        if "mid_cadence" in r:
            m = r["mid_cadence"]["memory_kib"]
            resident = ", ".join(f"{k} {v['VmRSS'] / 1024:.0f}" for k, v in m.items())
            where = f"{r['dev_server']} / {r['database']}"
            lines += [
                "",
                f"{r['mid_cadence']['leads']} more leads waiting on their cadence's timer ({where}), "
                f"resident MiB: {resident}",
            ]
    lines += [
        "",
        "Targets: "
        + "; ".join(
            f"{name} ≥ {goal}: "
            + ", ".join(
                f"{r['ratios'][name]:.2f} {'met' if r['ratios'][name] >= goal else 'NOT met'}"
                for r in report["configs"]
                if "ratios" in r
            )
            for name, goal in TARGETS.items()
        )
        + (
            f"; range lookup < {report['ranges']['target_us']:.0f} µs: {report['ranges']['lookup_us_worst']:.1f} "
            f"{'met' if report['ranges']['lookup_us_worst'] < report['ranges']['target_us'] else 'NOT met'}"
            if "ranges" in report
            else ""
        ),
    ]
    lines += [
        "p99 open-to-escalation ≤ 1 s: "
        + ", ".join(
            f"{r['latency']['p99_s']:.2f} {'met' if r['latency']['p99_s'] <= 1 else 'NOT met'}"
            for r in report["configs"]
            if "latency" in r
        )
    ]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--hot", type=int, default=100, help="leads whose open-to-escalation latency is timed")
    parser.add_argument(
        "--inbound", type=int, default=1000, help="inbound messages through classify + store + signal (0: skip)"
    )
    parser.add_argument("--mem-leads", type=int, default=10000, help="leads waiting mid-cadence (0: skip)")
    parser.add_argument(
        "--range-hits",
        type=int,
        default=10000,
        help="client addresses of each sort looked up in the shipped ranges file, once, before the configurations "
        "(0: skip)",
    )
    parser.add_argument("--configs", default="sqlite-wal/sqlite,in-memory/sqlite,sqlite-wal/postgresql")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the first drip")
    parser.add_argument(
        "--cache",
        type=int,
        default=None,
        help="the worker's cached workflows (default: the settings' 1000, or --leads + 1000 when more, so that "
        "every lead awake at once and the latency phase's leads stay cached)",
    )
    parser.add_argument("--activities", type=int, default=None, help="the worker's concurrent activities")
    parser.add_argument("--name", default="", help="suffix of the results' file names (<date>-<host>-NAME)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results (default bench/results)")
    parser.add_argument(
        "--sales-worker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the sales path on its own task queue and worker process (LEADLOOP_WORKER_ROLE=sales), as README "
        "'Performance' recommends; --no-sales-worker runs one worker process for everything",
    )
    opts = parser.parse_args()
    check_options(parser, opts)
    temporal_cli()  # fails with a clear message when the CLI is missing
    default_cache = Settings(_env_file=None).worker_cached_workflows
    if opts.cache is None and opts.leads + 1000 > default_cache:
        opts.cache = opts.leads + 1000  # sized for the leads awake at once (README "Performance", docs/scaling.md)
    if opts.cache is not None:
        os.environ["LEADLOOP_WORKER_CACHED_WORKFLOWS"] = str(opts.cache)
    if opts.activities is not None:
        os.environ["LEADLOOP_WORKER_MAX_ACTIVITIES"] = str(opts.activities)
    if opts.sales_worker:
        os.environ["LEADLOOP_SALES_TASK_QUEUE"] = "bench-sales"
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "host": platform.node(),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "worker_cached_workflows": Settings(_env_file=None).worker_cached_workflows,
        "worker_max_activities": Settings(_env_file=None).worker_max_activities,
        "smtp_messages_per_connection": Settings(_env_file=None).smtp_messages_per_connection,
        "sales_worker": opts.sales_worker,
        "command": "PYTHONPATH=. .venv/bin/python bench/run.py " + " ".join(sys.argv[1:]),
        "configs": [],
    }
    suffix = f"-{opts.name}" if opts.name else ""
    stem = opts.out / f"{report['date']}-{report['host']}{suffix}"
    if opts.range_hits:  # no server involved: once per run, a few seconds
        print(f"ranges: {opts.range_hits} lookups of each sort in the shipped file", flush=True)
        report["ranges"] = range_lookups(opts.range_hits)
    for index, config in enumerate(opts.configs.split(",")):
        dev_mode, db = config.split("/")
        try:
            report["configs"].append(
                await run_config(
                    dev_mode,
                    db,
                    opts.leads,
                    opts.steps,
                    opts.hot,
                    opts.mem_leads if index == 0 else 0,
                    opts.out / f"{report['date']}-{report['host']}{suffix}-worker.speedscope.json"
                    if opts.profile and index == 0
                    else None,
                    inbound=opts.inbound,
                )
            )
        except Exception as exc:  # one failing configuration must not lose the others' figures
            report["configs"].append({"dev_server": dev_mode, "database": db, "error": f"{type(exc).__name__}: {exc}"})
            print(f"[{config}] failed: {type(exc).__name__}: {exc}", flush=True)
        # after every configuration: a run stopped part way keeps what it measured
        stem = write_results(report, opts.out, suffix)
    print(markdown(report))
    print(f"written {stem}.json and .md")
    failed = [f"{c['dev_server']}/{c['database']}" for c in report["configs"] if "error" in c]
    if failed:
        raise SystemExit(f"bench: {', '.join(failed)} failed (see above); the others' figures are written")


DEV_MODES = ("sqlite-wal", "in-memory")
DATABASES = ("sqlite", "postgresql")


def check_options(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    """Refuse what cannot be measured before anything starts (argparse's exit 2, nothing written)."""
    for name, low in (
        ("leads", 1),
        ("steps", 1),
        ("hot", 1),
        ("mem_leads", 0),
        ("inbound", 0),
        ("range_hits", 0),
        ("cache", 0),
        ("activities", 1),
    ):
        value = getattr(opts, name)
        if value is not None and value < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}, not {value}")
    for config in opts.configs.split(","):
        dev_mode, _, db = config.partition("/")
        if dev_mode not in DEV_MODES or db not in DATABASES:
            parser.error(
                f"--configs: '{config}' is not DEV/DB with DEV one of {', '.join(DEV_MODES)} "
                f"and DB one of {', '.join(DATABASES)}"
            )
    if opts.out.exists() and not opts.out.is_dir():
        parser.error(f"--out {opts.out} is not a folder")


def write_results(report: dict[str, Any], out: Path, suffix: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{report['date']}-{report['host']}{suffix}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    return stem


if __name__ == "__main__":
    run_and_exit(lambda: asyncio.run(main()))  # past the interpreter's teardown (leadloop/infra/process.py)
