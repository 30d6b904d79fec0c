"""Rule files read NO, on, off, yes and no as the strings they look like (YAML 1.2 booleans), Norway first."""

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import load_cadence
from leadloop.domain.routing import load_roster, load_routing
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import LeadProfile, compute_score, load_scoring
from tests.conftest import BIN

ROUTING = """\
version: 1
rules:
  - name: nordics
    when: {country: [NO, SE, DK, FI, IS]}
    team: nordics
  - name: switches
    when: {product_interest: [on, off, yes, no]}
    team: switches
  - name: rest
    team: emea
"""

SCORING = """\
version: 1
profile:
  country: {NO: 7, SE: 5}
  product_interest: {On: 3, off: 2, YES: 4, No: 1}
engagement:
  - {name: click, kind: click, points: 10}
"""


@pytest.fixture
def rule_files(tmp_path: Path) -> Path:
    (tmp_path / "routing.yaml").write_text(ROUTING, encoding="utf-8")
    (tmp_path / "scoring.yaml").write_text(SCORING, encoding="utf-8")
    return tmp_path


def test_a_norwegian_lead_is_routed_and_scored(rule_files: Path) -> None:
    routing = load_routing(rule_files / "routing.yaml")
    assert routing.rules[0].when.country == ["NO", "SE", "DK", "FI", "IS"]
    norwegian = LeadProfile(country="no", product_interest="automation")
    rule = routing.route(norwegian)
    assert rule is not None and (rule.name, rule.team) == ("nordics", "nordics")

    scoring = load_scoring(rule_files / "scoring.yaml")
    score = compute_score(scoring, norwegian, [], datetime(2026, 11, 23, tzinfo=UTC))
    assert {i.rule: i.points for i in score.items} == {"country=NO": 7}


@pytest.mark.parametrize("interest", ["on", "OFF", "Yes", "no"])
def test_on_off_yes_no_are_strings_where_a_string_is_expected(rule_files: Path, interest: str) -> None:
    lead = LeadProfile(country="DE", product_interest=interest)
    rule = load_routing(rule_files / "routing.yaml").route(lead)
    assert rule is not None and rule.name == "switches"
    score = compute_score(load_scoring(rule_files / "scoring.yaml"), lead, [], datetime(2026, 11, 23, tzinfo=UTC))
    assert len(score.items) == 1 and score.items[0].rule.casefold() == f"product_interest={interest}".casefold()


def test_cadence_check_accepts_the_norwegian_rule_files(rule_files: Path) -> None:
    shutil.copy(PROJECT_ROOT / "cadences" / "welcome.yaml", rule_files / "welcome.yaml")
    result = subprocess.run(
        [str(BIN / "leadloop"), "cadence", "check", str(rule_files)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "routing.yaml: routing rules" in result.stdout and "scoring.yaml: scoring rules" in result.stdout


def test_boolean_fields_still_take_true_false_and_yes_no(tmp_path: Path) -> None:
    roster = tmp_path / "reps.yaml"
    roster.write_text(
        "teams:\n  - name: nordics\n    reps:\n"
        "      - {email: a@x.example, name: Åse, active: no}\n"
        "      - {email: b@x.example, name: Bjørn, active: false}\n"
        "      - {email: c@x.example, name: Cato, active: yes}\n"
        "      - {email: d@x.example, name: Dag, active: True}\n",
        encoding="utf-8",
    )
    assert [r.active for r in load_roster(roster).teams[0].reps] == [False, False, True, True]
    cadence = tmp_path / "owner.yaml"
    cadence.write_text(
        (PROJECT_ROOT / "cadences" / "welcome.yaml").read_text(encoding="utf-8") + "send_as_owner: on\n",
        encoding="utf-8",
    )
    assert load_cadence(cadence).send_as_owner is True


def test_a_boolean_field_with_a_non_boolean_is_one_clear_error(tmp_path: Path) -> None:
    roster = tmp_path / "reps.yaml"
    roster.write_text("teams:\n  - name: nordics\n    reps:\n      - {email: a@x.example, name: Åse, active: maybe}\n")
    with pytest.raises(RuleFileError) as caught:
        load_roster(roster)
    assert caught.value.lines() == [
        f"{roster}:4: teams[0].reps[0].active: Input should be a valid boolean, unable to interpret input"
    ]
