"""Routing rules, the roster file and the rep chooser."""

from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.routing import (
    REPS_SHAPE,
    ROUTING_SHAPE,
    Candidate,
    Roster,
    RoutingConfig,
    choose_rep,
    load_roster,
    load_routing,
)
from leadloop.domain.rules import RuleFileError, parse_model_lines
from leadloop.domain.scoring import LeadProfile

ROUTING = """\
version: 1
rules:
  - name: dach-big
    when: {country: [DE, AT], company_size: {min: 201}}
    team: enterprise
  - name: greece
    when: {country: [GR]}
    team: south
  - name: rest
    team: emea
"""


def routing(text: str = ROUTING) -> RoutingConfig:
    return parse_model_lines(text, Path("routing.yaml"), RoutingConfig, ROUTING_SHAPE)[0]


@pytest.mark.parametrize(
    "lead, rule",
    [
        (LeadProfile(country="de", company_size="500-1000"), "dach-big"),
        (LeadProfile(country="DE", company_size="11-50"), "rest"),
        (LeadProfile(country="GR"), "greece"),
        (LeadProfile(), "rest"),
    ],
)
def test_first_matching_rule_wins(lead: LeadProfile, rule: str) -> None:
    chosen = routing().route(lead)
    assert chosen is not None and chosen.name == rule


@pytest.mark.parametrize(
    "text, message",
    [
        (
            ROUTING.replace("team: south", "team: south\n    priority: 1"),
            "routing.yaml:9: rules[1].priority: unknown field",
        ),
        (ROUTING + "  - name: late\n    when: {country: [FR]}\n    team: emea\n", "rule 'late' can never match"),
        (
            ROUTING.replace("when: {country: [GR]}", "when: {country: [DE, AT], company_size: {min: 500}}"),
            "rule 'greece' can never match",
        ),
        (ROUTING.replace("name: rest", "name: greece"), "must be unique"),
        (ROUTING.replace("retry", "x") + "retry_unassigned_every: -1h\n", "negative"),
    ],
)
def test_bad_routing_files(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        routing(text)
    assert message in str(caught.value)


ROSTER = """\
teams:
  - name: south
    reps:
      - {email: a@x.example, name: A, timezone: Europe/Athens}
      - {email: b@x.example, name: B}
  - name: emea
    reps:
      - {email: c@x.example, name: C}
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (
            ROSTER.replace("      - {email: c@x.example, name: C}\n", "").replace(
                "name: emea\n    reps:\n", "name: emea\n    reps: []\n"
            ),
            "team 'emea' is empty",
        ),
        (ROSTER.replace("c@x.example", "A@x.example"), "rep A@x.example is in teams 'south' and 'emea'"),
        (ROSTER.replace("Europe/Athens", "Mars/Olympus"), "unknown time zone"),
        (ROSTER.replace("name: B}", "name: B, shoe_size: 44}"), "shoe_size: unknown field"),
    ],
)
def test_bad_rosters(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_model_lines(text, Path("reps.yaml"), Roster, REPS_SHAPE)
    assert message in str(caught.value)


def test_samples_load() -> None:
    assert load_routing(PROJECT_ROOT / "cadences" / "routing.yaml").rules
    assert load_roster(PROJECT_ROOT / "examples" / "reps.yaml").teams


def reps(*loads: int, inactive: tuple[int, ...] = ()) -> list[Candidate]:
    return [Candidate(i + 1, i + 1 not in inactive, 3, load) for i, load in enumerate(loads)]


def test_round_robin_goes_around_skipping_inactive_full_and_excluded() -> None:
    pool = reps(0, 0, 3, 0, inactive=(4,))  # rep 3 is full, rep 4 inactive
    picks, last = [], None
    for _ in range(4):
        chosen = choose_rep(pool, "round_robin", last_rep_id=last, exclude=set())
        assert chosen is not None
        picks.append(chosen.id)
        last = chosen.id
    assert picks == [1, 2, 1, 2]
    chosen = choose_rep(pool, "round_robin", last_rep_id=1, exclude={2})
    assert chosen is not None and chosen.id == 1


def test_least_loaded_and_nobody() -> None:
    chosen = choose_rep(reps(2, 1, 1), "least_loaded", last_rep_id=None, exclude=set())
    assert chosen is not None and chosen.id == 2
    assert choose_rep(reps(3, 3), "least_loaded", last_rep_id=None, exclude=set()) is None
    assert choose_rep(reps(0, 0), "round_robin", last_rep_id=None, exclude={1, 2}) is None
