"""A rep's decisions: the pages behind the Accept and Reject links, and the same decisions as JSON for CRMs."""

import time
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadloop.domain.metrics import REP_DECISIONS, TOKENS_REFUSED
from leadloop.domain.models import RepActionInput, RepActionResult
from leadloop.domain.recycle import REASON_LABELS, Reason
from leadloop.domain.text import NOTE_CONTROL, REQUEST_CONTROL
from leadloop.domain.times import as_utc
from leadloop.domain.tokens import Token
from leadloop.services.decisions import DecisionRefused, decide
from leadloop.services.leads import list_dispositions
from leadloop.services.rep_pages import Handover, find_handover, rep_by_email, rep_by_id
from starter.http.answers import (
    INVALID,
    NEEDS_KEY,
    NOT_JSON,
    RATE_LIMITED,
    TOO_LARGE,
    Answers,
    LeadId,
    form_body,
    html_answer,
    json_answer,
    needs_scope,
)
from starter.http.deps import PUBLIC, AppSettings, AppState, Caller, HtmlPages, Sessions, Temporal, scoped
from starter.http.keyed import KeyedRoute
from starter.http.state import State

#: The JSON decisions, for CRMs: the `sales` scope (reps act on leads; they never run campaigns).
router = APIRouter(route_class=KeyedRoute, tags=["sales"], dependencies=[Depends(scoped("sales"))])
#: Who decides through the API: the key's name is recorded as the decision's actor.
SalesCaller = Annotated[Caller, Depends(scoped("sales"))]
#: The pages behind a rep's links (public, rate limited).
pages_router = APIRouter(tags=["sales"], dependencies=PUBLIC)


class RepDecisionIn(BaseModel):
    """A rep's decision from a CRM: who decides, and for a reject, why."""

    model_config = ConfigDict(extra="forbid")

    rep: str = Field(description="the deciding rep's email address", max_length=320)
    reason: Reason | None = None
    note: str = Field(default="", max_length=2000)
    opportunity_id: str | None = Field(default=None, max_length=200)
    recontact_on: date | None = Field(
        default=None,
        description="a reject with reason not_ready: the day (in the future) the lead comes straight back to this rep",
    )

    @field_validator("rep", "opportunity_id")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and REQUEST_CONTROL.search(value):
            raise ValueError("contains control characters")
        return value

    @field_validator("note")
    @classmethod
    def _text(cls, value: str) -> str:
        if NOTE_CONTROL.search(value):
            raise ValueError("contains control characters other than line breaks and tabs")
        return value


async def rep_decision(
    lead_id: int, action: Literal["accept", "reject"], body: RepDecisionIn, state: State, caller: Caller
) -> RepActionResult:
    rep = await rep_by_email(state.sessionmaker, body.rep)
    if rep is None:
        raise HTTPException(403, f"{body.rep} is not a rep")
    reason = (body.reason or "none") if action == "reject" else "none"
    request = RepActionInput(
        rep_id=rep.id,
        reason=body.reason,
        note=body.note,
        opportunity_id=body.opportunity_id,
        recontact_on=body.recontact_on,
        source="api",
        actor=caller.name,
    )
    try:
        result = await decide(await state.client(), lead_id, action, request)
    except DecisionRefused as exc:
        state.metrics.inc(REP_DECISIONS, action=action, reason=reason, source="api", result="refused")
        raise HTTPException(409, str(exc)) from None
    state.metrics.inc(REP_DECISIONS, action=action, reason=reason, source="api", result="applied")
    return result


DECISION_ANSWERS: Answers = {
    **NEEDS_KEY,
    **needs_scope("sales", also="not a rep, or "),
    409: json_answer(
        "the lead is not with this rep (or not with sales) any more, or a re-contact date that cannot apply (not in "
        "the future, or with a reason other than not_ready); nothing changed"
    ),
    **NOT_JSON,
    **TOO_LARGE,
    **INVALID,
}


@router.post("/leads/{lead_id}/accept", responses=DECISION_ANSWERS)
async def accept_lead(lead_id: LeadId, body: RepDecisionIn, state: AppState, caller: SalesCaller) -> RepActionResult:
    """For CRMs: the assigned rep accepts the lead (converted)."""
    if body.recontact_on is not None:
        msg = "a re-contact date goes with a reject for not_ready, not an accept"
        raise HTTPException(422, [{"loc": ["body", "recontact_on"], "msg": msg, "type": "value_error"}])
    return await rep_decision(lead_id, "accept", body, state, caller)


@router.post("/leads/{lead_id}/reject", responses=DECISION_ANSWERS)
async def reject_lead(lead_id: LeadId, body: RepDecisionIn, state: AppState, caller: SalesCaller) -> RepActionResult:
    """For CRMs: the assigned rep rejects the lead with a reason; recycle.yaml decides what happens."""
    if body.reason is None:
        raise HTTPException(422, [{"loc": ["body", "reason"], "msg": "a reject needs a reason", "type": "missing"}])
    return await rep_decision(lead_id, "reject", body, state, caller)


@router.get("/leads/{lead_id}/dispositions", responses={**NEEDS_KEY, **needs_scope("sales")})
async def lead_dispositions(lead_id: LeadId, sessions: Sessions) -> list[dict[str, Any]]:
    """Every rep decision on the lead, newest first: rep, action, reason, note, outcome, time."""
    async with sessions() as session:
        return await list_dispositions(session, lead_id=lead_id)


async def rep_context(state: State, token: str) -> tuple[Token, Handover] | HTMLResponse:
    """The link's hand-over, or the page that refuses it: not ours, expired, or no longer this rep's to decide."""
    parsed = state.links.verify(token, "rep", expiry=False)
    if parsed is None or parsed.extra not in ("accept", "reject"):
        return state.pages.page(
            "invalid",
            404,
            message="This link is not valid. The lead's current state is in your newest notification email.",
        )
    max_age = state.links.max_age("rep") or 0
    if time.time() - parsed.issued_at > max_age:
        state.metrics.inc(TOKENS_REFUSED, kind="rep")
        return state.pages.page(
            "invalid",
            410,
            message=f"This link has expired: Accept and Reject links work for {max_age // 86400} days. Nothing "
            "was changed; the lead's current state is in your newest notification email.",
        )
    handover = await find_handover(state.sessionmaker, parsed.key, parsed.lead_id)
    if handover is None:
        return state.pages.page("invalid", 404, message="This hand-over no longer exists.")
    return parsed, handover


REP_ANSWERS: Answers = {
    404: html_answer("not a valid link, or the hand-over is gone"),
    409: html_answer("the hand-over is decided, lapsed or superseded: no longer this rep's to decide; nothing changed"),
    410: html_answer("the link has expired (LEADLOOP_REP_LINK_MAX_AGE_DAYS); nothing changed"),
    **RATE_LIMITED,
}


@pages_router.get("/r/{token}", response_class=HTMLResponse, responses=REP_ANSWERS)
async def rep_page(token: str, state: AppState, pages: HtmlPages, settings: AppSettings) -> HTMLResponse:
    """The page behind a rep's Accept or Reject link: the lead's summary and the form."""
    found = await rep_context(state, token)
    if isinstance(found, HTMLResponse):
        return found
    parsed, handover = found
    assignment, lead = handover.assignment, handover.lead
    if handover.status != "assigned":  # the lead's details are for the rep who has it now
        outcome = f"This hand-over is {handover.status}. Nothing more to do here."
        return pages.page("decided", 409, headline="Nothing to do", back_at=None, outcome=outcome)
    rep = await rep_by_id(state.sessionmaker, assignment.rep_id)
    fields = (
        ("Title", lead.title),
        ("Company", lead.company),
        ("Industry", lead.industry),
        ("Company size", lead.company_size),
        ("Country", lead.country),
        ("Email", lead.email),
    )
    return pages.page(
        "rep",
        action=parsed.extra,
        post_url=f"{settings.public_url}/r/{token}",
        lead={
            "id": lead.id,
            "name": " ".join(p for p in (lead.first_name, lead.last_name) if p),
            "company": lead.company,
        },
        profile=[(k, v) for k, v in fields if v],
        rep_name=rep.name if rep else "a rep",
        assigned_at=f"{as_utc(assignment.assigned_at):%d %b %Y %H:%M} UTC",
        rule=assignment.rule,
        score=assignment.score,
        handover=handover.status,
        reasons=list(REASON_LABELS.items()),
        not_ready_label=REASON_LABELS.get("not_ready", "not ready"),
    )


@pages_router.post(
    "/r/{token}",
    response_class=HTMLResponse,
    responses={
        **REP_ANSWERS,
        400: html_answer("the form could not be read; nothing changed"),
        422: html_answer(
            "a reject without one of the reasons, or a re-contact date that is not a date; nothing changed"
        ),
        **TOO_LARGE,
    },
    openapi_extra=form_body(
        {
            "reason": {"type": "string", "enum": list(REASON_LABELS)},
            "note": {"type": "string"},
            "opportunity_id": {"type": "string"},
            "recontact_on": {"type": "string", "format": "date"},
        }
    ),
)
async def rep_submit(token: str, request: Request, state: AppState, temporal: Temporal) -> HTMLResponse:
    """Runs the rep's accept or reject and shows what now happens to the lead."""
    found = await rep_context(state, token)
    if isinstance(found, HTMLResponse):
        return found
    parsed, handover = found
    lead = handover.lead
    if handover.status != "assigned":  # e.g. the form submitted twice, or the lead went to another rep
        outcome = f"This hand-over of lead {lead.id} is already {handover.status}."
        return state.pages.page("decided", 409, headline="Nothing changed", back_at=None, outcome=outcome)
    try:
        form = await request.form()
    except Exception:  # a malformed body is a request we do not act on
        return state.pages.page("invalid", 400, message="The form could not be read; nothing changed.")
    reason = str(form.get("reason") or "") or None
    note = NOTE_CONTROL.sub("", str(form.get("note") or ""))[:2000]
    opportunity = REQUEST_CONTROL.sub("", str(form.get("opportunity_id") or ""))[:200] or None
    if parsed.extra == "reject" and reason not in REASON_LABELS:
        return state.pages.page("invalid", 422, message="Pick one of the reasons to reject the lead.")
    recontact_on = None
    if given := str(form.get("recontact_on") or "").strip():
        try:
            recontact_on = date.fromisoformat(given)
        except ValueError:
            return state.pages.page("invalid", 422, message="The day to call back must be a date; nothing changed.")
    action: Literal["accept", "reject"] = "accept" if parsed.extra == "accept" else "reject"
    decision = {"action": action, "reason": (reason or "none") if action == "reject" else "none", "source": "page"}
    request_in = RepActionInput(
        rep_id=handover.assignment.rep_id,
        reason=reason,
        note=note,
        opportunity_id=opportunity,
        source="page",
        recontact_on=recontact_on if action == "reject" else None,
    )
    try:
        result = await decide(await temporal(), lead.id, action, request_in)
    except DecisionRefused as exc:
        state.metrics.inc(REP_DECISIONS, result="refused", **decision)
        return state.pages.page("decided", 409, headline="Nothing changed", outcome=str(exc), back_at=None)
    state.metrics.inc(REP_DECISIONS, result="applied", **decision)
    headline = "Lead accepted" if action == "accept" else "Lead given back"
    back = f"{result.back_at:%a %d %b %Y}" if result.back_at else None
    return state.pages.page("decided", headline=headline, outcome=f"Lead {lead.id}: {result.outcome}.", back_at=back)
