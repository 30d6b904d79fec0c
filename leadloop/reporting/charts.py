"""The report's charts, drawn by matplotlib (the `report` extra, imported when a chart is drawn) as PNG bytes."""

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from leadloop.reporting.definitions import THRESHOLDS
from leadloop.reporting.formats import pct
from leadloop.reporting.models import (
    ENDED,
    OUTCOMES,
    CadenceCameBack,
    FunnelPlan,
    InboundSummary,
    ReportData,
    SalesStats,
    StepStats,
    class_labels,
    machine_classes,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INK = "#1f2933"
MUTED = "#7b8794"
COLOURS = {
    "blue": "#2f6fb3",
    "teal": "#1c9c8c",
    "amber": "#d98c1f",
    "red": "#c8423b",
    "grey": "#9aa5b1",
    "violet": "#7658b8",
    "green": "#3f8f3f",
}
WIDE, HALF = 10.0, 6.2  # inches at 100 dpi: a chart across the page, a chart beside its table


def _figure(width: float, height: float) -> "Figure":
    """A figure drawn by Agg without pyplot: nothing global keeps it, so it is freed with its last reference.
    (matplotlib is imported here, when a chart is drawn: it takes a second or two to import.)"""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Every label, title, tick, legend and annotation is plain text: names come from data, and matplotlib would
    # read `$...$` as mathtext (a rep called `Marta $$ López` ended the report with a ParseException) or, with
    # usetex in someone's matplotlibrc, hand them to LaTeX. Every chart starts here, and text (tick labels made
    # while drawing too) reads these settings when it is made.
    matplotlib.rcParams["text.parse_math"] = False
    matplotlib.rcParams["text.usetex"] = False
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _whole_numbers(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _png(fig: "Figure") -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    fig.clear()
    return buffer.getvalue()


def _style(ax: Any, title: str = "") -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=9)
    if title:
        ax.set_title(title, fontsize=11, loc="left", color=INK)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", color=MUTED, fontsize=11, transform=ax.transAxes)
    ax.set_axis_off()


def chart_stages_now(stages: Mapping[str, int]) -> bytes:
    shown = [s for s in stages if stages[s]]
    fig = _figure(HALF, max(2.2, 0.36 * len(shown) + 1.0))
    ax = fig.add_subplot()
    if not shown:
        _empty(ax, "no lead in Temporal yet")
        return _png(fig)
    names = shown[::-1]
    colours = [COLOURS["grey"] if n in ENDED else COLOURS["blue"] for n in names]
    bars = ax.barh([n.replace("_", " ") for n in names], [stages[n] for n in names], color=colours, height=0.65)
    ax.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.12)
    _style(ax, "Leads by stage now (grey: ended)")
    return _png(fig)


def chart_funnel(data: ReportData) -> bytes:
    fig = _figure(WIDE, 3.2)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    top = data.funnel[0].leads if data.funnel else 0
    if not top:
        _empty(left, "no new leads in the period")
    else:
        ys = list(range(len(data.funnel)))[::-1]
        values = [s.leads for s in data.funnel]
        colours = [COLOURS["blue"], COLOURS["teal"], COLOURS["amber"], COLOURS["green"]]
        left.barh(ys, values, left=[(top - v) / 2 for v in values], color=colours[: len(values)], height=0.72)
        for y, stage in zip(ys, data.funnel, strict=True):
            rate = "" if stage.rate is None else f" · {pct(stage.rate)} of previous"
            label = f"{stage.leads} {stage.stage}{rate}"
            if stage.leads > top * 0.6:  # inside a wide bar, beside a narrow one
                left.text(top / 2, y, label, ha="center", va="center", fontsize=9.5, color="white", fontweight="bold")
            else:
                left.text(
                    (top + stage.leads) / 2 + top * 0.015,
                    y,
                    label,
                    ha="left",
                    va="center",
                    fontsize=9.5,
                    color=INK,
                    fontweight="bold",
                )
        left.set_xlim(0, top)
        left.set_axis_off()
        left.set_title(
            f"New leads in the period: {pct(data.funnel[-1].of_top)} converted", fontsize=11, loc="left", color=INK
        )
    names = list(OUTCOMES)[::-1]
    colours = [COLOURS["red"], COLOURS["violet"], COLOURS["teal"], COLOURS["grey"]][::-1]
    bars = right.barh(names, [data.outcomes.get(n, 0) for n in names], color=colours, height=0.65)
    right.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(right.xaxis)
    right.margins(x=0.18)
    _style(right, "…and where they went")
    return _png(fig)


def chart_steps(steps: Sequence[StepStats]) -> bytes:
    """Per step: the human rates and the machines' shares; below, its click events by who made them, under the raw,
    human and confirmed click rates."""
    fig = _figure(WIDE, 7.4)
    if not steps:
        _empty(fig.add_subplot(), "no cadence emails in the period")
        return _png(fig)
    ax, clicks = fig.subplots(2, 1, height_ratios=[1, 1.1])
    series = (
        ("human open rate", "open_rate", COLOURS["blue"]),
        ("human click rate", "click_rate", COLOURS["teal"]),
        ("machine share of opens", "machine_open_share", COLOURS["grey"]),
        ("machine share of clicks", "machine_click_share", COLOURS["amber"]),
    )
    width = 0.8 / len(series)
    for i, (label, field, colour) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(steps))]
        ax.bar(xs, [(getattr(s, field) or 0) * 100 for s in steps], width=width, label=label, color=colour)
    ticks = [f"{s.cadence}\n{s.step}\n{s.sends} sent" for s in steps]
    small = 8.5 if len(steps) <= 8 else 7.0  # many steps: their names stay apart
    ax.set_xticks(range(len(steps)), ticks, fontsize=small)
    ax.set_ylabel("% of sends / of events", color=INK, fontsize=9)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=9, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    _style(ax)
    ax.tick_params(axis="x", labelsize=small)
    _chart_clicks(clicks, steps, ticks, small)
    return _png(fig)


def _chart_clicks(ax: Any, steps: Sequence[StepStats], ticks: list[str], small: float) -> None:
    """Each step's click events stacked by who made them, its raw, human and confirmed click rates above."""
    classes = machine_classes(steps)
    shades = [COLOURS["amber"], COLOURS["red"], COLOURS["violet"], COLOURS["grey"], "#52606d", "#cbd2d9"]
    layers = [
        ("confirmed by the landing page", [s.confirmed_clicks for s in steps], COLOURS["green"]),
        ("people, unconfirmed", [s.unconfirmed_clicks for s in steps], COLOURS["teal"]),
        *(
            (f"machine: {label}", [s.machine_clicks_by_class.get(c, 0) for s in steps], shades[i % len(shades)])
            for i, (c, label) in enumerate(zip(classes, class_labels(classes), strict=True))
        ),
    ]
    bottom = [0] * len(steps)
    for label, values, colour in layers:
        if any(values):
            ax.bar(range(len(steps)), values, bottom=bottom, width=0.6, label=label, color=colour)
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    for x, (s, top) in enumerate(zip(steps, bottom, strict=True)):
        rates = "\n".join(pct(r) for r in (s.raw_click_rate, s.click_rate, s.confirmed_click_rate))
        ax.text(x, top, rates, ha="center", va="bottom", fontsize=7.5, color=INK)
    ax.set_xticks(range(len(steps)), ticks, fontsize=small)
    ax.set_ylabel("click events", color=INK, fontsize=9)
    _whole_numbers(ax.yaxis)
    ax.set_ylim(0, max(max(bottom) * 1.45, 1))  # room for the rates above the tallest bar
    if any(bottom):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    _style(ax, "Click events by who made them; above each step its raw, human and confirmed click rates")
    ax.tick_params(axis="x", labelsize=small)


def chart_inbound(inbound: InboundSummary) -> bytes:
    """Each cadence's bounce and complaint rates beside the thresholds providers publish (dashed lines)."""
    fig = _figure(WIDE, max(2.6, 0.4 * (len(inbound.cadences) + 1) + 1.6))
    rows: list[CadenceCameBack] = [*inbound.cadences, inbound.total] if inbound.cadences else []
    for ax, metric, title in zip(
        fig.subplots(1, 2),
        ("bounce_rate", "complaint_rate"),
        ("Bounce rate (hard bounces)", "Complaint rate (spam reports)"),
        strict=True,
    ):
        if not rows:
            _empty(ax, "no cadence emails in the period")
            continue
        names = [r.cadence or "all cadences" for r in rows][::-1]
        values = [(getattr(r, metric) or 0) * 100 for r in rows][::-1]
        levels = [{f.metric: f.level for f in r.flags}.get(metric) for r in rows][::-1]
        colour = {"crossed": COLOURS["red"], "warning": COLOURS["amber"], None: COLOURS["teal"]}
        bars = ax.barh(names, values, color=[colour[level] for level in levels], height=0.6)
        digits = 2 if metric == "complaint_rate" else 1
        ax.bar_label(bars, [pct(v / 100, digits) for v in values], padding=3, fontsize=9, color=INK)
        for threshold in (t for t in THRESHOLDS if t.metric == metric):
            ax.axvline(
                threshold.rate * 100,
                color=COLOURS["red" if threshold.level == "crossed" else "amber"],
                ls="--",
                label=f"{pct(threshold.rate, digits)}: {threshold.label}",
            )
        ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22))
        top = max([*values, *(t.rate * 100 for t in THRESHOLDS if t.metric == metric)])
        ax.set_xlim(0, top * 1.25)
        ax.set_xlabel("% of sends", color=INK, fontsize=9)
        _style(ax, title)
    return _png(fig)


def chart_reps(sales: SalesStats) -> bytes:
    fig = _figure(HALF, max(2.4, 0.42 * len(sales.reps) + 1.3))
    ax = fig.add_subplot()
    if not sales.reps:
        _empty(ax, "no hand-overs to reps in the period")
        return _png(fig)
    reps = list(reversed(sales.reps))
    labels = [r.rep for r in reps]
    left = [0] * len(reps)
    for label, field, colour in (
        ("accepted", "accepted", COLOURS["green"]),
        ("rejected", "rejected", COLOURS["red"]),
        ("lapsed", "lapsed", COLOURS["amber"]),
        ("open", "open", COLOURS["blue"]),
        ("closed", "closed", COLOURS["grey"]),
    ):
        values = [getattr(r, field) for r in reps]
        ax.barh(labels, values, left=left, label=label, color=colour, height=0.65)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total}", va="center", fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.08)
    fig.legend(fontsize=8.5, ncols=5, loc="outside lower center", frameon=False)
    _style(ax, "Hand-overs per rep")
    return _png(fig)


def chart_reasons(sales: SalesStats) -> bytes:
    fig = _figure(HALF, max(2.2, 0.34 * len(sales.reasons) + 1.0))
    ax = fig.add_subplot()
    if not sales.reasons:
        _empty(ax, "no rejections in the period")
        return _png(fig)
    reasons = list(reversed(sales.reasons))
    bars = ax.barh([r.label for r in reasons], [r.rejections for r in reasons], color=COLOURS["red"], height=0.65)
    ax.bar_label(bars, padding=3, fontsize=9, color=INK)
    _whole_numbers(ax.xaxis)
    ax.margins(x=0.1)
    _style(ax, "Why reps rejected leads")
    return _png(fig)


def chart_planner(plan: FunnelPlan) -> bytes:
    fig = _figure(HALF, 3.2)
    ax = fig.add_subplot()
    xs = range(len(plan.stages))
    measured = ax.bar(
        [x - 0.2 for x in xs],
        [s.measured or 0 for s in plan.stages],
        width=0.4,
        label="measured in the period",
        color=COLOURS["grey"],
    )
    needed = ax.bar(
        [x + 0.2 for x in xs],
        [s.needed for s in plan.stages],
        width=0.4,
        label="needed for the target",
        color=COLOURS["blue"],
    )
    ax.bar_label(measured, padding=2, fontsize=9, color=INK)
    ax.bar_label(needed, padding=2, fontsize=9, color=INK)
    ax.set_xticks(list(xs), [s.stage for s in plan.stages])
    ax.margins(y=0.18)
    ax.legend(fontsize=8.5, frameon=False)
    _style(ax, f"Needed for {plan.target_conversions} conversions")
    return _png(fig)


def draw_charts(data: ReportData) -> dict[str, bytes]:
    """Every chart the report shows, as PNG bytes by name."""
    charts = {
        "funnel": chart_funnel(data),
        "steps": chart_steps(data.steps),
        "inbound": chart_inbound(data.inbound),
        "reps": chart_reps(data.sales),
        "reasons": chart_reasons(data.sales),
    }
    if data.live_stages is not None:
        charts["stages_now"] = chart_stages_now(data.live_stages)
    if data.plan is not None:
        charts["planner"] = chart_planner(data.plan)
    return charts
