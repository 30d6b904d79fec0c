"""Finding leads through Temporal's visibility: each lead workflow's search attributes as one typed row."""

from dataclasses import dataclass
from datetime import datetime

from temporalio.client import Client, WorkflowExecution

from leadloop.domain.search import (
    ASSIGNED_REP,
    CADENCE_NAME,
    CADENCE_STEP,
    LAST_ENGAGED_AT,
    LEAD_CATEGORY,
    LEAD_SCORE,
    LEAD_STAGE,
    LEAD_TAGS,
    RECYCLE_COUNT,
    UNOPENED_STREAK,
    visibility_query,
)
from leadloop.domain.segments import CATEGORY_NAME


@dataclass(frozen=True)
class LeadListing:
    """One lead as its workflow's search attributes show it (unset attributes are None)."""

    lead: str  # the workflow id without its "lead-" prefix
    stage: str | None
    score: int | None
    cadence: str | None
    step: str | None
    rep: str | None
    unopened_streak: int | None
    recycles: int | None
    last_engaged_at: datetime | None
    category: str | None = None
    tags: tuple[str, ...] = ()


def lead_query(
    stage: str | None,
    rep: int | None,
    min_score: int | None,
    cadence: str | None,
    *,
    running_only: bool,
    category: str | None = None,
    tags: tuple[str, ...] = (),
) -> str:
    """The visibility query for these filters (ValueError names a bad one); ended runs only when asked."""
    query = visibility_query(stage, rep, min_score, cadence, category=category, tags=tags)
    return query + " AND ExecutionStatus = 'Running'" if running_only else query


async def find_leads(client: Client, query: str, limit: int) -> list[LeadListing]:
    """Up to `limit` lead workflows matching `query`, ordered by workflow id."""
    executions = [execution async for execution in client.list_workflows(query, limit=limit)]
    return [listing(execution) for execution in sorted(executions, key=lambda e: e.id)]


def listing(execution: WorkflowExecution) -> LeadListing:
    a = execution.typed_search_attributes
    return LeadListing(
        lead=execution.id.removeprefix("lead-"),
        stage=a.get(LEAD_STAGE),
        score=a.get(LEAD_SCORE),
        cadence=a.get(CADENCE_NAME),
        step=a.get(CADENCE_STEP),
        rep=a.get(ASSIGNED_REP),
        unopened_streak=a.get(UNOPENED_STREAK),
        recycles=a.get(RECYCLE_COUNT),
        last_engaged_at=a.get(LAST_ENGAGED_AT),
        category=a.get(LEAD_CATEGORY),
        tags=tuple(a.get(LEAD_TAGS) or ()),
    )


async def count_by_category(client: Client, categories: list[str]) -> dict[str, int]:
    """Running leads per category (scoring.yaml's names, in its order), and under "" those in none.

    One count per name: the server's GROUP BY takes ExecutionStatus only, not a custom attribute.
    """
    base = visibility_query(None, None, None, None) + " AND ExecutionStatus = 'Running'"
    counts = {
        name: (await client.count_workflows(f"{base} AND {LEAD_CATEGORY.name} = '{name}'")).count
        for name in categories
        if CATEGORY_NAME.fullmatch(name)
    }
    counts[""] = (await client.count_workflows(base)).count - sum(counts.values())
    return counts
