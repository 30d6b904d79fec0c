"""leadloop's search attributes: their keys, the dev server's arguments for them and the visibility query (pure)."""

import re
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from temporalio.common import SearchAttributeKey

from leadloop.domain.crm import CrmInputError, normalise_tags
from leadloop.domain.models import STAGES
from leadloop.domain.segments import CATEGORY_NAME, SegmentFilter, resolve_moment

LEAD_STAGE = SearchAttributeKey.for_keyword("LeadStage")
CADENCE_NAME = SearchAttributeKey.for_keyword("CadenceName")
# the step's id ("tips"): the dev server's SQLite visibility holds at most three custom Int attributes,
# and LeadScore, UnopenedStreak and RecycleCount need the numeric comparisons
CADENCE_STEP = SearchAttributeKey.for_keyword("CadenceStep")
LEAD_SCORE = SearchAttributeKey.for_int("LeadScore")
ASSIGNED_REP = SearchAttributeKey.for_keyword("AssignedRep")  # "rep-<id>": no names, no addresses
LAST_ENGAGED_AT = SearchAttributeKey.for_datetime("LastEngagedAt")
UNOPENED_STREAK = SearchAttributeKey.for_int("UnopenedStreak")
RECYCLE_COUNT = SearchAttributeKey.for_int("RecycleCount")
LEAD_TAGS = SearchAttributeKey.for_keyword_list("LeadTags")  # the marketer's and CRM's tags (no personal data)
LEAD_CATEGORY = SearchAttributeKey.for_keyword("LeadCategory")  # scoring.yaml's category, named by the marketer

#: Every custom search attribute leadloop upserts; servers must know them before a lead starts.
SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[Any], ...] = (
    LEAD_STAGE,
    CADENCE_NAME,
    CADENCE_STEP,
    LEAD_SCORE,
    ASSIGNED_REP,
    LAST_ENGAGED_AT,
    UNOPENED_STREAK,
    RECYCLE_COUNT,
    LEAD_TAGS,
    LEAD_CATEGORY,
)


def dev_server_search_attribute_args() -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        kind = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}[
            key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")
        ]
        args += ["--search-attribute", f"{key.name}={kind}"]
    return args


def visibility_query(
    stage: str | None,
    rep: int | None,
    min_score: int | None,
    cadence: str | None,
    *,
    category: str | None = None,
    tags: tuple[str, ...] = (),
) -> str:
    """A Temporal visibility query over leadloop's search attributes (values checked, so nothing is injected);
    `tags`: the lead has every one."""
    clauses = ["WorkflowType = 'LeadNurtureWorkflow'"]
    if stage is not None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of: {', '.join(STAGES)}")
        clauses.append(f"LeadStage = '{stage}'")
    if rep is not None:
        clauses.append(f"AssignedRep = 'rep-{int(rep)}'")
    if min_score is not None:
        clauses.append(f"LeadScore >= {int(min_score)}")
    if cadence is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", cadence):
            raise ValueError(f"{cadence!r} is not a cadence name")
        clauses.append(f"CadenceName = '{cadence}'")
    if category is not None:
        if not CATEGORY_NAME.fullmatch(category):
            raise ValueError(f"{category!r} is not a category name (a-z, 0-9, _ and -, starting with a letter)")
        clauses.append(f"{LEAD_CATEGORY.name} = {_literal(category)}")
    try:
        clauses += [f"{LEAD_TAGS.name} = {_literal(tag)}" for tag in normalise_tags(list(tags))]
    except CrmInputError as err:
        raise ValueError(str(err)) from None
    return " AND ".join(clauses)


def _literal(value: str) -> str:
    """A checked value as a query's string literal; one with a quote or backslash never reaches a query."""
    if "'" in value or "\\" in value or '"' in value:
        raise ValueError(f"{value!r} cannot be part of a visibility query")
    return f"'{value}'"


#: Which runs a segment's query lists: every run, the running ones, or the ones a lead left behind when its
#: nurture ended (not the runs each cycle continues as new from: those are over, the lead is not)
RunStatus = Literal["any", "running", "ended"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
_STATUS_CLAUSE: dict[str, str] = {
    "any": "",
    "running": "ExecutionStatus = 'Running'",
    "ended": "ExecutionStatus != 'Running' AND ExecutionStatus != 'ContinuedAsNew'",
}


def segment_query(filter: SegmentFilter, now: datetime, status: RunStatus = "any") -> str:
    """A segment's visibility query over the lead workflows' runs of `status`.

    Every value comes from a validated SegmentFilter (stages from STAGES, names and tags by their patterns,
    numbers as int) and is quoted again here, so no text of a user's becomes query syntax.
    """
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of: {', '.join(RUN_STATUSES)}")
    clauses = ["WorkflowType = 'LeadNurtureWorkflow'"]
    if filter.stage:
        stages = [stage for stage in filter.stage if stage in STAGES]
        clauses.append(f"{LEAD_STAGE.name} IN ({', '.join(_literal(stage) for stage in stages)})")
    if filter.min_score is not None:
        clauses.append(f"{LEAD_SCORE.name} >= {int(filter.min_score)}")
    if filter.max_score is not None:
        clauses.append(f"{LEAD_SCORE.name} <= {int(filter.max_score)}")
    if filter.category is not None:
        clauses.append(f"{LEAD_CATEGORY.name} = {_literal(filter.category)}")
    # a KeywordList attribute equals a value when the list holds it
    clauses += [f"{LEAD_TAGS.name} = {_literal(tag)}" for tag in filter.tags_all]
    if filter.tags_any:
        clauses.append(f"{LEAD_TAGS.name} IN ({', '.join(_literal(tag) for tag in filter.tags_any)})")
    if filter.cadence is not None:
        clauses.append(f"{CADENCE_NAME.name} = {_literal(filter.cadence)}")
    if filter.rep is not None:
        clauses.append(f"{ASSIGNED_REP.name} = 'rep-{int(filter.rep)}'")
    if filter.last_engaged_before is not None:
        moment = _instant(resolve_moment(filter.last_engaged_before, now))
        # a lead that never engaged has not engaged since then either
        clauses.append(f"({LAST_ENGAGED_AT.name} < {moment} OR {LAST_ENGAGED_AT.name} IS NULL)")
    if filter.last_engaged_after is not None:
        clauses.append(f"{LAST_ENGAGED_AT.name} >= {_instant(resolve_moment(filter.last_engaged_after, now))}")
    if _STATUS_CLAUSE[status]:
        clauses.append(_STATUS_CLAUSE[status])
    return " AND ".join(clauses)


def _instant(moment: datetime) -> str:
    return _literal(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
