"""Names, notes, URLs and arguments that look like Rich markup print literally in every `leadloop` command."""

import asyncio
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from leadloop import PROJECT_ROOT
from leadloop.infra.db import (
    Assignment,
    DispositionRow,
    EngagementEvent,
    Lead,
    Outbox,
    Rep,
    make_engine,
    make_sessionmaker,
)
from tests.conftest import BIN, free_port

END_BOLD = "[/bold]"  # a stray closing tag: MarkupError, the command ends with 1
LINK = "[link=https://evil.example/x]Bob[/link]"  # a terminal hyperlink to somewhere else
RED = "[red]"  # silently restyles what follows
HOSTILE = (END_BOLD, LINK, RED)
OSC8 = "\x1b]8;"  # how a terminal hyperlink starts
SGR = re.compile(r"\x1b\[[0-9;]*m")


def terminal_env(database_url: str) -> dict[str, str]:
    """As in a colour terminal (FORCE_COLOR): styles and hyperlinks would be written if anything asked for them."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    return {
        **env,
        "FORCE_COLOR": "1",
        "TERM": "xterm-256color",
        "COLUMNS": "600",
        "LEADLOOP_DATABASE_URL": database_url,
        "LEADLOOP_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }  # nothing listens there


async def leadloop(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Exit code and everything written (stdout then stderr), raw: escape sequences included."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "leadloop"),
        *args,
        env=env,
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def assert_literal(raw: str, *texts: str) -> None:
    """Every text shown as typed (styles aside), and no hyperlink anywhere."""
    assert OSC8 not in raw, raw
    assert "MarkupError" not in raw, raw
    shown = SGR.sub("", raw)
    for text in texts:
        assert text in shown, (text, shown)


ROSTER = f"""teams:
  - name: hostile
    strategy: round_robin
    sla: 4h
    business_hours: {{days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}}
    manager: {{name: "{RED}", email: manager@sales.example}}
    reps:
      - {{email: "{RED}@sales.example", name: "{LINK}", timezone: Europe/Oslo, capacity: 5}}
      - {{email: bold@sales.example, name: "{END_BOLD}", timezone: Europe/Oslo, capacity: 5}}
"""


async def seed(database_url: str) -> int:
    """A lead whose every free-text field is hostile, with an email, a click, an assignment and a decision."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rep = (await session.execute(Rep.__table__.select().where(Rep.name == LINK))).one()
            lead = Lead(
                email="hostile@example.com",
                first_name=END_BOLD,
                last_name=RED,
                company=LINK,
                cadence=LINK,
                title=LINK,
                attributes={"note": END_BOLD},
            )
            session.add(lead)
            await session.flush()
            at = datetime(2026, 11, 2, 10, tzinfo=UTC)
            session.add(
                Outbox(
                    key=f"lead-{lead.id}.c0.first",
                    lead_id=lead.id,
                    cycle=0,
                    step_id="first",
                    cadence=LINK,
                    status="failed",
                    message_id="<m@x>",
                    subject=f"Hi {END_BOLD}",
                    error=f"refused: {LINK}",
                    created_at=at,
                    sent_at=at,
                )
            )
            session.add(
                EngagementEvent(
                    id="hostile-1",
                    lead_id=lead.id,
                    kind="click",
                    human=False,
                    reason=RED,
                    url=f"https://s.example/{LINK}",
                    occurred_at=at,
                )
            )
            session.add(
                Assignment(
                    key=f"lead-{lead.id}.c0.a1",
                    lead_id=lead.id,
                    cycle=0,
                    rep_id=rep.id,
                    team="hostile",
                    rule=f"score rule {END_BOLD}",
                    status="rejected",
                    score=80,
                    assigned_at=at,
                    closed_at=at,
                )
            )
            session.add(
                DispositionRow(
                    key=f"lead-{lead.id}.c0.a1",
                    lead_id=lead.id,
                    cycle=0,
                    rep_id=rep.id,
                    action="reject",
                    reason="other",
                    note=f"{END_BOLD} {RED}",
                    outcome=LINK,
                    source="cli",
                    created_at=at,
                )
            )
            await session.commit()
            return lead.id
    finally:
        await engine.dispose()


async def test_hostile_text_prints_literally_in_every_database_command(database_url: str, tmp_path: Path) -> None:
    env = terminal_env(database_url)
    roster = tmp_path / "reps.yaml"
    roster.write_text(ROSTER, encoding="utf-8")
    code, raw = await leadloop(env, "reps", "import", str(roster))
    assert code == 0, raw
    lead_id = await seed(database_url)

    code, raw = await leadloop(env, "reps", "list")
    assert code == 0, raw
    assert_literal(raw, LINK, END_BOLD, f"{RED}@sales.example")

    code, raw = await leadloop(env, "history", str(lead_id))
    assert code == 0, raw
    assert_literal(
        raw,
        f"created (cadence '{LINK}')",
        f"'Hi {END_BOLD}'",
        f"refused: {LINK}",
        f"https://s.example/{LINK}",
        f"machine ({RED})",
        f"assigned to {LINK} (rep-",
        f"score rule {END_BOLD}",
        f"{LINK} rejected (other) “{END_BOLD} {RED}” → {LINK}",
    )
    assert "\x1b[" in raw  # the terminal was forced: a styled "note:" line, so a hyperlink would have shown

    code, raw = await leadloop(env, "dispositions", "--lead", str(lead_id))
    assert code == 0, raw
    assert_literal(raw, LINK, f"{END_BOLD} {RED}")

    out = tmp_path / "report.html"
    code, raw = await leadloop(env, "report", "--cadence", LINK, "--out", str(out))
    assert code == 0, raw
    assert_literal(raw, f"cadence {LINK}")
    assert out.exists()

    # arguments that come back in error lines: one clear error each, shown as typed
    for args, expected in (
        (("report", "--cadence", END_BOLD), f"unknown cadence '{END_BOLD}'"),
        (("report", "--since", RED), f"--since '{RED}' is not a date"),
        (("event", "click", str(lead_id), "--url", LINK), f"--url must be an http(s) address, not '{LINK}'"),
        (("reject", str(lead_id), "--reason", END_BOLD), f"unknown reason '{END_BOLD}'"),
        (("list", "--cadence", LINK), f"'{LINK}' is not a cadence name"),
        (("forget", END_BOLD, "--yes"), f"'{END_BOLD}' is not a valid email address"),
        (
            ("cadence", "preview", END_BOLD, "--lead", "examples/lead.json", "--out", str(tmp_path)),
            f"no cadence named '{END_BOLD}'",
        ),
        (("enroll", "--email", LINK), "row 1: email:"),
    ):
        code, raw = await leadloop(env, *args)
        assert code == 1, (args, raw)
        assert_literal(raw, "error:" if args[0] != "enroll" else "", expected)


async def test_cadence_check_shows_a_path_that_looks_like_markup(tmp_path: Path) -> None:
    folder = tmp_path / RED
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / "cadences" / "welcome.yaml", folder / "welcome.yaml")
    env = terminal_env(f"sqlite+aiosqlite:///{tmp_path / 'l.db'}")
    code, raw = await leadloop(env, "cadence", "check", str(folder))
    assert code == 0, raw
    assert_literal(raw, f"ok {folder / 'welcome.yaml'}: 'welcome'")
