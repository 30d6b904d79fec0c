"""leadloop's search attributes: their keys, the dev server's arguments for them and the visibility query (pure)."""

import re
from typing import Any

from temporalio.common import SearchAttributeKey

from leadloop.domain.models import STAGES

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


def visibility_query(stage: str | None, rep: int | None, min_score: int | None, cadence: str | None) -> str:
    """A Temporal visibility query over leadloop's search attributes (values checked, so nothing is injected)."""
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
    return " AND ".join(clauses)
