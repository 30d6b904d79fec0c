"""Segments' filters: only known fields, every value checked, and the visibility query they compile to."""

from datetime import UTC, datetime

import pytest

from leadloop.domain.search import segment_query
from leadloop.domain.segments import FIELDS, SegmentError, check_segment_name, parse_filter

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def test_a_filter_of_every_field_compiles_to_one_query_of_quoted_checked_values() -> None:
    f = parse_filter(
        {
            "stage": ["paused", "nurturing", "paused"],
            "min_score": 10,
            "max_score": 90,
            "category": "likely-buyer",
            "tags_all": ["VIP", " emea "],
            "tags_any": ["trade-show", "webinar"],
            "cadence": "welcome",
            "rep": 7,
            "last_engaged_before": "30d",
            "last_engaged_after": "2026-01-15",
        }
    )
    assert segment_query(f, NOW) == (
        "WorkflowType = 'LeadNurtureWorkflow' AND LeadStage IN ('nurturing', 'paused') AND LeadScore >= 10 "
        "AND LeadScore <= 90 AND LeadCategory = 'likely-buyer' AND LeadTags = 'emea' AND LeadTags = 'vip' "
        "AND LeadTags IN ('trade-show', 'webinar') AND CadenceName = 'welcome' AND AssignedRep = 'rep-7' "
        "AND (LastEngagedAt < '2026-05-31T12:00:00Z' OR LastEngagedAt IS NULL) "
        "AND LastEngagedAt >= '2026-01-15T00:00:00Z'"
    )
    # stored as given (a duration stays relative: each use resolves it again)
    assert f.last_engaged_before == "30d" and f.stage == ["nurturing", "paused"]


def test_one_stage_may_be_given_as_a_string_and_an_empty_filter_is_every_lead() -> None:
    assert parse_filter({"stage": "dormant"}).stage == ["dormant"]
    assert segment_query(parse_filter({}), NOW) == "WorkflowType = 'LeadNurtureWorkflow'"


def test_the_runs_listed_are_the_running_ones_or_those_a_lead_ended_on_and_nothing_else() -> None:
    f = parse_filter({"cadence": "welcome"})
    base = "WorkflowType = 'LeadNurtureWorkflow' AND CadenceName = 'welcome'"
    assert segment_query(f, NOW, "running") == base + " AND ExecutionStatus = 'Running'"
    # a cycle's continue-as-new closes a run of a lead that goes on: never an ended lead
    assert segment_query(f, NOW, "ended") == (
        base + " AND ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'"
    )
    with pytest.raises(ValueError, match="unknown run status 'Running OR 1=1'"):
        segment_query(f, NOW, "Running OR 1=1")  # type: ignore[arg-type]


def test_an_unknown_field_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(SegmentError) as refused:
        parse_filter({"stage": "nurturing", "colour": "red"})
    assert str(refused.value) == f"unknown field 'colour'; a segment filters on: {', '.join(FIELDS)}"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"stage": "sleeping"}, "stage: 'sleeping' is not a stage; one of: nurturing,"),
        ({"stage": ["nurturing", "x"]}, "'x' is not a stage"),
        ({"min_score": -1}, "min_score: Input should be greater than or equal to 0"),
        ({"max_score": "lots"}, "max_score: Input should be a valid integer"),
        ({"min_score": 50, "max_score": 10}, "min_score 50 is above max_score 10"),
        ({"tags_all": ["bad tag"]}, "tags_all: tag 'bad tag' is not allowed"),
        ({"tags_any": ["x'); DROP"]}, "tags_any: tag"),
        ({"category": "Likely Buyer"}, "category: 'Likely Buyer' is not a category name"),
        ({"cadence": "x' OR '1'='1"}, "cadence: \"x' OR '1'='1\" is not a cadence name"),
        ({"rep": 0}, "rep: Input should be greater than or equal to 1"),
        ({"last_engaged_before": "yesterday"}, "neither a date (YYYY-MM-DD) nor a duration ago"),
        ({"last_engaged_after": "400d"}, "at most 365 days"),
        ([1, 2], "a segment's filter is an object of fields"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(data: object, says: str) -> None:
    with pytest.raises(SegmentError) as refused:
        parse_filter(data)
    assert says in str(refused.value)


def test_segment_names_are_plain() -> None:
    assert check_segment_name("hot-leads_2") == "hot-leads_2"
    for bad in ("", "Hot", "a b", "x" * 65, "-x"):
        with pytest.raises(SegmentError):
            check_segment_name(bad)
