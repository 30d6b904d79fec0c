"""Saved segments on both databases (a bad one stores nothing), bulk requests checked before any lead is touched,
and `leadloop list`'s query with category and tags."""

from typing import Any

import pytest
from sqlalchemy import func, select

from leadloop.domain.segments import SegmentError
from leadloop.infra.db import Segment
from leadloop.services.bulk import BulkError, BulkRequest, check_request
from leadloop.services.segments import (
    NoSegment,
    SegmentExists,
    add_segment,
    find_segment,
    list_segments,
    remove_segment,
)
from leadloop.services.visibility import lead_query


async def stored(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Segment)) or 0)


async def test_a_segment_is_saved_listed_found_and_removed(sessionmaker: Any) -> None:
    async with sessionmaker() as session:
        await add_segment(
            session,
            "hot",
            {"stage": "nurturing", "min_score": 40, "tags_all": ["VIP"], "last_engaged_after": "14d"},
            description="clicked lately",
            actor="crm-marketing",
            categories=["likely-buyer", "educable"],
        )
        await session.commit()
    async with sessionmaker() as session:
        [saved] = await list_segments(session)
        row = await session.scalar(select(Segment))
    assert row is not None and row.filter == {
        "stage": ["nurturing"],
        "min_score": 40,
        "tags_all": ["vip"],
        "last_engaged_after": "14d",
    }
    assert (saved.name, saved.description, saved.created_by) == ("hot", "clicked lately", "crm-marketing")
    assert "LeadTags = 'vip'" in saved.query() and saved.query().endswith("ExecutionStatus = 'Running'")
    async with sessionmaker() as session:
        with pytest.raises(SegmentExists):
            await add_segment(session, "hot", {})
        await remove_segment(session, "hot")
        await session.commit()
        with pytest.raises(NoSegment):
            await find_segment(session, "hot")
        with pytest.raises(NoSegment):
            await remove_segment(session, "hot")
    assert await stored(sessionmaker) == 0


@pytest.mark.parametrize(
    ("name", "filter", "extra", "says"),
    [
        ("x", {"colour": "red"}, {}, "unknown field 'colour'; a segment filters on: stage, min_score, max_score"),
        ("x", {"stage": "asleep"}, {}, "'asleep' is not a stage"),
        ("x", {"min_score": -1}, {}, "min_score"),
        ("x", {"tags_any": ["a b"]}, {}, "tag 'a b' is not allowed"),
        ("x", {"category": "maybe"}, {"categories": ["likely-buyer"]}, "'maybe' is not in scoring.yaml"),
        ("X Y", {}, {}, "segment name 'X Y' is not allowed"),
        ("x", {}, {"description": "two\nlines"}, "description: one line"),
        ("x", {}, {"description": "nul\x00"}, "description: one line"),
        ("x", {}, {"actor": "'; drop"}, "actor"),
    ],
)
async def test_a_bad_segment_is_refused_and_nothing_is_stored(
    sessionmaker: Any, name: str, filter: object, extra: dict[str, Any], says: str
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(SegmentError) as refused:
            await add_segment(session, name, filter, **extra)
        await session.commit()
    assert says in str(refused.value)
    assert await stored(sessionmaker) == 0


def test_a_stored_row_edited_by_hand_is_validated_again_as_it_is_read() -> None:
    from leadloop.services.segments import _saved

    row = Segment(name="bad", filter={"cadence": "x' OR '1'='1"}, description=None, created_by=None)
    with pytest.raises(SegmentError, match="segment 'bad' as stored: cadence"):
        _saved(row)


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        (BulkRequest(action="explode"), "unknown action 'explode'"),  # type: ignore[arg-type]
        (BulkRequest(action="move"), "move needs the cadence"),
        (BulkRequest(action="move", cadence="../etc"), "is not a cadence name"),
        (BulkRequest(action="enrol"), "enrol needs the cadence to enrol the ended leads on"),
        (BulkRequest(action="enrol", cadence="nowhere"), "no cadence named 'nowhere'"),
        (BulkRequest(action="enrol", cadence="../etc"), "is not a cadence name"),
        (BulkRequest(action="stop", reason=" "), "stop needs a reason"),
        (BulkRequest(action="stop", reason="a\nb"), "reason: one line"),
        (BulkRequest(action="tag"), "tag needs tags to add or remove"),
        (BulkRequest(action="tag", add=("a",), remove=("A",)), "'a' is both added and removed"),
        (BulkRequest(action="tag", add=tuple(f"t{i}" for i in range(21))), "at most 20 tags"),
        (BulkRequest(action="pause", rate=0), "rate must be above 0"),
        (BulkRequest(action="pause", rate=10_000), "rate must be above 0"),
        (BulkRequest(action="pause", actor="\x00"), "actor"),
    ],
)
def test_a_bulk_request_is_checked_before_any_lead_is_touched(request_: BulkRequest, says: str) -> None:
    with pytest.raises(BulkError) as refused:
        check_request(request_, lambda name: name == "welcome")
    assert says in str(refused.value)


def test_a_bulk_move_needs_a_cadence_that_loads_and_tags_are_normalised() -> None:
    with pytest.raises(BulkError, match="no cadence named 'nowhere'"):
        check_request(BulkRequest(action="move", cadence="nowhere"), lambda name: name == "welcome")
    assert check_request(BulkRequest(action="move", cadence="welcome"), lambda name: True).cadence == "welcome"
    checked = check_request(BulkRequest(action="tag", add=("VIP", " vip "), remove=("Old",)))
    assert (checked.add, checked.remove) == (("vip",), ("old",))


def test_list_filters_by_category_and_every_tag() -> None:
    query = lead_query(None, None, None, None, running_only=True, category="educable", tags=("VIP", "emea"))
    assert "LeadCategory = 'educable' AND LeadTags = 'emea' AND LeadTags = 'vip'" in query
    with pytest.raises(ValueError, match="is not a category name"):
        lead_query(None, None, None, None, running_only=True, category="x' OR 'a'='a")
    with pytest.raises(ValueError, match="is not allowed"):
        lead_query(None, None, None, None, running_only=True, tags=("x'",))
