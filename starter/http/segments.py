"""Segments and bulk actions for marketing: GET/POST /segments, a segment's count, an action over its leads.

An action runs within the request, at its rate (20 leads a second unless asked): the answer is the summary, so
the caller knows what changed without polling a job; a segment of thousands takes minutes, so a caller keeps its
timeout above `matched / rate` seconds (a dry run answers the count first), or uses `leadloop bulk`.
"""

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from temporalio.service import RPCError

from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import current_scoring
from leadloop.domain.segments import SegmentError
from leadloop.infra.settings import Settings
from leadloop.services.bulk import (
    DEFAULT_RATE,
    MAX_RATE,
    BulkError,
    BulkRequest,
    cadence_loads,
    check_request,
    run_bulk,
    targets,
)
from leadloop.services.segments import (
    NoSegment,
    SavedSegment,
    SegmentExists,
    add_segment,
    count_running,
    find_segment,
    list_segments,
)
from starter.http.answers import INVALID, NEEDS_KEY, NOT_JSON, TOO_LARGE, Answers, json_answer, needs_scope
from starter.http.deps import AppSettings, Caller, Sessions, Temporal, scoped
from starter.http.keyed import KeyedRoute

log = logging.getLogger("leadloop.api")

#: Segments and bulk actions run campaigns: the `marketing` scope (never a `sales` key's to do).
router = APIRouter(route_class=KeyedRoute, tags=["marketing"], dependencies=[Depends(scoped("marketing"))])
Marketer = Annotated[Caller, Depends(scoped("marketing"))]
SegmentName = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the segment's name")]
NO_SEGMENT: Answers = {404: json_answer("no segment of that name")}
NO_TEMPORAL: Answers = {503: json_answer("Temporal is unreachable; nothing was changed")}


class SegmentIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    filter: dict[str, Any] = Field(
        description="stage (a stage or a list), min_score, max_score, category, tags_all, tags_any, cadence, rep, "
        "last_engaged_before, last_engaged_after (a date or a duration ago such as '30d'); any other field is refused"
    )
    description: str = Field(default="", max_length=500)


class SegmentOut(BaseModel):
    name: str
    filter: dict[str, Any]
    description: str
    created_by: str
    created_at: datetime


class SegmentCount(BaseModel):
    name: str
    running: int = Field(description="running leads the segment matches now")


class ActionIn(BaseModel):
    action: Literal["pause", "resume", "stop", "move", "tag", "enrol"]
    dry_run: bool = False
    reason: str = Field(default="", max_length=500, description="recorded in each lead's history; stop needs one")
    cadence: str | None = Field(
        default=None, description="move: the cadence the leads go on with; enrol: the ended leads' new cadence"
    )
    add: list[str] = Field(default_factory=list, max_length=20, description="tag: tags to add")
    remove: list[str] = Field(default_factory=list, max_length=20, description="tag: tags to remove")
    rate: float = Field(default=DEFAULT_RATE, gt=0, le=MAX_RATE, description="leads a second, at most")


class Failure(BaseModel):
    lead_id: int
    reason: str


class ActionOut(BaseModel):
    segment: str
    action: str
    dry_run: bool
    matched: int = Field(
        description="leads the action reached (for stop, ended leads of the segment too; for enrol, its ended "
        "leads and those running again)"
    )
    changed: int = 0
    already: int = Field(default=0, description="were so already: nothing done to them")
    failed: int = 0
    failures: list[Failure] = Field(default_factory=list)


def _out(segment: SavedSegment) -> SegmentOut:
    return SegmentOut(
        name=segment.name,
        filter=segment.filter.model_dump(exclude_defaults=True),
        description=segment.description,
        created_by=segment.created_by,
        created_at=segment.created_at,
    )


def _invalid(where: str, exc: Exception) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", where], "msg": str(exc), "type": "value_error"}])


def _categories(settings: Settings) -> list[str]:
    try:
        config = current_scoring(settings.scoring_file)
    except RuleFileError:
        return []
    return [rule.name for rule in config.categories] if config else []


async def _find(sessions: Sessions, name: str) -> SavedSegment:
    try:
        async with sessions() as session:
            return await find_segment(session, name)
    except NoSegment as exc:
        raise HTTPException(404, str(exc)) from None
    except SegmentError as exc:  # a stored row that no longer validates
        raise HTTPException(409, str(exc)) from None


@router.get("/segments", response_model=list[SegmentOut], responses={**NEEDS_KEY, **needs_scope("marketing")})
async def get_segments(sessions: Sessions) -> list[SegmentOut]:
    """Every saved segment, by name."""
    async with sessions() as session:
        return [_out(segment) for segment in await list_segments(session)]


@router.post(
    "/segments",
    response_model=SegmentOut,
    status_code=201,
    responses={
        **NEEDS_KEY,
        **needs_scope("marketing"),
        **NOT_JSON,
        409: json_answer("a segment of that name exists; nothing changed"),
        **TOO_LARGE,
        **INVALID,
    },
)
async def post_segment(body: SegmentIn, caller: Marketer, settings: AppSettings, sessions: Sessions) -> SegmentOut:
    """Save a segment: a named filter built from validated fields (an unknown field is refused, naming it)."""
    try:
        async with sessions() as session:
            saved = await add_segment(
                session,
                body.name,
                body.filter,
                description=body.description,
                actor=caller.name,
                categories=_categories(settings),
            )
            await session.commit()
    except SegmentExists as exc:
        raise HTTPException(409, str(exc)) from None
    except SegmentError as exc:
        raise _invalid("filter", exc) from None
    return _out(saved)


@router.get(
    "/segments/{name}/count",
    response_model=SegmentCount,
    responses={**NEEDS_KEY, **needs_scope("marketing"), **NO_SEGMENT, **NO_TEMPORAL},
)
async def get_segment_count(name: SegmentName, sessions: Sessions, temporal: Temporal) -> SegmentCount:
    """How many running leads the segment matches now (Temporal's visibility follows within moments)."""
    segment = await _find(sessions, name)
    try:
        return SegmentCount(name=name, running=await count_running(await temporal(), segment))
    except (RuntimeError, RPCError) as exc:
        raise HTTPException(503, f"Temporal is unreachable: {exc}") from None


@router.post(
    "/segments/{name}/actions",
    response_model=ActionOut,
    responses={
        **NEEDS_KEY,
        **needs_scope("marketing"),
        **NOT_JSON,
        **NO_SEGMENT,
        **TOO_LARGE,
        **INVALID,
        **NO_TEMPORAL,
    },
)
async def post_segment_action(
    name: SegmentName, body: ActionIn, caller: Marketer, settings: AppSettings, sessions: Sessions, temporal: Temporal
) -> ActionOut:
    """Pause, resume, stop, move or tag every running lead of the segment, or enrol every lead of it whose nurture
    ended (a new run on `cadence`; suppressed and erased leads stay out), at `rate`; a dry run only counts.
    Idempotent: what is so already is counted as `already` and left alone."""
    request = BulkRequest(
        action=body.action,
        actor=caller.name,
        reason=body.reason,
        cadence=body.cadence,
        add=tuple(body.add),
        remove=tuple(body.remove),
        rate=body.rate,
    )
    try:
        request = check_request(request, cadence_loads(settings.cadence_dir))
    except BulkError as exc:
        raise _invalid("action", exc) from None
    segment = await _find(sessions, name)
    try:
        client = await temporal()
        found = await targets(client, segment, request.action)
    except (RuntimeError, RPCError) as exc:
        raise HTTPException(503, f"Temporal is unreachable: {exc}") from None
    if body.dry_run:
        return ActionOut(segment=name, action=request.action, dry_run=True, matched=len(found))
    summary = await run_bulk(client, sessions, found, request, settings=settings)
    log.info(
        "%s over segment %s by %s: %d changed, %d already, %d failed",
        request.action,
        name,
        caller.name,
        summary.changed,
        summary.already,
        summary.failed,
    )
    return ActionOut(
        segment=name,
        action=request.action,
        dry_run=False,
        matched=summary.matched,
        changed=summary.changed,
        already=summary.already,
        failed=summary.failed,
        failures=[Failure(lead_id=o.lead_id, reason=o.detail) for o in summary.failures],
    )
