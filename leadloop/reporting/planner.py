"""The funnel planner: works backwards from a number of conversions to the leads each stage needs (pure)."""

import itertools
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from leadloop.reporting.models import FunnelPlan, FunnelStage, PlanError, PlanStage, ReportData


def _fraction(value: Any, what: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | Fraction):
        raise PlanError(f"{what} must be a number, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PlanError(f"{what} must be a finite number, not {value}")
        return Fraction(value).limit_denominator(1_000_000)
    return Fraction(value)


def check_plan_inputs(target_conversions: int | None = None, growth_pct: float | None = None) -> None:
    """Refuse a target or growth that means nothing, before anything is gathered."""
    if target_conversions is not None and growth_pct is not None:
        raise PlanError("give a target number of conversions or a growth percentage, not both")
    if target_conversions is not None:
        if isinstance(target_conversions, bool) or not isinstance(target_conversions, int):
            raise PlanError(f"the target must be a whole number of conversions, not {target_conversions!r}")
        if target_conversions < 1:
            raise PlanError(f"the target must be at least 1 conversion, not {target_conversions}")
    if growth_pct is not None:
        growth = _fraction(growth_pct, "the growth percentage")
        if growth < 0:
            raise PlanError(f"the growth must be 0 % or more, not {growth_pct} % (give a smaller target instead)")


def plan_funnel(
    rates: Mapping[str, float | Fraction],
    target_conversions: int | None = None,
    growth_pct: float | None = None,
    current: Mapping[str, int] | None = None,
    *,
    top: str = "enrolled",
) -> FunnelPlan:
    """The backwards funnel: how many leads each stage needs for the target, from the measured stage rates.

    Args:
        rates: stage -> the share of the previous stage's leads that reach it, in funnel order after `top`
            (e.g. {"engaged": 0.4, "escalated": 0.25, "converted": 0.5}); each in (0, 1].
        target_conversions: how many leads should reach the last stage.
        growth_pct: or: the last stage's `current` number, grown by this percentage (rounded up).
        current: the measured number per stage; the plan shows how many more each stage needs.

    Raises:
        PlanError: no rates, a rate of zero or above one, both or neither of target and growth, a target
            below one, negative growth, growth with no measured conversions to grow from.
    """
    if not rates:
        raise PlanError("no stage rates to plan with")
    check_plan_inputs(target_conversions, growth_pct)
    if target_conversions is None and growth_pct is None:
        raise PlanError("give a target number of conversions or a growth percentage")
    stages = [top, *rates]
    if len(set(stages)) != len(stages):
        raise PlanError(f"each stage once: {', '.join(stages)}")
    exact: dict[str, Fraction] = {}
    for stage, value in rates.items():
        rate = _fraction(value, f"the rate into {stage!r}")
        if rate <= 0:
            raise PlanError(
                f"the rate into {stage!r} is {float(rate):g}: no lead passes that stage, so no number of leads "
                "reaches the target (measure a period where some do)"
            )
        if rate > 1:
            raise PlanError(
                f"the rate into {stage!r} is {float(rate):g}: a rate is a share of the previous stage, at most 1"
            )
        exact[stage] = rate
    for stage, count in (current or {}).items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PlanError(f"the measured number of {stage!r} must be a whole number ≥ 0, not {count!r}")
    last = stages[-1]
    if target_conversions is not None:
        target = target_conversions
    else:
        base = (current or {}).get(last, 0)
        if not base:
            raise PlanError(
                f"a growth percentage needs {last} leads measured in the period to grow from, and "
                "there are none: give a target number of conversions instead"
            )
        target = math.ceil(base * (1 + Fraction(str(growth_pct)) / 100))
    needed = {last: target}
    for later, earlier in zip(reversed(stages[1:]), reversed(stages[:-1]), strict=True):
        needed[earlier] = math.ceil(needed[later] / exact[later])
    plan = []
    for stage in stages:
        measured = (current or {}).get(stage)
        plan.append(
            PlanStage(
                stage=stage,
                rate=float(exact[stage]) if stage in exact else None,
                needed=needed[stage],
                measured=measured,
                more_needed=None if measured is None else max(0, needed[stage] - measured),
            )
        )
    return FunnelPlan(target_conversions=target, growth_pct=growth_pct, stages=plan)


def measured_rates(funnel: Sequence[FunnelStage]) -> dict[str, Fraction]:
    """The cohort funnel's stage rates as exact fractions of its counts (zero after an empty stage)."""
    return {
        stage.stage: Fraction(stage.leads, previous.leads) if previous.leads else Fraction(0)
        for previous, stage in itertools.pairwise(funnel)
    }


def with_plan(data: ReportData, target_conversions: int | None = None, growth_pct: float | None = None) -> ReportData:
    """The report with its funnel plan, or a note on why the measured funnel cannot be planned from.

    Without a target or a growth the plan repeats the measured conversions (growth 0 %).
    """
    check_plan_inputs(target_conversions, growth_pct)
    if target_conversions is None and growth_pct is None:
        growth_pct = 0.0
    counts = {s.stage: s.leads for s in data.funnel}
    try:
        data.plan = plan_funnel(
            measured_rates(data.funnel), target_conversions, growth_pct, counts, top=data.funnel[0].stage
        )
        data.plan_note = None
    except PlanError as exc:
        data.plan, data.plan_note = None, f"no plan: {exc}"
    return data
