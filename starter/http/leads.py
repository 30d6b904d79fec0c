"""Lead intake for CRMs and integrations: POST /leads enrols a lead, PATCH /leads/{id} fixes its data."""

import logging
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from leadloop.domain.cadence import Cadence, cadence_path, load_cadence
from leadloop.domain.intake import LeadIn, intake_context
from leadloop.domain.metrics import INTAKES
from leadloop.domain.recycle import RecyclePolicy, current_recycle
from leadloop.domain.rules import RuleFileError
from leadloop.domain.scoring import ScoringConfig, current_scoring
from leadloop.infra.settings import Settings
from leadloop.services.enrollment import start_lead, tell_tags
from leadloop.services.intake import store_lead
from leadloop.services.leads import (
    AddressSuppressed,
    ExternalIdTaken,
    LeadUpdateError,
    apply_update,
    tell_workflow,
)
from starter.http.answers import INVALID, NEEDS_KEY, NOT_JSON, TOO_LARGE, LeadId, json_answer, needs_scope
from starter.http.deps import AppSettings, Metrics, Sessions, Temporal, scoped
from starter.http.keyed import KeyedRoute

log = logging.getLogger("leadloop.api")

#: Creating and fixing leads: the `intake` scope (POST /leads enrols into a cadence: never a `sales` key's to do).
router = APIRouter(route_class=KeyedRoute, tags=["intake"], dependencies=[Depends(scoped("intake"))])


class LeadIntake(LeadIn):
    """A lead for `POST /leads`: the CSV's fields, and optionally the cadence to enrol it in."""

    email: str = Field(max_length=320, json_schema_extra={"format": "email"})  # so generated clients send one
    cadence: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")


class LeadAccepted(BaseModel):
    lead_id: int
    status: str = Field(description="new, merged or unchanged (the lead existed), suppressed")
    workflow: str = Field(description="started, already_running, finished_earlier or not_started")
    warnings: list[str] = Field(default_factory=list, description="what was stored otherwise than sent, and why")


def _rules(settings: Settings, name: str) -> tuple[Cadence, ScoringConfig | None, RecyclePolicy | None]:
    """The cadence, scoring and recycling rules the lead starts with; a broken rule file is the request's 422."""
    try:
        return (
            load_cadence(cadence_path(settings.cadence_dir, name)),
            current_scoring(settings.scoring_file),
            current_recycle(settings.cadence_dir),
        )
    except RuleFileError as exc:
        detail = [{"loc": ["body", "cadence"], "msg": line, "type": "value_error"} for line in exc.lines()]
        raise HTTPException(422, detail) from None


def _installation_checked(lead: LeadIntake, settings: Settings) -> LeadIn:
    """The lead validated again with the installation's intake rules, which the body's own validation cannot know."""
    try:
        return LeadIn.model_validate(
            lead.model_dump(exclude={"cadence"}), context=intake_context(settings.intake_refuse_utf8_local_part)
        )
    except ValidationError as exc:
        detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise HTTPException(422, detail) from None


@router.post(
    "/leads",
    response_model=LeadAccepted,
    status_code=201,
    responses={
        200: {"model": LeadAccepted, "description": "the lead existed (details merged) or is suppressed"},
        **NEEDS_KEY,
        **needs_scope("intake"),
        **NOT_JSON,
        **TOO_LARGE,
        **INVALID,
        409: json_answer("the external_id is another lead's; nothing stored"),
        503: json_answer("stored, but Temporal is unreachable: retry, it is idempotent"),
    },
)
async def intake(
    lead: LeadIntake, settings: AppSettings, sessions: Sessions, temporal: Temporal, metrics: Metrics
) -> JSONResponse:
    """Enrol one lead: the same validation and de-duplication as `leadloop enroll`."""
    cadence, scoring, recycle = _rules(settings, lead.cadence or settings.default_cadence)
    stored = await store_lead(sessions, _installation_checked(lead, settings), cadence.name)
    if stored.outcome == "conflict":
        raise HTTPException(409, stored.problem)
    if stored.lead is None:
        body = LeadAccepted(lead_id=stored.lead_id, status="suppressed", workflow="not_started")
        metrics.inc(INTAKES, status=body.status, workflow=body.workflow)
        return JSONResponse(body.model_dump(), status_code=200)
    warnings = [
        f"owner: {owner} is not a rep on the roster; stored without an owner (routing decides)"
        for owner in stored.unknown_owners
    ]
    try:
        flow = await start_lead(
            await temporal(),
            stored.lead,
            cadence,
            task_queue=settings.task_queue,
            sales_task_queue=settings.sales_task_queue,
            time_scale=settings.time_scale,
            source="api",
            scoring=scoring,
            recycle=recycle,
            rep_time_scale=settings.rep_time_scale,
        )
        await tell_tags(await temporal(), stored.lead_id, stored.tags, flow)
    except Exception as exc:
        log.warning("lead %s stored, workflow not started: %s", stored.lead_id, exc)
        metrics.inc(INTAKES, status=stored.outcome, workflow="failed")
        detail = f"lead {stored.lead_id} stored, but its workflow could not be started; retry"
        raise HTTPException(503, detail) from None
    body = LeadAccepted(lead_id=stored.lead_id, status=stored.outcome, workflow=flow, warnings=warnings)
    metrics.inc(INTAKES, status=stored.outcome, workflow=flow)
    return JSONResponse(body.model_dump(), status_code=201 if stored.outcome == "new" else 200)


@router.patch(
    "/leads/{lead_id}",
    responses={
        **NEEDS_KEY,
        **needs_scope("intake"),
        **NOT_JSON,
        404: json_answer("no such lead"),
        **TOO_LARGE,
        **INVALID,
        409: json_answer(
            "the new address is on the suppression list (erased, unsubscribed, bounced), or the new external_id is "
            "another lead's; nothing changed"
        ),
    },
)
async def patch_lead(
    lead_id: LeadId, body: dict[str, str], settings: AppSettings, sessions: Sessions, temporal: Temporal
) -> dict[str, Any]:
    """Fix a lead's data (validated as intake); a lead held for invalid data resumes nurture."""
    try:
        async with sessions() as session:
            changed = await apply_update(session, lead_id, body, intake_context(settings.intake_refuse_utf8_local_part))
            await session.commit()
    except (AddressSuppressed, ExternalIdTaken) as exc:
        raise HTTPException(409, str(exc)) from None
    except LeadUpdateError as exc:
        if str(exc).startswith("no lead"):
            raise HTTPException(404, str(exc)) from None
        raise HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]) from None
    told = await tell_workflow(await temporal(), lead_id, changed) if changed else False
    return {"lead_id": lead_id, "changed": changed, "workflow_told": told}
