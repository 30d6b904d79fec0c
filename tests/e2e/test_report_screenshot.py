"""A `leadloop report` page in headless Chromium: every chart loads, the numbers show, nothing is fetched; the
screenshot script (and `make report-screenshot`'s demo) write a PNG, and bad input writes nothing."""

import asyncio
import os
import re
from pathlib import Path

import pytest

from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.migrate import upgrade_database
from leadloop.reporting.gather import gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.planner import with_plan
from scripts.report_screenshot import default_chromium, take_report_screenshot
from scripts.ui_screenshot import png_size
from tests.conftest import BIN
from tests.e2e.test_drip_whole_stack import run
from tests.leadloop.reporting.test_report import NOW, SINCE, seed
from tests.leadloop.reporting.test_report_truth import seed_truth

SCRIPT = str(Path(__file__).parents[2] / "scripts" / "report_screenshot.py")
ENV = dict(os.environ)
CHARTS = {"chart-funnel", "chart-steps", "chart-inbound", "chart-reps", "chart-reasons", "chart-planner"}


@pytest.fixture
async def report(tmp_path: Path) -> Path:
    """The report of the hand-computed dataset (tests/leadloop/reporting/test_report.py) with the b2b cadence's
    clicks by people, the landing page and machines (test_report_truth.py), Temporal unreachable."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'leadloop.db'}"
    await upgrade_database(url)
    engine = make_engine(url)
    try:
        maker = make_sessionmaker(engine)
        await seed(maker)
        await seed_truth(maker, first_lead=101)  # enrolled in October: November's cohort stays as it was
        data = with_plan(await gather_report(maker, None, SINCE, None, now=NOW), target_conversions=4)
    finally:
        await engine.dispose()
    page = tmp_path / "report.html"
    page.write_text(render_html(data, tmp_path / "report_files"), encoding="utf-8")
    return page


@pytest.mark.e2e
async def test_the_report_opens_in_chromium_with_every_chart_and_its_numbers(report: Path, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    requests: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=default_chromium(), args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            await page.goto(report.resolve().as_uri(), wait_until="load")
            images = await page.evaluate(
                "() => Array.from(document.images).map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])"
            )
            assert {i[0] for i in images} == CHARTS
            assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
            converted = page.locator('tr[data-stage="converted"]')
            await converted.scroll_into_view_if_needed()
            assert await converted.is_visible()
            assert " ".join((await converted.inner_text()).split()) == "converted 2 40.0% 20.0%"
            assert await page.get_by_text("1 of 2 (50.0%)").is_visible()  # recycled leads that converted later
            assert await page.get_by_text("Νίκος Αλεξίου").first.is_visible()
            assert await page.locator("#note-live").is_visible()  # no live stage counts, and the page says so
            # how much of the b2b intro's raw click rate was real, and which machines made the rest
            clicks = page.locator('tr[data-clicks="b2b/intro"]')
            await clicks.scroll_into_view_if_needed()
            assert await clicks.is_visible()
            assert " ".join((await clicks.inner_text()).split()) == (
                "b2b intro 10 70.0% (7) 50.0% (5) 30.0% (3) 8 3 2 1 1 0 0 0 1"
            )
            assert await page.get_by_text("How much of the click rate was real").is_visible()
        finally:
            await browser.close()
    assert [r for r in requests if not r.startswith(("file:", "data:"))] == []

    # the script's function: the same checks, and the whole page as a PNG
    shot = await take_report_screenshot(report, tmp_path / "shot.png", width=1280)
    assert {i["id"] for i in shot.images} == CHARTS and shot.blocked == []
    assert png_size((tmp_path / "shot.png").read_bytes()) == (shot.width, shot.height)
    assert shot.width == 1280 and shot.height > 2000
    assert "1 of 2 (50.0%)" in shot.text


@pytest.mark.e2e
async def test_the_script_writes_a_png_and_refuses_bad_input(report: Path, tmp_path: Path) -> None:
    python = str(BIN / "python")
    out = tmp_path / "shots" / "report.png"
    code, stdout, err = await run(python, SCRIPT, str(report), "-o", str(out), "--crop", "1200", env=ENV)
    assert code == 0, err
    assert stdout == f"{out}: 1280x1200 px, 6 charts loaded\n"
    assert png_size(out.read_bytes()) == (1280, 1200)

    # a page that fetches something is not a self-contained report (its policy dropped, which would block it)
    leaky = tmp_path / "leaky.html"
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", report.read_text(encoding="utf-8"))
    html = html.replace("<main>", '<main><img id="tracker" src="http://127.0.0.1:9/pixel.gif">')
    leaky.write_text(html, encoding="utf-8")
    nothing = tmp_path / "none" / "x.png"
    results = await asyncio.gather(  # side by side
        run(python, SCRIPT, str(tmp_path / "missing.html"), "-o", str(nothing), env=ENV),
        run(python, SCRIPT, str(leaky), "-o", str(nothing), env=ENV),
        run(python, SCRIPT, str(report), "-o", str(nothing), "--chromium", str(tmp_path / "no-chromium"), env=ENV),
    )
    messages = ["no report at", "not self-contained: it asked for http://127.0.0.1:9/pixel.gif", "chromium not found"]
    for (code, stdout, err), message in zip(results, messages, strict=True):
        assert (code, stdout) == (1, "")
        assert err.startswith("report_screenshot: error: ") and err.count("\n") == 1 and message in err
    assert not nothing.parent.exists()


@pytest.mark.e2e
async def test_the_demo_report_screenshot(tmp_path: Path) -> None:
    """What `make report-screenshot` runs to make docs/img/report.png."""
    out = tmp_path / "report.png"
    code, stdout, err = await run(
        str(BIN / "python"),
        SCRIPT,
        "--demo",
        "--keep",
        str(tmp_path / "demo"),
        "-o",
        str(out),
        "--crop",
        "1600",
        env=ENV,
    )
    assert code == 0, err
    assert stdout == f"{out}: 1280x1600 px, 7 charts loaded\n"  # the demo has stage counts: one chart more
    assert (tmp_path / "demo" / "report_files" / "stages_now.png").exists()
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
