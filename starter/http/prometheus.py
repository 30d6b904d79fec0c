"""The /metrics route: Prometheus text, behind a bearer token when LEADLOOP_METRICS_TOKEN is set."""

from typing import Annotated

from fastapi import APIRouter, Header, Response

from starter.http.deps import AppSettings, Metrics
from starter.http.keys import key_ok
from starter.metrics import CONTENT_TYPE

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
    settings: AppSettings, metrics: Metrics, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text: leadloop's counters and the SDK metrics of the service's Temporal client."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    scheme, _, given = (authorization or "").partition(" ")
    if token and not (scheme.lower() == "bearer" and key_ok(given.strip(), [token])):
        return Response(
            "a bearer token is needed\n",
            status_code=401,
            media_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return Response(metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
