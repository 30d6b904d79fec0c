"""The report of the hand-computed dataset, compared whole with a snapshot taken before the report was restructured."""

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop import PROJECT_ROOT
from leadloop.reporting.gather import cadence_steps_from, gather_report
from leadloop.reporting.html import render_html
from leadloop.reporting.planner import with_plan
from tests.leadloop.reporting.test_report import NOW, SINCE, seed

SNAPSHOT = Path(__file__).with_name("report_snapshot.json")


class _Page(HTMLParser):
    """A page's text and its tags with their attributes; inline images stand as their chart's id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        shown = [(k, "<png>" if k == "src" and (v or "").startswith("data:image/png;base64,") else v) for k, v in attrs]
        self.tags.append(tag + "".join(f" {k}={v!r}" for k, v in shown))

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(f"/{tag}")

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(" ".join(data.split()))


def page_outline(page: str) -> dict[str, list[str]]:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return {"text": parser.text, "tags": parser.tags}


async def report_snapshot(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> dict[str, Any]:
    """Every number of four reports of the dataset (all but their time of making), and one report's page."""
    steps = cadence_steps_from(PROJECT_ROOT / "cadences")
    reports = {
        "november": with_plan(await gather_report(sessionmaker, None, SINCE, None, now=NOW), target_conversions=4),
        "all_time": with_plan(await gather_report(sessionmaker, None, None, None, now=NOW, cadence_steps=steps)),
        "welcome": with_plan(await gather_report(sessionmaker, None, SINCE, "welcome", now=NOW), growth_pct=50),
        "influencer": with_plan(await gather_report(sessionmaker, None, SINCE, "influencer", now=NOW)),
    }
    numbers = {name: data.model_dump(mode="json", exclude={"generated_at"}) for name, data in reports.items()}
    page = render_html(reports["november"], tmp_path / "report_files")
    return {"numbers": numbers, "page": page_outline(page)}


async def test_the_report_is_the_snapshot_taken_before_the_restructuring(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await seed(sessionmaker)
    got = await report_snapshot(sessionmaker, tmp_path)
    want = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    # in order too: the order of reasons, suppressions and steps is what the page shows
    assert json.dumps(got["numbers"], ensure_ascii=False) == json.dumps(want["numbers"], ensure_ascii=False)
    assert got["page"]["text"] == want["page"]["text"]
    assert got["page"]["tags"] == want["page"]["tags"]
