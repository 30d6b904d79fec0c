"""Scoring rules: profile fit, engagement with caps and half-life, and refused files."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadloop import PROJECT_ROOT
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import (
    Engagement,
    LeadProfile,
    ScoringConfig,
    company_headcount,
    compute_score,
    load_scoring,
    parse_scoring_lines,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RULES = """\
version: 1
half_life: 10d
profile:
  industry: {software: 15}
  company_size:
    - {min: 1, max: 50, points: 5}
    - {min: 51, max: 200, points: 10}
  title:
    - {group: seniority, keywords: [director, head], points: 10}
    - {group: seniority, keywords: [chief, cto], points: 20}
    - {group: authority, keywords: [procurement], points: 7}
  country: {GR: 5}
  fields: {budget: {approved: 10, planned: 5}}
engagement:
  - {name: pricing, kind: click, url: "*/pricing*", points: 25, cap: 30}
  - {name: click, kind: click, points: 10}
  - {name: open, kind: open, points: 3, cap: 6}
"""


def rules():
    return parse_scoring_lines(RULES, Path("scoring.yaml"))[0]


def test_profile_fit_names_each_rule() -> None:
    lead = LeadProfile(
        industry="Software",
        company_size="51-200",
        title="CTO and Head of Procurement",
        country="gr",
        attributes={"budget": "Approved"},
    )
    score = compute_score(rules(), lead, [], NOW)
    assert {i.rule: i.points for i in score.items} == {
        "industry=software": 15,
        "country=GR": 5,
        "company_size 51-200": 10,
        "title seniority 'cto'": 20,
        "title authority 'procurement'": 7,
        "budget=approved": 10,
    }
    assert score.total == score.profile == 67


def test_engagement_caps_and_url_tags() -> None:
    events = [Engagement(kind="open", at=NOW) for _ in range(5)]
    events += [Engagement(kind="click", at=NOW, url="https://site.example/pricing")] * 2
    events += [Engagement(kind="click", at=NOW, url="https://site.example/blog")]
    score = compute_score(rules(), LeadProfile(), events, NOW)
    assert {i.rule: i.points for i in score.items} == {"click pricing": 30, "click click": 10, "open open": 6}
    assert score.engagement == 46


def test_half_life_decays_engagement() -> None:
    old = [Engagement(kind="click", at=NOW - timedelta(days=10), url="x")]
    assert compute_score(rules(), LeadProfile(), old, NOW).engagement == 5
    # at demo speed a day lasts a second: ten "days" are ten seconds
    demo = [Engagement(kind="click", at=NOW - timedelta(seconds=10), url="x")]
    assert compute_score(rules(), LeadProfile(), demo, NOW, time_scale=86400).engagement == 5


def test_sample_rules_load() -> None:
    assert load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml").version >= 1


@pytest.mark.parametrize(
    "value, expected", [("51-200", 51), ("1000+", 1000), ("1,200", 1200), ("about 12", 12), ("", None), ("many", None)]
)
def test_headcount(value: str, expected: int | None) -> None:
    assert company_headcount(value) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        (RULES.replace("half_life: 10d", "half_life: 10d\ncolour: red"), "scoring.yaml:3: colour: unknown field"),
        (RULES.replace("{name: open,", "{name: open, weight: 2,"), "weight: unknown field"),
        (RULES.replace("{min: 51, max: 200", "{min: 40, max: 200"), "company_size bands overlap"),
        (
            RULES.replace('  - {name: pricing, kind: click, url: "*/pricing*", points: 25, cap: 30}\n', "")
            + '  - {name: pricing, kind: click, url: "*/pricing*", points: 25}\n',
            "can never match",
        ),
        (RULES.replace("name: click,", "name: open,"), "must be unique"),
        (RULES.replace("points: 3, cap: 6", "points: -3"), "greater than or equal to 0"),
        (RULES.replace("kind: open", "kind: forward"), "engagement[2].kind"),
        ("- just a list\n", "must be a YAML mapping"),
        ("version: [\n", "malformed YAML"),
    ],
)
def test_bad_files_name_line_and_field(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_scoring_lines(text, Path("scoring.yaml"))
    assert message in str(caught.value)


def test_bant_scores_the_value_not_its_presence() -> None:
    """With the shipped rules a lead whose record says `budget: none` gets no budget points; one whose budget is
    approved gets them, and the breakdown (`leadloop status`, the rep's email) names the value."""
    shipped = load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml")

    def bant(**attributes: str) -> dict[str, int]:
        return {i.rule: i.points for i in compute_score(shipped, LeadProfile(attributes=attributes), [], NOW).items}

    assert bant(budget="none", authority="no", need="unknown", timeline="never") == {}
    assert bant(budget="Approved") == {"budget=approved": 10}
    assert bant(budget="planned", authority="Decision maker", timeline="this quarter") == {
        "budget=planned": 5,
        "authority=decision-maker": 5,
        "timeline=this-quarter": 5,
    }


def test_a_presence_rule_in_a_file_is_refused_with_its_line() -> None:
    old = RULES.replace(
        "  fields: {budget: {approved: 10, planned: 5}}\n", "  fields:\n    need: {confirmed: 5}\n    budget: 10\n"
    )
    with pytest.raises(RuleFileError) as caught:
        parse_scoring_lines(old, Path("scoring.yaml"))
    line = old.splitlines().index("    budget: 10") + 1
    assert caught.value.lines() == [
        f"scoring.yaml:{line}: profile.fields.budget: 10 points for any budget scores 'budget: none' too: "
        "give points per value, e.g. budget: {approved: 10, planned: 5}"
    ]


def test_a_running_leads_snapshot_with_a_presence_rule_scores_as_it_did() -> None:
    """Leads enrolled before carry `budget: 10` in their workflow input: it decodes and scores as it did then, so
    their histories replay to the same decisions."""
    snapshot = ScoringConfig.model_validate_json('{"version": 1, "profile": {"fields": {"budget": 10}}}')
    score = compute_score(snapshot, LeadProfile(attributes={"budget": "none"}), [], NOW)
    assert [(i.rule, i.points) for i in score.items] == [("has budget", 10)]


VISITS = """\
version: 1
engagement:
  - {name: pricing, kind: visit, url: "*/pricing*", points: 15, cap: 30}
  - {name: visit, kind: visit, points: 3}
"""


def visit(url: str, at: datetime) -> Engagement:
    return Engagement(kind="visit", at=at, url=url)


def test_a_page_viewed_again_the_same_day_counts_once() -> None:
    config = parse_scoring_lines(VISITS, Path("scoring.yaml"))[0]  # says nothing: the loader's 1d
    assert config.visits_once_per_page == timedelta(days=1)
    same_page = [
        visit("https://site.example/pricing", NOW),
        visit("https://site.example/pricing", NOW + timedelta(seconds=1)),  # a reload
        visit("https://SITE.example/pricing/?plan=pro#top", NOW + timedelta(hours=23)),  # the same page
    ]
    assert compute_score(config, LeadProfile(), same_page, NOW + timedelta(hours=23)).engagement == 15
    other_page = [*same_page, visit("https://site.example/about", NOW + timedelta(hours=23))]
    assert compute_score(config, LeadProfile(), other_page, NOW + timedelta(hours=23)).engagement == 18
    next_day = [*same_page, visit("https://site.example/pricing", NOW + timedelta(days=1))]
    assert compute_score(config, LeadProfile(), next_day, NOW + timedelta(days=1)).engagement == 30
    # demo speed: a cadence day passes in a real second
    fast = [
        visit("https://site.example/pricing", NOW),
        visit("https://site.example/pricing", NOW + timedelta(seconds=2)),
    ]
    assert compute_score(config, LeadProfile(), fast, NOW, time_scale=86400).engagement == 30


def test_the_window_is_the_marketers_to_set_and_zero_counts_every_view() -> None:
    views = [visit("https://site.example/pricing", NOW + timedelta(hours=n)) for n in range(3)]
    every = parse_scoring_lines(VISITS + "visits_once_per_page: 0\n", Path("scoring.yaml"))[0]
    assert compute_score(every, LeadProfile(), views, NOW).engagement == 30  # the rule's cap
    hourly = parse_scoring_lines(VISITS + "visits_once_per_page: 2h\n", Path("scoring.yaml"))[0]
    assert compute_score(hourly, LeadProfile(), views, NOW).engagement == 30  # hours 0 and 2
    # a snapshot taken before the rule existed (a running lead's workflow input) scores as it always did
    from leadloop.domain.scoring import ScoringConfig

    old = ScoringConfig.model_validate({"version": 1, "engagement": every.model_dump()["engagement"]})
    assert old.visits_once_per_page is None
    assert compute_score(old, LeadProfile(), views[:1] * 2, NOW).engagement == 30
    assert load_scoring(PROJECT_ROOT / "cadences" / "scoring.yaml").visits_once_per_page == timedelta(days=1)


@pytest.mark.parametrize(
    ("value", "message"),
    [("30m", "at least 1h"), ("-1d", "visits_once_per_page"), ("2y", "visits_once_per_page"), ("yes", "duration")],
)
def test_a_bad_visit_window_names_line_and_field(value: str, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_scoring_lines(VISITS + f"visits_once_per_page: {value}\n", Path("scoring.yaml"))
    assert message in str(caught.value) and str(caught.value).startswith("scoring.yaml:5: visits_once_per_page")


@pytest.mark.parametrize(
    "again",
    [
        "https://site.example:443/pricing",  # the default port written out
        "https://site.example/Pricing",  # another case: the rule `*/pricing*` matches it all the same
        "https://site.example//pricing",  # doubled slashes
        "https://site.example/%70ricing/",  # percent-encoded
        "HTTPS://SITE.EXAMPLE/pricing?x=1#y",
    ],
)
def test_a_page_written_another_way_is_the_same_page(again: str) -> None:
    config = parse_scoring_lines(VISITS, Path("scoring.yaml"))[0]
    views = [visit("https://site.example/pricing", NOW), visit(again, NOW + timedelta(minutes=5))]
    assert compute_score(config, LeadProfile(), views, NOW + timedelta(minutes=5)).engagement == 15
    other = [views[0], visit("https://site.example:8443/pricing", NOW + timedelta(minutes=5))]  # another origin
    assert compute_score(config, LeadProfile(), other, NOW + timedelta(minutes=5)).engagement == 30


CLICKS = """version: 1
engagement:
  - {name: click, kind: click, points: 10}
"""


def test_a_file_that_does_not_say_counts_unconfirmed_clicks_at_30_percent_and_escalates_on_confirmed_evidence() -> None:
    config = parse_scoring_lines(CLICKS, Path("scoring.yaml"))[0]
    assert (config.unconfirmed_click_weight, config.escalate_on, config.escalation_confidence) == (
        0.3,
        "confirmed",
        0.9,
    )
    clicks = [
        Engagement(kind="click", at=NOW, url="https://s.example/a", id="a", confirmed=False),
        Engagement(kind="click", at=NOW, url="https://s.example/b", id="b", confirmed=True),
        Engagement(kind="click", at=NOW, url="https://s.example/c"),  # stored before: full points
    ]
    assert compute_score(config, LeadProfile(), clicks, NOW).engagement == 23
    full = parse_scoring_lines(CLICKS + "unconfirmed_click_weight: 1\nescalate_on: any\n", Path("scoring.yaml"))[0]
    assert compute_score(full, LeadProfile(), clicks, NOW).engagement == 30 and full.escalate_on == "any"
    # a running lead's snapshot from before the rule scores every click in full
    from leadloop.domain.scoring import ScoringConfig

    old = ScoringConfig.model_validate({"version": 1, "engagement": config.model_dump()["engagement"]})
    assert old.unconfirmed_click_weight is None and compute_score(old, LeadProfile(), clicks, NOW).engagement == 30


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("unconfirmed_click_weight: 1.5", "unconfirmed_click_weight", "less than or equal to 1"),
        ("unconfirmed_click_weight: lots", "unconfirmed_click_weight", "number"),
        ("escalate_on: sometimes", "escalate_on", "'confirmed' or 'any'"),
        ("escalation_confidence: 0.3", "escalation_confidence", "greater than or equal to 0.5"),
    ],
)
def test_bad_evidence_settings_name_line_and_field(line: str, field: str, message: str) -> None:
    with pytest.raises(RuleFileError) as caught:
        parse_scoring_lines(CLICKS + line + "\n", Path("scoring.yaml"))
    assert message in str(caught.value) and str(caught.value).startswith(f"scoring.yaml:4: {field}")
