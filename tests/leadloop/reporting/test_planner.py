"""The funnel planner: backwards from a target or a growth to the leads each stage needs, with hand-computed numbers."""

import re
from fractions import Fraction

import pytest

from leadloop.reporting.models import PlanError
from leadloop.reporting.planner import plan_funnel


def test_the_planner_works_backwards_with_hand_computed_numbers() -> None:
    rates = {"engaged": 0.4, "escalated": 0.25, "converted": 0.5}
    plan = plan_funnel(rates, target_conversions=10)
    # 10 conversions / 0.5 = 20 escalated; 20 / 0.25 = 80 engaged; 80 / 0.4 = 200 new leads
    assert [(s.stage, s.needed) for s in plan.stages] == [
        ("enrolled", 200),
        ("engaged", 80),
        ("escalated", 20),
        ("converted", 10),
    ]
    assert plan.stages[0].rate is None and plan.stages[1].rate == 0.4

    # 0.3 is taken as exactly 3/10: 9 / 0.3 = 30 (in floats 30.000000000000004, which would round up to 31)
    assert plan_funnel({"converted": 0.3}, target_conversions=9).stages[0].needed == 30
    # every stage rounds up to whole leads: 5 / 0.7 = 7.14 -> 8 at b; 8 / 0.3 = 26.7 -> 27 at a
    assert [s.needed for s in plan_funnel({"b": 0.3, "c": 0.7}, target_conversions=5, top="a").stages] == [27, 8, 5]


def test_the_planner_grows_from_the_measured_numbers() -> None:
    current = {"enrolled": 10, "engaged": 6, "escalated": 5, "converted": 2}
    rates = {"engaged": Fraction(6, 10), "escalated": Fraction(5, 6), "converted": Fraction(2, 5)}
    plan = plan_funnel(rates, growth_pct=50, current=current)
    # 2 conversions + 50% = 3; 3 / (2/5) = 7.5 -> 8 escalated; 8 / (5/6) = 9.6 -> 10 engaged; 10 / 0.6 = 16.7 -> 17
    assert plan.target_conversions == 3
    assert [(s.stage, s.needed, s.measured, s.more_needed) for s in plan.stages] == [
        ("enrolled", 17, 10, 7),
        ("engaged", 10, 6, 4),
        ("escalated", 8, 5, 3),
        ("converted", 3, 2, 1),
    ]
    target = plan_funnel(rates, target_conversions=4, current=current)
    # 4 / 0.4 = 10 escalated; 10 / (5/6) = 12 engaged; 12 / 0.6 = 20 new leads
    assert [s.needed for s in target.stages] == [20, 12, 10, 4]
    assert [s.more_needed for s in target.stages] == [10, 6, 5, 2]


@pytest.mark.parametrize(
    ("rates", "kwargs", "message"),
    [
        ({"engaged": 0.0, "converted": 0.5}, {"target_conversions": 5}, "the rate into 'engaged' is 0"),
        ({"engaged": 1.5}, {"target_conversions": 5}, "at most 1"),
        ({"engaged": -0.2}, {"target_conversions": 5}, "the rate into 'engaged' is -0.2"),
        ({"engaged": float("nan")}, {"target_conversions": 5}, "finite"),
        ({"engaged": 0.5}, {"target_conversions": -3}, "at least 1 conversion, not -3"),
        ({"engaged": 0.5}, {"target_conversions": 0}, "at least 1 conversion, not 0"),
        ({"engaged": 0.5}, {"target_conversions": 2.5}, "whole number"),
        ({"engaged": 0.5}, {"target_conversions": 5, "growth_pct": 10}, "not both"),
        ({"engaged": 0.5}, {}, "give a target number of conversions or a growth percentage"),
        ({"engaged": 0.5}, {"growth_pct": -20}, "0 % or more"),
        ({"engaged": 0.5}, {"growth_pct": 10}, "there are none: give a target"),
        ({"engaged": 0.5}, {"growth_pct": 10, "current": {"engaged": 0}}, "there are none"),
        ({}, {"target_conversions": 5}, "no stage rates"),
        ({"engaged": "lots"}, {"target_conversions": 5}, "must be a number"),
        ({"engaged": 0.5}, {"target_conversions": 5, "current": {"engaged": -1}}, "whole number ≥ 0"),
    ],
)
def test_the_planner_refuses_nonsense(rates: dict[str, object], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)):
        plan_funnel(rates, **kwargs)  # type: ignore[arg-type]
