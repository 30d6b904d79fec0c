"""The /metrics route: Prometheus text, behind a bearer token when LEADLOOP_METRICS_TOKEN is set."""

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlalchemy.exc import SQLAlchemyError

from leadloop.services.inbound import count_inbound
from leadloop.services.outbound_webhooks import count_deliveries, webhook_health
from starter.http.deps import AppSettings, Metrics, Sessions
from starter.http.keys import key_ok
from starter.metrics import CONTENT_TYPE

log = logging.getLogger("leadloop.api")
router = APIRouter(tags=["ops"])
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"description": "Prometheus text", "content": _TEXT},
        401: {"description": "LEADLOOP_METRICS_TOKEN is set: a bearer token is needed", "content": _TEXT},
    },
)
async def prometheus(
    settings: AppSettings, metrics: Metrics, sessions: Sessions, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text: leadloop's counters, the inbound messages stored (by kind and status, from the database),
    the CRM webhook deliveries and endpoints (from the database) and the SDK metrics of the service's Temporal
    client."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    scheme, _, given = (authorization or "").partition(" ")
    if token and not (scheme.lower() == "bearer" and key_ok(given.strip(), [token])):
        return Response(
            "a bearer token is needed\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    try:
        async with sessions() as session:
            metrics.set_inbound(await count_inbound(session))
    except (SQLAlchemyError, OSError) as exc:  # the rest is still worth serving; the gauge keeps its last values
        log.warning("metrics: the inbound messages could not be counted: %s", " ".join(str(exc).split())[:200])
    try:
        async with sessions() as session:
            health = await webhook_health(session)
            disabled = len(health.disabled)
            metrics.set_webhooks(await count_deliveries(session), health.endpoints - disabled, disabled)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("metrics: the webhook deliveries could not be counted: %s", " ".join(str(exc).split())[:200])
    return Response(metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
