"""The lifecycle API for CRMs: find a lead, change its owner, record a goal, stop, re-enrol, move it, its tags."""

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from temporalio.client import Client

from leadloop.domain.crm import GoalKind
from leadloop.domain.models import ChangeResult
from leadloop.domain.text import REQUEST_CONTROL
from leadloop.services.lead_changes import (
    ChangeRefused,
    change_tags,
    find_lead,
    lead_row,
    lead_tags,
    move_lead,
    record_goal,
    reenrol,
    set_owner,
    stop_lead,
)
from starter.http.answers import INVALID, NEEDS_KEY, NOT_JSON, TOO_LARGE, Answers, LeadId, json_answer
from starter.http.deps import AppSettings, Caller, Sessions, Temporal, scoped
from starter.http.keyed import KeyedRoute

T = TypeVar("T")

#: No router-wide scope: each route names its own (some take either of two).
router = APIRouter(route_class=KeyedRoute, tags=["lifecycle"])

FindCaller = Annotated[Caller, Depends(scoped("intake", "sales"))]
SalesCaller = Annotated[Caller, Depends(scoped("sales"))]
MarketingCaller = Annotated[Caller, Depends(scoped("marketing"))]
TagsCaller = Annotated[Caller, Depends(scoped("intake", "marketing"))]


def scope_answer(scopes: str) -> Answers:
    return {403: json_answer(f"the key lacks the {scopes} scope (the answer names both); nothing changed")}


NO_LEAD: Answers = {404: json_answer("no such lead")}
UNREACHABLE = "Temporal is unreachable; nothing changed, retry"
BODY: Answers = {**NOT_JSON, **TOO_LARGE, **INVALID, 503: json_answer(UNREACHABLE)}
STATUS = {"unknown": 404, "refused": 409, "invalid": 422, "unavailable": 503}


async def answered(work: Awaitable[T], field: str = "", where: str = "body") -> T:
    """The change's result, or its refusal as 404 (unknown lead), 409 (cannot apply), 422 (bad input) or 503
    (Temporal unreachable)."""
    try:
        return await work
    except ChangeRefused as exc:
        status = STATUS[exc.problem]
        if status == 422:
            raise HTTPException(422, [{"loc": [where, field], "msg": str(exc), "type": "value_error"}]) from None
        raise HTTPException(status, str(exc)) from None


async def reach(temporal: Temporal) -> Client:
    """The Temporal client, or 503 when it cannot be reached (before anything changed)."""
    try:
        return await temporal()
    except RuntimeError:
        raise HTTPException(503, UNREACHABLE) from None


def _one_line(value: str) -> str:
    if REQUEST_CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


#: text that may end up in a history line or a report: one line, no control characters
OneLine = Annotated[str, AfterValidator(_one_line)]


class FoundLeadOut(BaseModel):
    lead_id: int
    external_id: str | None
    email: str
    cadence: str | None
    owner: str | None
    tags: list[str]
    stage: str | None = Field(description="from the lead's workflow; null when Temporal did not answer")
    score: int | None
    category: str | None


@router.get(
    "/leads",
    response_model=FoundLeadOut,
    responses={**NEEDS_KEY, **scope_answer("'intake' or 'sales'"), 404: json_answer("no lead has it"), **INVALID},
)
async def find(
    sessions: Sessions,
    temporal: Temporal,
    _: FindCaller,
    email: Annotated[str | None, Query(max_length=320)] = None,
    external_id: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Find a lead by its address or the CRM's id (give one): its ids, cadence, owner, tags, and its stage, score
    and category when its workflow answers."""
    try:
        client: Client | None = await temporal()
    except RuntimeError:  # the database's facts are still an answer
        client = None
    found = await answered(find_lead(sessions, client, email=email, external_id=external_id), "email", "query")
    return found.__dict__


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: OneLine | None = Field(description="a rep's address (on the roster), or null: no owner, routing decides")


@router.put(
    "/leads/{lead_id}/owner",
    responses={
        **NEEDS_KEY,
        **scope_answer("'sales'"),
        **NO_LEAD,
        409: json_answer("the lead is erased or leaving nurture; nothing changed"),
        **BODY,
    },
)
async def change_owner(
    lead_id: LeadId, body: OwnerIn, sessions: Sessions, temporal: Temporal, caller: SalesCaller
) -> ChangeResult:
    """The lead's owner rep: kept on the lead, and its running workflow's next hand-over goes to them."""
    return await answered(set_owner(sessions, await reach(temporal), lead_id, body.owner, caller.name), "owner")


class GoalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: GoalKind
    source: OneLine = Field(default="api", min_length=1, max_length=40, description="where it happened: the CRM's name")
    reference: OneLine | None = Field(
        default=None, max_length=200, description="the CRM's deal or meeting id: the same goal twice applies once"
    )
    note: OneLine = Field(default="", max_length=500)


@router.post(
    "/leads/{lead_id}/goals",
    responses={
        **NEEDS_KEY,
        **scope_answer("'sales'"),
        **NO_LEAD,
        409: json_answer("suppressed, erased, or nurture has ended (converted, archived); nothing changed"),
        **BODY,
    },
)
async def goal(
    lead_id: LeadId, body: GoalIn, sessions: Sessions, temporal: Temporal, caller: SalesCaller
) -> ChangeResult:
    """A goal reached outside leadloop (converted, meeting booked, opportunity created): nurture ends as an accept
    ends it. The same goal with the same reference again answers `applied: false`."""
    work = record_goal(
        sessions,
        await reach(temporal),
        lead_id,
        body.kind,
        source=body.source,
        reference=body.reference,
        actor=caller.name,
        note=body.note,
    )
    return await answered(work, "kind")


class StopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: OneLine = Field(min_length=1, max_length=500)


@router.post(
    "/leads/{lead_id}/stop",
    responses={
        **NEEDS_KEY,
        **scope_answer("'sales'"),
        **NO_LEAD,
        409: json_answer("nurture has ended already, or the lead has no workflow; nothing changed"),
        **BODY,
    },
)
async def stop(
    lead_id: LeadId, body: StopIn, sessions: Sessions, temporal: Temporal, caller: SalesCaller
) -> ChangeResult:
    """Stop the lead's nurture for good (archived), with a reason; it may be re-enrolled later."""
    await answered(_exists(sessions, lead_id))
    return await answered(stop_lead(await reach(temporal), lead_id, body.reason, caller.name), "reason")


async def _exists(sessions: Sessions, lead_id: int) -> None:
    async with sessions() as session:
        await lead_row(session, lead_id)


class CadenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cadence: str = Field(min_length=1, max_length=64, description="a cadence's name (cadences/<name>.yaml)")


class Enrolment(BaseModel):
    lead_id: int
    cadence: str
    workflow: str = Field(description="started (a new run of lead-<id>)")


@router.post(
    "/leads/{lead_id}/enrolments",
    response_model=Enrolment,
    status_code=201,
    responses={
        **NEEDS_KEY,
        **scope_answer("'marketing'"),
        **NO_LEAD,
        409: json_answer("still running (use move), suppressed or erased; nothing changed"),
        **BODY,
    },
)
async def enrol_again(
    lead_id: LeadId,
    body: CadenceIn,
    settings: AppSettings,
    sessions: Sessions,
    temporal: Temporal,
    caller: MarketingCaller,
) -> Enrolment:
    """Re-enrol a lead whose nurture has ended (converted, archived, cadence complete): a new run of `lead-<id>`."""
    flow = await answered(
        reenrol(sessions, await reach(temporal), settings, lead_id, body.cadence, caller.name), "cadence"
    )
    return Enrolment(lead_id=lead_id, cadence=body.cadence, workflow=flow)


@router.post(
    "/leads/{lead_id}/move",
    responses={
        **NEEDS_KEY,
        **scope_answer("'marketing'"),
        **NO_LEAD,
        409: json_answer("not in a stage that can move, or nurture has ended; nothing changed"),
        **BODY,
    },
)
async def move(
    lead_id: LeadId,
    body: CadenceIn,
    settings: AppSettings,
    sessions: Sessions,
    temporal: Temporal,
    caller: MarketingCaller,
) -> ChangeResult:
    """Move a running lead to another cadence, from its first step, at its next step boundary."""
    work = move_lead(sessions, await reach(temporal), settings.cadence_dir, lead_id, body.cadence, caller.name)
    return await answered(work, "cadence")


class TagsOut(BaseModel):
    lead_id: int
    tags: list[str]
    changed: bool = False
    workflow_told: bool = Field(default=False, description="its running workflow has the new set")


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(max_length=100)


class TagChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


TAG_ANSWERS: Answers = {
    **NEEDS_KEY,
    **scope_answer("'intake' or 'marketing'"),
    **NO_LEAD,
    409: json_answer("the lead was erased; nothing changed"),
}


@router.get("/leads/{lead_id}/tags", response_model=TagsOut, responses=TAG_ANSWERS)
async def get_tags(lead_id: LeadId, sessions: Sessions, _: TagsCaller) -> TagsOut:
    """The lead's tags (sorted)."""
    return TagsOut(lead_id=lead_id, tags=await answered(lead_tags(sessions, lead_id)))


async def _tagged(work: Awaitable[Any], lead_id: int, field: Literal["tags", "add"]) -> TagsOut:
    done = await answered(work, field)
    return TagsOut(lead_id=lead_id, tags=done.tags, changed=done.changed, workflow_told=done.workflow_told)


@router.put("/leads/{lead_id}/tags", response_model=TagsOut, responses={**TAG_ANSWERS, **BODY})
async def put_tags(
    lead_id: LeadId, body: TagsIn, sessions: Sessions, temporal: Temporal, caller: TagsCaller
) -> TagsOut:
    """Replace the lead's tags with these (a bad tag refuses them all)."""
    work = change_tags(sessions, await reach(temporal), lead_id, replace=body.tags, actor=caller.name)
    return await _tagged(work, lead_id, "tags")


@router.post("/leads/{lead_id}/tags", response_model=TagsOut, responses={**TAG_ANSWERS, **BODY})
async def post_tags(
    lead_id: LeadId, body: TagChangesIn, sessions: Sessions, temporal: Temporal, caller: TagsCaller
) -> TagsOut:
    """Add and remove tags (a bad tag refuses the lot)."""
    work = change_tags(sessions, await reach(temporal), lead_id, add=body.add, remove=body.remove, actor=caller.name)
    return await _tagged(work, lead_id, "add")
