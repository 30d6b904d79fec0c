"""Screenshot of a `leadloop report` page in Debian's headless Chromium; --demo first makes one from demo data."""

import argparse
import asyncio
import math
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop import PROJECT_ROOT
from leadloop.domain.mail import email_hash
from leadloop.domain.models import STAGES
from leadloop.domain.outcomes import outcome_from_text
from leadloop.domain.recycle import load_recycle
from leadloop.domain.routing import load_roster
from leadloop.infra.db import (
    Assignment,
    DispositionRow,
    EngagementEvent,
    InboundMessage,
    Lead,
    Outbox,
    Rep,
    Suppression,
    make_engine,
    make_sessionmaker,
)
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.process import run_and_exit
from leadloop.reporting.gather import cadence_steps_from, gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.planner import with_plan
from leadloop.services.roster import import_roster

if str(PROJECT_ROOT) not in sys.path:  # run as a file (`python scripts/report_screenshot.py`): the sibling script
    sys.path.insert(0, str(PROJECT_ROOT))
from scripts.ui_screenshot import _one_line, _positive, default_chromium

#: Chromium cannot capture larger pages in one piece
MAX_SIZE = 16_000
DEMO_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEMO_SINCE = date(2026, 9, 1)


class ScreenshotError(Exception):
    """Why no screenshot was taken, in one line; nothing was written."""


@dataclass
class ReportShot:
    path: Path
    width: int
    height: int
    images: list[dict[str, Any]]  # each <img>: id, alt, naturalWidth, naturalHeight
    text: str = ""
    blocked: list[str] = field(default_factory=list)  # requests the page tried beyond its own file


def _inputs(report: Path, browser_path: str) -> tuple[str, str]:
    """The report's file:// URL and the browser, both checked to be there."""
    if not report.is_file():
        raise ScreenshotError(f"no report at {report}: make one with `leadloop report --out {report}`")
    if not (os.path.isfile(browser_path) and os.access(browser_path, os.X_OK)):
        raise ScreenshotError(
            f"chromium not found at {browser_path}: install Debian's chromium (`make browser`) or pass --chromium PATH"
        )
    return report.resolve().as_uri(), browser_path


async def take_report_screenshot(
    report: Path,
    output: Path,
    *,
    width: int = 1280,
    height: int = 900,
    chromium: str | None = None,
    wait: float = 30.0,
    crop: int | None = None,
) -> ReportShot:
    """Open the report (file://) with every network request refused, check each chart image loaded, save a PNG.

    Args:
        crop: keep only the top `crop` pixels of the page; the whole page otherwise.

    Raises:
        ScreenshotError: no such report, chromium missing, a chart that did not load, a request off the page.
    """
    url, browser_path = _inputs(report, chromium or default_chromium())
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import Route, async_playwright

    blocked: list[str] = []

    async def only_the_report(route: Route) -> None:
        if route.request.url == url or route.request.url.startswith("data:"):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        except PlaywrightError as exc:
            raise ScreenshotError(f"chromium at {browser_path} did not start: {_one_line(exc)[:200]}") from None
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.route("**/*", only_the_report)
            try:
                await page.goto(url, wait_until="load", timeout=wait * 1000)
            except PlaywrightError as exc:
                raise ScreenshotError(f"chromium could not open {report}: {_one_line(exc)[:160]}") from None
            images: list[dict[str, Any]] = await page.evaluate(
                """() => Array.from(document.images).map(i => ({id: i.id, alt: i.alt, complete: i.complete,
                    naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))"""
            )
            if blocked:
                raise ScreenshotError(f"{report} is not self-contained: it asked for {blocked[0]}")
            broken = [i["id"] or i["alt"] for i in images if not i["naturalWidth"]]
            if not images or broken:
                what = ", ".join(broken) if broken else "the page has no chart"
                raise ScreenshotError(f"{report}: charts did not load ({what})")
            text = await page.locator("body").inner_text()
            full = await page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollHeight]")
            shot_width = min(MAX_SIZE, max(width, int(full[0])))
            shot_height = min(MAX_SIZE, int(full[1]) if crop is None else min(crop, int(full[1])))
            png = await page.screenshot(
                type="png", full_page=True, clip={"x": 0, "y": 0, "width": shot_width, "height": shot_height}
            )
        finally:
            await browser.close()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    partial.write_bytes(png)
    partial.replace(output)
    return ReportShot(output, shot_width, shot_height, images, text, blocked)


# ---------------------------------------------------------------- the demo dataset

STEPS = {  # (step, day after the cycle starts, chance a reader opens it, chance an opener clicks)
    "welcome": [
        ("welcome", 0, 0.38, 0.4),
        ("tips", 2, 0.26, 0.3),
        ("case-study", 6, 0.22, 0.45),
        ("checkin", 13, 0.18, 0.25),
    ],
    "nurture-later": [("case-study", 0, 0.42, 0.45), ("tips", 21, 0.3, 0.3), ("checkin", 42, 0.25, 0.3)],
    "influencer": [("case-study", 0, 0.45, 0.45), ("checkin", 14, 0.3, 0.3)],
}
#: who makes a demo's machine opens and clicks, and how often: B2B mailboxes behind gateways and scanners
MACHINE_OPENS = {"mpp": 50, "prefetch": 20, "gateway": 20, "cloud": 10}
MACHINE_CLICKS = {"gateway": 55, "cloud": 20, "scanner": 25}
#: how long before the demo's end its events carry machine classes and confirmations (older ones, September's in
#: the report among them, were stored before the upgrade that brought them)
CLASSES_SINCE = timedelta(days=60)
BIG_BANG = ("big-bang", 3, 0.21, 0.45)
REASONS = {
    "not_ready": 30,
    "no_budget": 20,
    "no_authority": 10,
    "no_need": 10,
    "bad_fit": 9,
    "unreachable": 8,
    "not_interested": 6,
    "wrong_route": 4,
    "other": 3,
}


class _Demo:
    """A deterministic story for every lead, written as leadloop would have written it."""

    def __init__(self, session: AsyncSession, reps: dict[str, list[Rep]], now: datetime, seed: int) -> None:
        self.session, self.reps, self.now = session, reps, now
        self.rng = random.Random(seed)
        self.policy = load_recycle(PROJECT_ROOT / "cadences" / "recycle.yaml")
        self.turn: dict[str, int] = dict.fromkeys(reps, 0)
        self.events = 0
        self.mail_rng = random.Random(seed + 1)  # what came back: its own draws leave every other figure as it was
        self.truth_rng = random.Random(seed + 2)  # machine classes and confirmations: their own draws too
        self.inbound = 0

    def at(self, start: datetime, hours: float) -> datetime:
        return start + timedelta(hours=hours)

    def event(self, lead: Lead, kind: str, human: bool, key: str | None, when: datetime, **verdict: Any) -> str:
        if when <= self.now:
            self.events += 1
            self.session.add(
                EngagementEvent(
                    id=f"demo-{self.events}",
                    lead_id=lead.id,
                    kind=kind,
                    human=human,
                    reason="demo",
                    outbox_key=key,
                    occurred_at=when,
                    status="signalled",
                    **verdict,
                )
            )
        return f"demo-{self.events}"

    def machine(self, lead: Lead, kind: str, key: str, when: datetime) -> None:
        """A machine's open or click: its class drawn from what B2B mailboxes see; none before verdicts named one."""
        classes = MACHINE_OPENS if kind == "open" else MACHINE_CLICKS
        drawn = self.truth_rng.choices(list(classes), weights=list(classes.values()))[0]
        if when >= self.now - CLASSES_SINCE:
            self.event(lead, kind, False, key, when, machine_class=drawn, confidence=0.9)
        else:
            self.event(lead, kind, False, key, when)

    def click(self, lead: Lead, key: str, when: datetime) -> None:
        """A reader's click; since verdicts said more, most are confirmed by the landing page's beacon seconds later
        (the confirmation and the open it proves stored as rows of their own, as the tracking service does)."""
        if when < self.now - CLASSES_SINCE:
            self.event(lead, "click", True, key, when)
            return
        beacon = when + timedelta(seconds=3)
        confirmed = self.truth_rng.random() < 0.65 and beacon <= self.now
        click = self.event(lead, "click", True, key, when, confidence=0.7, confirmed_at=beacon if confirmed else None)
        if confirmed:
            self.event(lead, "click", True, key, beacon, confirms=click, confidence=1.0)
            self.event(lead, "open", True, key, beacon, confirms=click, confidence=1.0)

    def came_back(self, lead: Lead, key: str | None, sent: datetime, engaged: bool) -> None:
        """Now and then a reply (from readers), an auto-reply, a late bounce, a policy block or a complaint."""
        rng = self.mail_rng
        chances = (
            ("human_reply", 0.06 if engaged else 0.0),
            ("auto_reply", 0.04),
            ("soft_bounce", 0.01),
            ("hard_bounce", 0.006),
            ("policy_block", 0.004),
            ("complaint", 0.0025),
        )
        for kind, chance in chances:
            when = self.at(sent, rng.uniform(0.1, 48))
            if rng.random() < chance and when <= self.now:
                self.inbound_message(kind, lead.id, key, when)

    def inbound_message(self, kind: str, lead_id: int | None, key: str | None, when: datetime) -> None:
        if when > self.now:
            return
        self.inbound += 1
        self.session.add(
            InboundMessage(
                message_id=f"<in-{self.inbound}@demo>",
                source="imap" if kind in ("human_reply", "auto_reply") else "webhook:ses",
                source_key=f"demo:{self.inbound}",
                received_at=when,
                lead_id=lead_id,
                outbox_key=key,
                kind=kind,
                evidence={"reasons": ["demo"]},
                raw=None,
                raw_size=0,
                status="signalled" if key else "unmatched",
            )
        )

    def suppress(self, lead: Lead, reason: str, when: datetime) -> None:
        self.session.add(Suppression(email_hash=email_hash(lead.email), reason=reason, created_at=when))

    def nurture(self, lead: Lead, cadence: str, cycle: int, start: datetime, threshold: float) -> str:
        """One cycle of a cadence; returns the lead's stage at the end."""
        rng, streak, big_bang = self.rng, 0, False
        steps = list(STEPS[cadence])
        index = 0
        while index < len(steps):
            step, day, p_open, p_click = steps[index]
            if cadence == "welcome" and streak >= 3 and not big_bang:
                step, day, p_open, p_click = BIG_BANG[0], steps[index - 1][1] + BIG_BANG[1], BIG_BANG[2], BIG_BANG[3]
                big_bang = True
            sent = self.at(start, day * 24 + rng.uniform(0, 8))
            if sent > self.now:
                return "nurturing"
            key = f"lead-{lead.id}.c{cycle}.{step}"
            bounced = step == "welcome" and cycle == 0 and rng.random() < 0.025
            self.session.add(
                Outbox(
                    key=key,
                    lead_id=lead.id,
                    cycle=cycle,
                    step_id=step,
                    cadence=cadence,
                    status="bounced" if bounced else "sent",
                    message_id=f"<{key}@demo>",
                    created_at=sent,
                    sent_at=None if bounced else sent,
                )
            )
            if bounced:
                self.suppress(lead, "hard_bounce", sent)
                return "suppressed"
            if rng.random() < 0.3:  # a privacy prefetch or a gateway at delivery
                self.machine(lead, "open", key, self.at(sent, 0.01))
            engaged = rng.random() < p_open
            self.came_back(lead, key, sent, engaged)
            if self.mail_rng.random() < 0.015:  # a message no send is found for
                kind = self.mail_rng.choice(("auto_reply", "hard_bounce", "human_reply"))
                self.inbound_message(kind, None, None, self.at(sent, 30))
            clicked = engaged and rng.random() < p_click
            read = self.at(sent, rng.uniform(0.3, 30))
            if engaged:
                self.event(lead, "open", True, key, read)
            if rng.random() < 0.08:  # a link scanner
                self.machine(lead, "click", key, self.at(sent, 0.005))
            if clicked:
                self.click(lead, key, self.at(read, 0.05))
            if rng.random() < 0.012:
                self.event(lead, "unsubscribe", True, key, self.at(read, 0.1))
                self.suppress(lead, "unsubscribe", self.at(read, 0.1))
                return "suppressed"
            streak = 0 if engaged else streak + 1
            if clicked and rng.random() < threshold:
                return self.sales(lead, cycle, self.at(read, 0.1))
            if step == BIG_BANG[0]:  # answered: the cadence goes on (beyond this demo); silence: dormant
                return "nurturing" if engaged else "dormant"
            index += 1
        return "dormant"  # the cadence ran out without an escalation

    def sales(self, lead: Lead, cycle: int, start: datetime) -> str:
        rng = self.rng
        team = rng.choices(list(self.reps), weights=[3, 5, 2][: len(self.reps)])[0]
        attempt, when, passed = 0, start, set()
        while True:
            attempt += 1
            members = [r for r in self.reps[team] if r.id not in passed] or self.reps[team]
            rep = members[self.turn[team] % len(members)]
            self.turn[team] += 1
            key = f"lead-{lead.id}.c{cycle}.a{attempt}"
            row = Assignment(
                key=key,
                lead_id=lead.id,
                cycle=cycle,
                rep_id=rep.id,
                team=team,
                rule="demo",
                status="assigned",
                assigned_at=when,
            )
            self.session.add(row)
            if attempt < 3 and rng.random() < 0.13:  # the rep let it lapse
                row.status, row.closed_at = "lapsed", self.at(when, rng.uniform(8, 30))
                passed.add(rep.id)
                when = row.closed_at
                if when > self.now:
                    row.status, row.closed_at = "assigned", None
                    return "with_sales"
                continue
            decided = self.at(when, min(40.0, rng.lognormvariate(math.log(2.4), 0.8)))
            if decided > self.now:
                return "with_sales"
            accept = rng.random() < (0.5 if cycle else 0.36)
            row.status, row.closed_at = ("accepted" if accept else "rejected"), decided
            if accept:
                self.session.add(
                    DispositionRow(
                        key=key,
                        lead_id=lead.id,
                        cycle=cycle,
                        rep_id=rep.id,
                        action="accept",
                        outcome="converted",
                        outcome_action="converted",
                        outcome_stage="converted",
                        source="page",
                        created_at=decided,
                    )
                )
                return "converted"
            reason = rng.choices(list(REASONS), weights=list(REASONS.values()))[0]
            rule = self.policy.for_reason(reason)
            outcome = {
                "nurture": f"back to nurture with '{rule.cadence}' after a {rule.cool_down.days}d cool-down",
                "archive": f"archived ({reason})",
                "suppress": "suppressed: never emailed again",
                "dormant": "dormant; back with 'reengage' in 180 days",
                "reroute": f"re-routed to another rep; rep-{rep.id} excluded",
                "hold": "held until the lead's data is fixed",
            }[rule.action]
            result = outcome_from_text("reject", outcome)
            self.session.add(
                DispositionRow(
                    key=key,
                    lead_id=lead.id,
                    cycle=cycle,
                    rep_id=rep.id,
                    action="reject",
                    reason=reason,
                    outcome=outcome,
                    outcome_action=result.action,
                    outcome_cadence=result.cadence,
                    outcome_stage=result.stage,
                    source="page",
                    created_at=decided,
                )
            )
            if rule.action == "reroute":
                passed.add(rep.id)
                when = decided
                continue
            if rule.action == "suppress":
                self.suppress(lead, "not_interested", decided)
                return "suppressed"
            if rule.action == "nurture" and rule.cadence in STEPS:
                back = decided + rule.cool_down
                if back > self.now or cycle >= 2:
                    return "nurturing"
                return self.nurture(lead, rule.cadence, cycle + 1, back, 0.9)
            return {"archive": "archived", "dormant": "dormant", "hold": "held"}.get(rule.action, "nurturing")


async def seed_demo(
    sessionmaker: async_sessionmaker[AsyncSession], *, leads: int = 600, now: datetime = DEMO_NOW, seed: int = 7
) -> dict[str, int]:
    """A demo dataset (leads enrolled over the four months before `now`, reps from examples/reps.yaml) in an
    empty, migrated database. Returns the leads by stage its stories end in: the demo's stand-in for the live
    stage counts, which only Temporal knows."""
    async with sessionmaker() as session:
        await import_roster(session, load_roster(PROJECT_ROOT / "examples" / "reps.yaml"))
        await session.flush()
        reps: dict[str, list[Rep]] = {}
        for rep in (await session.execute(select(Rep).order_by(Rep.id))).scalars():
            reps.setdefault(rep.team, []).append(rep)
        demo = _Demo(session, reps, now, seed)
        stages: dict[str, int] = dict.fromkeys(STAGES, 0)
        first = now - timedelta(days=150)
        people = [
            Lead(
                id=n,
                email=f"demo-{n}@leads.example",
                cadence="welcome",
                attributes={},
                created_at=first + timedelta(days=demo.rng.uniform(0, 146), hours=demo.rng.uniform(0, 10)),
            )
            for n in range(1, leads + 1)
        ]
        session.add_all(people)
        await session.flush()  # the leads before the rows that refer to them
        for lead in people:
            stages[demo.nurture(lead, "welcome", 0, lead.created_at, 0.7)] += 1
        await session.commit()
    return stages


async def demo_report(folder: Path, *, leads: int = 600) -> Path:
    """The demo dataset in a fresh SQLite database in `folder`, and its report at `folder/report.html`."""
    url = f"sqlite+aiosqlite:///{folder / 'demo.db'}"
    await upgrade_database(url)
    engine = make_engine(url)
    try:
        maker = make_sessionmaker(engine)
        stages = await seed_demo(maker, leads=leads)
        data = await gather_report(
            maker, None, DEMO_SINCE, None, now=DEMO_NOW, cadence_steps=cadence_steps_from(PROJECT_ROOT / "cadences")
        )
    finally:
        await engine.dispose()
    data.live_stages, data.live_note = stages, None
    with_plan(data, growth_pct=25)
    report = folder / "report.html"
    report.write_text(render_html(data, folder / "report_files"), encoding="utf-8")
    return report


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="report_screenshot.py",
        description="Save a screenshot of a `leadloop report` HTML page, taken with headless Chromium (no network). "
        "With --demo, the report is first made from a demo dataset in a temporary SQLite database.",
    )
    cli.add_argument("report", nargs="?", type=Path, help="the report's HTML file (not with --demo)")
    cli.add_argument("--demo", action="store_true", help="make the report from the demo dataset first")
    cli.add_argument("--keep", type=Path, help="with --demo: keep the demo report (HTML and PNGs) in this folder")
    cli.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    cli.add_argument("--width", type=_positive, default=1280, help="viewport width in px (default %(default)s)")
    cli.add_argument("--crop", type=_positive, help="keep only the top CROP px of the page (default: all of it)")
    cli.add_argument("--chromium", default=default_chromium(), help="Chromium binary (default %(default)s)")
    cli.add_argument("--text", action="store_true", help="also print the text the page showed")
    return cli


async def _run(args: argparse.Namespace) -> ReportShot:
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="leadloop-report-") as tmp:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            report = await demo_report(folder)
            return await take_report_screenshot(
                report, args.output, width=args.width, chromium=args.chromium, crop=args.crop
            )
    return await take_report_screenshot(
        args.report, args.output, width=args.width, chromium=args.chromium, crop=args.crop
    )


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if (args.report is None) == (not args.demo):
        cli.error("give the report's HTML file or --demo (one of them)")
    try:
        shot = asyncio.run(_run(args))
    except ScreenshotError as exc:
        print(f"report_screenshot: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(f"{shot.path}: {shot.width}x{shot.height} px, {len(shot.images)} charts loaded")
    if args.text:
        print(shot.text)
    return 0


if __name__ == "__main__":
    run_and_exit(main)  # past the interpreter's teardown, where the SDK's threads can abort it
