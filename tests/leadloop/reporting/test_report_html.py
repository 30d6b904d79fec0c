"""The report page escapes what people and files wrote: cadence and step names, reasons, names, notes."""

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from leadloop.reporting.html import render_html
from leadloop.reporting.models import (
    FunnelPlan,
    FunnelStage,
    PlanStage,
    ReasonStats,
    ReportData,
    RepStats,
    SalesStats,
    StepStats,
)

EVIL = "<script>alert(1)</script>\"'&"


def test_hostile_text_is_shown_as_text_never_as_markup(tmp_path: Path) -> None:
    data = ReportData(
        generated_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
        cadence=f"c{EVIL}",
        live_note=f"note {EVIL}",
        funnel=[
            FunnelStage(stage="enrolled", leads=3, of_top=1.0),
            FunnelStage(stage="converted", leads=1, rate=1 / 3),
        ],
        steps=[StepStats(cadence=f"cad{EVIL}", step=f"step{EVIL}", sends=2)],
        sales=SalesStats(
            reps=[RepStats(rep_id=None, rep=f"rep{EVIL}", team=f"team{EVIL}", handovers=1)],
            reasons=[ReasonStats(reason=f"why{EVIL}", label=f"label{EVIL}", rejections=1, outcomes={f"k{EVIL}": 1})],
        ),
        suppressions={f"supp{EVIL}": 1},
        plan=FunnelPlan(target_conversions=2, stages=[PlanStage(stage=f"stage{EVIL}", rate=None, needed=2)]),
    )
    page = render_html(data, tmp_path / 'files<i>"&')

    assert "<script" not in page and "alert(1)</" not in page
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
    for text in ("c", "note ", "cad", "step", "rep", "team", "label", "→ k", "supp", "stage"):
        assert text + escaped in page, text
    assert "the charts are also in files&lt;i&gt;&#34;&amp;/ as PNG files" in page
    # keys in attributes cannot close their quotes: a parser reads them back whole, and finds no script
    page_tags = _tags(page)
    assert not [tag for tag, _ in page_tags if tag == "script"]
    attributes = {k: v for _, attrs in page_tags for k, v in attrs if k.startswith("data-")}
    assert attributes["data-step"] == f"cad{EVIL}/step{EVIL}"
    assert attributes["data-reason"] == f"why{EVIL}"
    assert attributes["data-suppression"] == f"supp{EVIL}"
    assert attributes["data-plan"] == f"stage{EVIL}"


def _tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Parser().feed(page)
    return tags
