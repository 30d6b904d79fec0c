"""`leadloop report` as a marketer runs it: the files it writes, its summary, and its refusals (which write nothing)."""

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.infra.settings import get_settings
from starter.cli import app
from tests.conftest import free_port
from tests.leadloop.reporting.test_report import png_size, seed

runner = CliRunner()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The hand-computed dataset of tests/leadloop/reporting/test_report.py in an SQLite file; no Temporal anywhere."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"

    async def prepare() -> None:
        await upgrade_database(url)
        engine = make_engine(url)
        try:
            await seed(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", url)
    monkeypatch.setenv("LEADLOOP_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in {".html", ".png", ".part"})


def test_the_report_renders_without_temporal_and_says_so(seeded: Path) -> None:
    out = seeded / "out" / "report.html"
    result = runner.invoke(app, ["report", "--since", "2026-11-01", "--out", str(out), "--target-conversions", "4"])
    assert result.exit_code == 0, result.output
    assert "Temporal at 127.0.0.1:" in result.stderr and "was not reachable" in result.stderr
    assert written(seeded) == [
        "out/report.html",
        "out/report_files/funnel.png",
        "out/report_files/inbound.png",
        "out/report_files/planner.png",
        "out/report_files/reasons.png",
        "out/report_files/reps.png",
        "out/report_files/steps.png",
    ]
    for png in (seeded / "out" / "report_files").iterdir():
        width, height = png_size(png.read_bytes())
        assert width >= 400 and height >= 200
    page = out.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "the live stage counts are missing: Temporal at 127.0.0.1:" in page
    # the summary, with the numbers worked out in tests/leadloop/reporting/test_report.py
    summary = " ".join(result.stdout.split())
    assert "new leads (enrolled) │ 10" in summary
    assert "engaged │ 6 │ 60.0%" in summary and "escalated │ 5 │ 83.3%" in summary
    assert "converted │ 2 │ 40.0%" in summary and "recycled / dormant / suppressed │ 2 / 2 / 2" in summary
    assert "hand-overs, SLA lapses │ 8, 1 │ 14.3%" in summary
    assert "plan: new leads for 4 conversions │ 20" in summary
    assert f"wrote {out} and 6 charts in {out.parent / 'report_files'}/" in summary


def test_a_cadence_filter_and_no_period(seeded: Path) -> None:
    out = seeded / "welcome.html"
    result = runner.invoke(app, ["report", "--cadence", "welcome", "--out", str(out), "--growth", "50"])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "cadence welcome" in page and "influencer" not in re.sub(r"<dl.*?</dl>", "", page, flags=re.S)
    # all time, welcome's leads L1..L9: 9 new, engaged L1, L2, L3, L5, L6, L7 = 6, converted 2 -> 2 + 50% = 3
    assert re.search(r'<tr data-stage="enrolled"><td>enrolled</td><td class="num">9</td>', page)
    assert "Target: <b>3 conversions</b>" in page
    assert (seeded / "welcome_files" / "planner.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-13-01"], "--since '2026-13-01' is not a date: month must be in 1..12"),
        (["--since", "last week"], "--since 'last week' is not a date: give YYYY-MM-DD"),
        (["--since", "20261101"], "give YYYY-MM-DD"),
        (["--since", "2999-01-01"], "--since 2999-01-01 is in the future"),
        (["--cadence", "nope"], "unknown cadence 'nope'; known cadences: "),
        (["--target-conversions", "-3"], "the target must be at least 1 conversion, not -3"),
        (["--growth", "-10"], "the growth must be 0 % or more"),
        (["--target-conversions", "5", "--growth", "10"], "not both"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(seeded: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["report", "--out", str(seeded / "r" / "report.html"), *args])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
    assert written(seeded) == []


def test_an_unknown_cadence_lists_the_known_ones(seeded: Path) -> None:
    result = runner.invoke(app, ["report", "--cadence", "nope", "--out", str(seeded / "r.html")])
    # the cadence files (cadences/: influencer, nurture-later, reengage, welcome) and those the database has seen
    assert result.exit_code == 1
    assert "unknown cadence 'nope'; known cadences: influencer, nurture-later, reengage, welcome" in result.stderr


def test_a_database_without_tables_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["report", "--out", str(tmp_path / "r.html")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1 and "run `leadloop db upgrade`" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_the_summary_shows_what_came_back_and_warns_of_crossed_thresholds(seeded: Path) -> None:
    from tests.leadloop.reporting.test_report_inbound import came_back

    async def add_inbound() -> None:
        engine = make_engine(get_settings().database_url)
        try:
            await came_back(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    asyncio.run(add_inbound())
    out = seeded / "report.html"
    result = runner.invoke(app, ["report", "--since", "2026-11-01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = " ".join(result.stdout.split())
    assert "replies / auto-replies │ 1 / 1 │ 6.7%" in summary
    assert "hard bounces (at the send + later), soft, policy blocks │ 3, 1, 1 │ 18.8% ⚑ crossed" in summary
    assert "inbound not matched to a send │ 2" in summary
    warnings = " ".join(result.stderr.split())
    assert "note: all cadences: bounce rate 18.75% is at or over 10%: Amazon SES may pause the account's sending" in (
        warnings
    )
    assert "note: cadence welcome: complaint rate 15.38% is at or over 0.3%" in warnings
    assert (seeded / "report_files" / "inbound.png").exists()


def test_the_terminal_shows_how_much_of_each_steps_click_rate_was_real(seeded: Path) -> None:
    from tests.leadloop.reporting.test_report_truth import seed_truth

    async def add_truth() -> None:
        engine = make_engine(get_settings().database_url)
        try:
            await seed_truth(make_sessionmaker(engine), first_lead=101)
        finally:
            await engine.dispose()

    asyncio.run(add_truth())
    result = runner.invoke(app, ["report", "--since", "2026-11-01", "--out", str(seeded / "report.html")])
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "cadence steps: how much of the click rate was real" in lines
    # worked out in tests/leadloop/reporting/test_report_truth.py: 7, 5 and 3 of b2b's 10 intro emails clicked;
    # 8 click events: 3 confirmed, 2 unconfirmed, 3 machines'
    b2b_intro = (
        "│ b2b / intro │ 10 │ 70.0% / 50.0% / 30.0% │ 3, 2, 3 │ gateway 1, cloud 1, unclassified 1 │ 90.0% / 60.0% │ "
        "gateway 1, prefetch 1, MPP 1, unclassified 1 │"
    )
    assert b2b_intro in lines
    assert "│ b2b / follow-up │ 2 │ 50.0% / 0.0% / 0.0% │ 0, 0, 1 │ gateway 1 │ 50.0% / 0.0% │ none │" in lines
    # the welcome step's events were stored before classes and confirmations: the machine's click unclassified, the
    # people's unconfirmed
    welcome = (
        "│ welcome / welcome │ 8 │ 37.5% / 25.0% / 0.0% │ 0, 2, 1 │ unclassified 1 │ 62.5% / 50.0% │ unclassified 1 │"
    )
    assert welcome in lines
    # every step together, 27 sends: clicked by anything 3 (welcome) + 1 (tips) + 7 + 1 (b2b) = 12, by a person
    # 2 + 1 + 5 = 8, confirmed 3
    summary = " ".join(result.stdout.split())
    assert "emails clicked: by anything / a person / confirmed │ 12 / 8 / 3 │ 44.4% / 29.6% / 11.1%" in summary
