"""Cadence files: every bad input is refused with file, line and field."""

from datetime import timedelta
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.cadence import CadenceError, load_cadence, parse_cadence, parse_wait

GOOD = """\
name: demo
version: 1
default_locale: en
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "17:00"
steps:
  - id: one
    wait: 0
    template: welcome
    subject: "Hello {{ lead.first_name }}"
  - id: two
    wait: 3d
    template: tips
    subject: Tips
"""


def problems(text: str) -> list[str]:
    with pytest.raises(CadenceError) as failure:
        parse_cadence(text, Path("cadences/demo.yaml"))
    return failure.value.lines()


def test_the_sample_cadence_loads() -> None:
    cadence = load_cadence(PROJECT_ROOT / "cadences" / "welcome.yaml")
    assert cadence.name == "welcome"
    assert [s.id for s in cadence.steps] == ["welcome", "tips", "case-study", "checkin"]
    assert cadence.steps[3].wait == timedelta(weeks=1)


def test_good_file_parses_with_unquoted_times() -> None:
    cadence = parse_cadence(GOOD.replace('"09:00"', "09:00"), Path("x.yaml"))
    assert cadence.send_window.start.hour == 9
    assert cadence.steps[1].wait == timedelta(days=3)


def test_malformed_yaml_names_the_line() -> None:
    [problem] = problems(GOOD.replace("  - id: two", "  - id: two\n   bad: [unclosed"))
    assert problem.startswith("cadences/demo.yaml:")
    assert "malformed YAML" in problem


def test_unknown_field_names_file_line_and_field() -> None:
    [problem] = problems(GOOD.replace("    template: tips", "    template: tips\n    colour: blue"))
    assert problem == "cadences/demo.yaml:16: steps[1].colour: unknown field"


def test_step_without_template() -> None:
    [problem] = problems(GOOD.replace("    template: tips\n", ""))
    assert problem.startswith("cadences/demo.yaml:13: steps[1].template: Field required")


@pytest.mark.parametrize(
    ("wait", "message"),
    [("-2d", "negative"), ("400d", "absurd"), ("3 fortnights", "not a duration"), ("5", "ambiguous")],
)
def test_bad_waits(wait: str, message: str) -> None:
    [problem] = problems(GOOD.replace("wait: 3d", f"wait: {wait}"))
    assert problem.startswith("cadences/demo.yaml:14: steps[1].wait:")
    assert message in problem


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("days: [mon, tue, wed, thu, fri]", "days: []", "no days"),
        ('end: "17:00"', 'end: "09:00"', "send window is empty"),
        ("days: [mon, tue, wed, thu, fri]", "days: [mon, someday]", "send_window.days[1]"),
    ],
)
def test_empty_or_bad_send_window(old: str, new: str, message: str) -> None:
    lines = problems(GOOD.replace(old, new))
    assert any(message in line for line in lines), lines
    assert all(line.startswith("cadences/demo.yaml:") for line in lines)


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("version: 1", "version: 0").replace("wait: 3d", "wait: -1d")
    lines = problems(text)
    assert len(lines) == 2
    assert lines[0].startswith("cadences/demo.yaml:2: version:")


def test_duplicate_step_ids_and_keys() -> None:
    lines = problems(GOOD.replace("id: two", "id: one").replace("version: 1", "version: 1\nversion: 2"))
    assert any("duplicate key" in line and ":3:" in line for line in lines)
    assert any("repeated: one" in line for line in lines)


def test_not_a_mapping() -> None:
    assert "must be a YAML mapping" in problems("- just\n- a list\n")[0]


def test_wait_forms() -> None:
    assert parse_wait("1d12h") == timedelta(days=1, hours=12)
    assert parse_wait("2w") == timedelta(weeks=2)
    assert parse_wait("90m") == timedelta(minutes=90)
    assert parse_wait("P3D") == timedelta(days=3)  # as a snapshot comes back from Temporal
