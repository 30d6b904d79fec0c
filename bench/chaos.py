"""`make chaos`: leads through a compressed cadence while leadloop's parts are killed under it; then proof,
from the SMTP server's own record and the database, that nothing was lost, sent twice or left stuck.

On loopback, as `make bench` does (bench/run.py's Stack): the Temporal dev server on an SQLite file, an SMTP
sink, leadloop's worker and HTTP service as their own processes. N leads (default 500) go through an S-step
cadence (default 5) whose steps are `--step-seconds` apart, while a clicker follows the tracked link of every
lead's first email, and the run

  (a) kills -9 the worker twice and restarts it,
  (b) stops the dev server and restarts it on the same database file,
  (c) stops the SMTP server for `--smtp-outage` seconds (listening socket and open connections),
  (d) kills -9 the HTTP service while the clicks arrive, and starts it again.

Afterwards: every expected email delivered (an email can only be missing if its outbox row says
`uncertain`: the worker died between the message data and the server's reply, and it is never resent);
duplicates by Message-ID and by (lead, step), target 0; every click the HTTP service answered (302, so
stored first) is in the database and counted by its lead's workflow, none left pending; no workflow stuck
(each finished, or running in a stage that says what it waits for). Prints a table, writes
bench/results/<date>-<host>-chaos.json and .md, exits 1 when a check fails. tests/e2e/test_chaos.py runs
a smaller version in CI.

Run: `make chaos`, or `PYTHONPATH=. .venv/bin/python bench/chaos.py --leads 100 --steps 3`.
"""

import argparse
import asyncio
import collections
import json
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from bench.run import RESULTS, Sink, Stack, enroll, write_csv
from leadloop.domain.models import LeadState
from leadloop.infra.db import EngagementEvent, Outbox, make_engine, make_sessionmaker
from leadloop.infra.process import run_and_exit
from leadloop.infra.temporal import connect
from starter.devserver import stop_process

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@dataclass
class ChaosSink(Sink):
    """The bench's sink, recording every message's Message-ID, and able to go down: it stops listening and
    drops every open connection, as a crashed relay does."""

    received: list[tuple[str, str]] = field(default_factory=list)  # (Message-ID, outbox key)
    sessions: set[SMTP] = field(default_factory=set)
    port: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        head = content[: content.find(b"\r\n\r\n")].decode("utf-8", "replace")
        msg_id = re.search(r"^Message-ID: *(\S+)", head, re.M | re.I)
        key = re.search(r"^X-Leadloop-Outbox-Key: (\S+)", head, re.M)
        self.received.append((msg_id.group(1) if msg_id else "", key.group(1) if key else ""))
        return await super().handle_DATA(server, session, envelope)

    async def start(self, port: int) -> None:
        self.port = port

        def protocol() -> SMTP:
            smtp = SMTP(self, enable_SMTPUTF8=True)
            self.sessions.add(smtp)
            return smtp

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(protocol, "127.0.0.1", port)

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for smtp in list(self.sessions):
            if isinstance(smtp.transport, asyncio.Transport):
                smtp.transport.abort()
        self.sessions.clear()
        await self.server.wait_closed()

    async def up(self) -> None:
        await self.start(self.port)


def click_url(content: bytes) -> str:
    """The tracked link (not the unsubscribe link) in an email's HTML part."""
    for part in message_from_bytes(content).walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found = re.search(r'href="([^"]+/c/[^"]+)"', payload.decode())
            if found:
                return found.group(1).replace("&amp;", "&")
    raise AssertionError("no tracked link in the email")


@dataclass
class Clicker:
    """Follows the tracked link of each lead's first email once, at a steady rate, as soon as it arrives (while
    the lead has its other steps ahead), and remembers which clicks the HTTP service answered: a 302 comes only
    after the event is stored."""

    stack: Stack
    addresses: dict[str, int]  # recipient -> lead id
    rate: float
    answered: collections.Counter[int] = field(default_factory=collections.Counter)
    refused: int = 0  # connection refused or reset: the service was down; nothing was promised
    limited: int = 0  # 429: the per-client rate limit; nothing stored, nothing promised
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        done: collections.Counter[str] = collections.Counter()
        async with httpx.AsyncClient(timeout=10) as http:
            while not self.stop.is_set():
                ready = [a for a in self.addresses if a in self.stack.sink.bodies and done[a] < 1]
                if not ready:
                    await asyncio.sleep(0.05)
                    continue
                for address in ready:
                    if self.stop.is_set():
                        return
                    done[address] += 1
                    try:
                        answer = await http.get(
                            click_url(self.stack.sink.bodies[address]), headers={"user-agent": BROWSER}
                        )
                    except httpx.TransportError:
                        self.refused += 1
                    else:
                        if answer.status_code == 302:
                            self.answered[self.addresses[address]] += 1
                        elif answer.status_code == 429:
                            self.limited += 1
                        else:
                            self.refused += 1
                    await asyncio.sleep(1 / self.rate)


def write_chaos_cadence(folder: Path, steps: int, step_seconds: int) -> None:
    """`chaos`: S steps, `step_seconds` apart (a cadence day is a second at the bench's time scale), a send
    window open all week, and no escalation, so every lead goes the whole way."""
    window = '{days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}'
    lines = [
        f'  - {{id: s{i}, wait: {"0" if i == 0 else f"{step_seconds}d"}, template: welcome, subject: "Step {i}"}}'
        for i in range(steps)
    ]
    head = f"name: chaos\nversion: 1\ndefault_locale: en\nsend_window: {window}\nescalation: {{threshold: 10000}}\n"
    (folder / "chaos.yaml").write_text(head + "steps:\n" + "\n".join(lines) + "\n")


async def kill_worker(stack: Stack, log: list[str], t0: float, why: str) -> None:
    assert stack.worker is not None
    stack.worker.kill()  # SIGKILL: no graceful shutdown, activities die mid-flight
    await stack.worker.wait()
    log.append(f"{time.perf_counter() - t0:6.1f} s  worker killed -9 ({why})")
    await asyncio.sleep(1)
    await stack.start_worker()
    log.append(f"{time.perf_counter() - t0:6.1f} s  worker restarted")


async def wait_until(check: Any, within: float, every: float = 0.5) -> bool:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if await check():
            return True
        await asyncio.sleep(every)
    return False


async def run_chaos(
    leads: int = 500,
    steps: int = 5,
    step_seconds: int = 20,
    smtp_outage: float = 30.0,
    clicks_per_s: float = 20.0,
    db: str = "sqlite",
    within: float = 1800.0,
    tmp: Path | None = None,
) -> dict[str, Any]:
    """One chaos run; returns its figures and the checks' verdicts (`report["ok"]`)."""
    with tempfile.TemporaryDirectory(prefix="leadloop-chaos-", dir=tmp) as folder:
        stack = Stack(Path(folder), "sqlite-wal", db, sink=ChaosSink(keep=("chaos",)))
        sink = stack.sink
        assert isinstance(sink, ChaosSink)
        log: list[str] = []
        try:
            await stack.start(1)
            write_chaos_cadence(stack.tmp / "rules", steps, step_seconds)
            await stack.start_leadloop()
            client = await connect(stack.settings())
            t0 = time.perf_counter()
            _, ids = await enroll(stack, client, write_csv(stack.tmp / "leads.csv", 0, leads, "chaos"), "chaos")
            log.append(f"{time.perf_counter() - t0:6.1f} s  {leads} leads enrolled")
            clicker = Clicker(stack, {f"chaos{i}@leads.example": lead for i, lead in enumerate(ids)}, clicks_per_s)
            clicking = asyncio.create_task(clicker.run())
            T = float(step_seconds)

            async def at(moment: float) -> None:
                await asyncio.sleep(max(0.0, t0 + moment - time.perf_counter()))

            await at(0.5 * T)
            await kill_worker(stack, log, t0, "first")
            await at(1.0 * T)
            assert stack.api is not None
            stack.api.kill()
            await stack.api.wait()
            log.append(f"{time.perf_counter() - t0:6.1f} s  HTTP service killed -9 while clicks arrive")
            await asyncio.sleep(1)
            await stack.start_api()
            log.append(f"{time.perf_counter() - t0:6.1f} s  HTTP service restarted")
            await at(1.5 * T)
            assert stack.server is not None
            await stop_process(stack.server)
            log.append(f"{time.perf_counter() - t0:6.1f} s  dev server stopped")
            await asyncio.sleep(2)
            await stack.restart_server()
            log.append(f"{time.perf_counter() - t0:6.1f} s  dev server restarted on the same database file")
            await at(2.0 * T)
            await sink.down()
            log.append(f"{time.perf_counter() - t0:6.1f} s  SMTP server down")
            await asyncio.sleep(smtp_outage)
            await sink.up()
            log.append(f"{time.perf_counter() - t0:6.1f} s  SMTP server up after {smtp_outage:.0f} s")
            await asyncio.sleep(0.5 * T)
            await kill_worker(stack, log, t0, "second")

            expected = {(lead, f"s{i}") for lead in ids for i in range(steps)}
            handles = [client.get_workflow_handle(f"lead-{lead}") for lead in ids]
            # every lead's workflow ends after its last step, sent or `uncertain`: then every email is accounted for
            finished = await wait_until(lambda: _all_closed(handles), within, every=2)
            clicker.stop.set()
            await clicking
            await wait_until(lambda: _arrived(sink, expected), 5)
            outcome = "every lead's workflow finished" if finished else "gave up waiting for the workflows"
            log.append(f"{time.perf_counter() - t0:6.1f} s  {outcome}")
            engine = make_engine(stack.database_url)
            maker = make_sessionmaker(engine)
            await wait_until(lambda: _none_pending(maker), 60)
            report = await _check(sink, maker, handles, ids, expected, clicker)
            await engine.dispose()
            report["took_s"] = time.perf_counter() - t0
            report["timeline"] = log
            report["setup"] = {
                "leads": leads,
                "steps": steps,
                "step_seconds": step_seconds,
                "smtp_outage_s": smtp_outage,
                "database": db,
            }
            return report
        finally:
            await stack.stop()


async def _arrived(sink: ChaosSink, expected: set[tuple[int, str]]) -> bool:
    return expected <= {_lead_step(key) for _, key in sink.received}


async def _all_closed(handles: list[Any]) -> bool:
    for handle in handles:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            return False
    return True


async def _none_pending(maker: Any) -> bool:
    async with maker() as session:
        pending = await session.scalar(
            select(func.count()).select_from(EngagementEvent).where(EngagementEvent.status == "pending")
        )
    return bool(pending == 0)


def _lead_step(key: str) -> tuple[int, str]:
    """'lead-12.c0.s3' -> (12, 's3')."""
    lead, _cycle, step = key.split(".", 2)
    return int(lead.removeprefix("lead-")), step


async def _check(
    sink: ChaosSink, maker: Any, handles: list[Any], ids: list[int], expected: set[tuple[int, str]], clicker: Clicker
) -> dict[str, Any]:
    emails = [(mid, key) for mid, key in sink.received if key.startswith("lead-")]
    by_id = collections.Counter(mid for mid, _ in emails)
    by_step = collections.Counter(_lead_step(key) for _, key in emails)
    arrived = set(by_step)
    async with maker() as session:
        rows = list((await session.execute(select(Outbox))).scalars())
        events = list((await session.execute(select(EngagementEvent).where(EngagementEvent.kind == "click"))).scalars())
    uncertain = {(row.lead_id, row.step_id) for row in rows if row.status == "uncertain"}
    missing = expected - arrived
    stored = collections.Counter(e.lead_id for e in events)
    signalled = collections.Counter(e.lead_id for e in events if e.status == "signalled")
    unstored = sum(max(0, n - stored[lead]) for lead, n in clicker.answered.items())
    stages: collections.Counter[str] = collections.Counter()
    stuck: list[str] = []
    unreflected = 0
    for handle, lead in zip(handles, ids, strict=True):
        status = (await handle.describe()).status
        state = await handle.query("state", result_type=LeadState)
        counted = state.engagement.human_clicks + state.engagement.machine_clicks
        unreflected += abs(signalled[lead] - counted)
        if status == WorkflowExecutionStatus.RUNNING:
            stages[f"running: {state.stage}"] += 1
            if not state.waiting_for:
                stuck.append(f"lead-{lead} running in {state.stage} without saying what it waits for")
        else:
            stages[f"{status.name.lower()}: {state.stage}" if status else "unknown"] += 1
            if status != WorkflowExecutionStatus.COMPLETED or state.stage != "cadence_complete":
                stuck.append(f"lead-{lead} {status.name if status else '?'} in {state.stage}")
    checks = {
        "duplicates by Message-ID": sum(n - 1 for n in by_id.values()),
        "duplicates by (lead, step)": sum(n - 1 for n in by_step.values()),
        "emails missing, not marked uncertain": len(missing - uncertain),
        "answered clicks not stored": unstored,
        "stored clicks left pending": sum(1 for e in events if e.status == "pending"),
        "stored clicks not counted by the workflow": unreflected,
        "workflows stuck": len(stuck),
    }
    return {
        "ok": all(v == 0 for v in checks.values()),
        "checks": checks,
        "figures": {
            "emails expected": len(expected),
            "emails delivered": len(arrived & expected),
            "emails missing, marked uncertain (never resent)": len(missing & uncertain),
            "outbox uncertain, delivered anyway": len(uncertain & arrived),
            "outbox statuses": dict(collections.Counter(row.status for row in rows)),
            "clicks answered 302": sum(clicker.answered.values()),
            "clicks refused while the service was down": clicker.refused,
            "clicks refused by the rate limit (429)": clicker.limited,
            "clicks stored": len(events),
            "clicks stored for a finished workflow": sum(1 for e in events if e.status == "no_workflow"),
            "workflows": dict(stages),
        },
        "stuck": stuck[:20],
    }


def markdown(report: dict[str, Any], command: str) -> str:
    setup = report["setup"]
    lines = [
        f"# leadloop chaos, {datetime.now(UTC):%Y-%m-%d} on {platform.node()}",
        "",
        f"`{command}`",
        "",
        f"{setup['leads']} leads x {setup['steps']} steps, {setup['step_seconds']} s apart; dev server on an "
        f"SQLite file, leadloop's database {setup['database']}; {report['took_s']:.0f} s in all.",
        "",
        "```",
        *report["timeline"],
        "```",
        "",
        "| check (target 0) | found |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {value} |" for name, value in report["checks"].items()]
    lines += ["", "| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in report["figures"].items()]
    lines += ["", "**All checks passed.**" if report["ok"] else "**FAILED:** " + "; ".join(report["stuck"])]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--step-seconds", type=int, default=20, help="real seconds between a lead's emails")
    parser.add_argument("--smtp-outage", type=float, default=30.0, help="seconds the SMTP server stays down")
    parser.add_argument("--clicks-per-s", type=float, default=20.0)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    opts = parser.parse_args()
    if opts.leads < 1 or opts.steps < 1 or opts.step_seconds < 2 or opts.smtp_outage < 0 or opts.clicks_per_s <= 0:
        parser.error("--leads and --steps must be at least 1, --step-seconds at least 2, rates positive")
    report = await run_chaos(opts.leads, opts.steps, opts.step_seconds, opts.smtp_outage, opts.clicks_per_s, opts.db)
    command = "PYTHONPATH=. .venv/bin/python bench/chaos.py " + " ".join(sys.argv[1:])
    text = markdown(report, command)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-{platform.node()}-chaos"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"written {stem}.json and .md")
    raise SystemExit(0 if report["ok"] else 1)


if __name__ == "__main__":
    run_and_exit(lambda: asyncio.run(main()))  # past the interpreter's teardown (leadloop/infra/process.py)
