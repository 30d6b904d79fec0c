"""The report as one self-contained HTML page, rendered from the package's Jinja templates (autoescaped)."""

import base64
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from leadloop import DATA_DIR
from leadloop.reporting.charts import draw_charts
from leadloop.reporting.definitions import DEFINITIONS
from leadloop.reporting.formats import num, pct
from leadloop.reporting.models import (
    ACTIVITY,
    CHARTS,
    ENDED,
    OUTCOMES,
    FunnelStage,
    ReportData,
    class_labels,
    machine_classes,
    ratio,
)

TEMPLATES = DATA_DIR / "templates" / "report"


@cache
def templates() -> Environment:
    """The report's templates: every value escaped, a name the template does not know an error."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, num=num)
    env.globals.update(
        ratio=ratio,
        definitions=DEFINITIONS,
        outcomes=OUTCOMES,
        activity=ACTIVITY,
        ended=ENDED,
        machine_classes=machine_classes,
        class_labels=class_labels,
    )
    return env


def render_html(data: ReportData, png_dir: Path) -> str:
    """The report as one self-contained HTML page (charts inline as data URIs, no external resource); each
    chart is also written to `png_dir/<name>.png` (charts of an earlier report that this one has not are removed)."""
    charts = draw_charts(data)
    write_charts(charts, png_dir)
    return (
        templates()
        .get_template("page.html.j2")
        .render(
            data=data,
            charts={name: base64.b64encode(png).decode("ascii") for name, png in charts.items()},
            files=png_dir.name,
            cards=_cards(data),
            kinds=sorted({kind for reason in data.sales.reasons for kind in reason.outcomes}),
        )
    )


def write_charts(charts: dict[str, bytes], png_dir: Path) -> None:
    """Each chart as `png_dir/<name>.png`, whole or not at all; a chart this report has not is removed."""
    png_dir.mkdir(parents=True, exist_ok=True)
    for name in CHARTS:
        path = png_dir / f"{name}.png"
        if name in charts:
            partial = path.with_name(path.name + ".part")
            partial.write_bytes(charts[name])
            partial.replace(path)
        else:
            path.unlink(missing_ok=True)


def _cards(data: ReportData) -> list[tuple[object, str]]:
    """The key figures across the top of the page."""
    funnel = {s.stage: s for s in data.funnel}
    empty = FunnelStage(stage="", leads=0)
    sends = sum(s.sends for s in data.steps)
    opened = sum(s.human_opened for s in data.steps)
    return [
        (funnel.get("enrolled", empty).leads, "new leads"),
        (funnel.get("engaged", empty).leads, "engaged"),
        (funnel.get("escalated", empty).leads, "escalated"),
        (funnel.get("converted", empty).leads, "converted"),
        (pct(funnel.get("converted", empty).of_top), "of new leads converted"),
        (sends, "emails sent"),
        (pct(ratio(opened, sends)), "human open rate"),
        (data.sales.lapsed, "SLA lapses"),
    ]
