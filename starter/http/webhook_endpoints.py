"""The CRM's webhook endpoints and their deliveries over the API (admin scope): the same as `leadloop webhooks`."""

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from leadloop.domain.crm_webhooks import WebhookInputError
from leadloop.services.outbound_webhooks import (
    DeliveryView,
    EndpointExists,
    EndpointSecret,
    EndpointView,
    NotFound,
    ReplayResult,
    add_endpoint,
    enable_endpoint,
    list_deliveries,
    list_endpoints,
    remove_endpoint,
    replay,
    rotate_secret,
)
from starter.http.answers import INVALID, NEEDS_KEY, NOT_JSON, TOO_LARGE, Answers, json_answer
from starter.http.deps import AppSettings, Caller, Sessions, scoped
from starter.http.keyed import KeyedRoute

_T = TypeVar("_T")
router = APIRouter(route_class=KeyedRoute, tags=["webhooks"])
Admin = Annotated[Caller, Depends(scoped("admin"))]
EndpointName = Annotated[str, PathParam(min_length=1, max_length=100, description="the endpoint's name")]
DeliveryId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the delivery's id")]

SCOPED: Answers = {**NEEDS_KEY, 403: json_answer("the key lacks the admin scope; nothing changed")}
UNKNOWN: Answers = {404: json_answer("no such endpoint or delivery; nothing changed")}


class EndpointIn(BaseModel):
    """A new endpoint: its name, URL, the event types it receives (none: all) and the lead's fields it may see."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(default_factory=list, max_length=32)
    personal_data: list[str] = Field(default_factory=list, max_length=16)


def _refused(exc: WebhookInputError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(404, str(exc))
    return HTTPException(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}])


@router.get("/webhook-endpoints", responses=SCOPED)
async def get_endpoints(caller: Admin, sessions: Sessions) -> list[EndpointView]:
    """Every endpoint, with its deliveries by status (never its secret)."""
    async with sessions() as session:
        return await list_endpoints(session)


@router.post(
    "/webhook-endpoints",
    status_code=201,
    responses={
        **SCOPED,
        409: json_answer("an endpoint of that name exists; nothing changed"),
        **NOT_JSON,
        **TOO_LARGE,
        **INVALID,
    },
)
async def post_endpoint(body: EndpointIn, caller: Admin, sessions: Sessions, settings: AppSettings) -> EndpointSecret:
    """Add an endpoint; the answer holds its signing secret, shown this once."""
    try:
        async with sessions() as session:
            return await add_endpoint(
                session,
                body.name,
                body.url,
                body.event_types,
                body.personal_data,
                allow_private=settings.private_webhooks_allowed(),
            )
    except EndpointExists as exc:
        raise HTTPException(409, str(exc)) from None
    except WebhookInputError as exc:
        raise _refused(exc) from None


async def _on_endpoint(
    sessions: async_sessionmaker[AsyncSession], name: str, change: Callable[[AsyncSession, str], Awaitable[_T]]
) -> _T:
    """One change to a named endpoint in its own session; an unknown name or bad input is the service's 4xx."""
    try:
        async with sessions() as session:
            return await change(session, name)
    except WebhookInputError as exc:
        raise _refused(exc) from None


@router.delete("/webhook-endpoints/{name}", responses={**SCOPED, **UNKNOWN})
async def delete_endpoint(name: EndpointName, caller: Admin, sessions: Sessions) -> EndpointView:
    """Remove an endpoint with its deliveries (pending ones are never sent)."""
    return await _on_endpoint(sessions, name, remove_endpoint)


@router.post("/webhook-endpoints/{name}/rotate-secret", responses={**SCOPED, **UNKNOWN})
async def post_rotate_secret(name: EndpointName, caller: Admin, sessions: Sessions) -> EndpointSecret:
    """A new signing secret (shown this once); every attempt from now on, retries included, is signed with it."""
    return await _on_endpoint(sessions, name, rotate_secret)


@router.post("/webhook-endpoints/{name}/enable", responses={**SCOPED, **UNKNOWN})
async def post_enable(name: EndpointName, caller: Admin, sessions: Sessions) -> EndpointView:
    """Enable a disabled endpoint: new events are delivered to it again."""
    return await _on_endpoint(sessions, name, enable_endpoint)


@router.get("/webhook-deliveries", responses={**SCOPED, **UNKNOWN, **INVALID})
async def get_deliveries(
    caller: Admin,
    sessions: Sessions,
    failed: Annotated[bool, Query(description="only dead ones and those still failing")] = False,
    endpoint: Annotated[str | None, Query(max_length=100, description="only this endpoint's")] = None,
    lead: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="only this lead's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[DeliveryView]:
    """Deliveries, newest first, with every attempt and the receiver's answer."""
    try:
        async with sessions() as session:
            return await list_deliveries(session, failed=failed, endpoint=endpoint, lead_id=lead, limit=limit)
    except WebhookInputError as exc:
        raise _refused(exc) from None


@router.post("/webhook-deliveries/{delivery_id}/replay", responses={**SCOPED, **UNKNOWN})
async def post_replay(
    delivery_id: DeliveryId, caller: Admin, sessions: Sessions, settings: AppSettings
) -> ReplayResult:
    """Send a delivery again now: the same webhook-id and body, signed with the endpoint's current secret."""
    try:
        return await replay(
            sessions,
            delivery_id,
            answer_within=settings.webhook_timeout.total_seconds(),
            allow_private=settings.private_webhooks_allowed(),
        )
    except WebhookInputError as exc:
        raise _refused(exc) from None
