"""The HTTP service: tracking pixel, click redirects, site beacon, unsubscribe, lead intake, mail providers'
webhooks (FastAPI)."""

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.webhooks.events import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES
from leadloop.infra.settings import (
    InsecureSettings as InsecureSettings,  # what create_app raises; callers catch it here
)
from leadloop.infra.settings import Settings, get_settings
from leadloop.services.webhooks import Fetch
from starter.http import (
    codec,
    lead_changes,
    leads,
    ops,
    prometheus,
    reps,
    segments,
    site,
    tracking,
    unsubscribe,
    webhook_endpoints,
    webhooks,
)
from starter.http.body_limit import BodyLimit
from starter.http.lifespan import lifespan
from starter.http.rate_limit import RateLimiter as RateLimiter  # importable from here, as before the split
from starter.http.tracking import PIXEL as PIXEL  # importable from here, as before the split
from starter.metrics import HttpMetrics, RequestCounter
from starter.serving import ForwardedFor


def create_app(
    settings: Settings | None = None,
    *,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
    client: Client | None = None,
    fetch: Fetch | None = None,
) -> FastAPI:
    """The app; `sessionmaker`, `client` and `fetch` (how SNS certificates are fetched) given by tests, built
    from settings otherwise.

    Outside the demo (LEADLOOP_DEMO) it refuses the published secret and API keys, and a short secret:
    InsecureSettings.
    """
    settings = settings or get_settings()
    settings.refuse_unsafe_secrets("the HTTP service", api_keys=True)
    metrics = HttpMetrics()
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app = FastAPI(
        title="leadloop",
        summary="Tracking, site beacon, unsubscribe, lead intake and mail providers' webhooks for leadloop.",
        lifespan=lifespan(settings, metrics, limiter, sessionmaker, client, fetch),
        # Swagger UI and ReDoc pages load their scripts from a CDN: off outside the demo unless asked for
        docs_url="/docs" if settings.serves_api_docs() else None,
        redoc_url="/redoc" if settings.serves_api_docs() else None,
    )
    limits = {"/codec/": settings.codec_max_body_bytes, "/webhooks/": WEBHOOK_MAX_BODY_BYTES}  # SendGrid batches
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, prefixes=limits)
    app.add_middleware(RequestCounter, metrics=metrics)  # the 413s are counted too
    app.add_middleware(ForwardedFor, trusted=settings.trusted_proxies)  # outermost: every part sees the client
    app.include_router(codec.router)
    for router in (ops.router, prometheus.router, tracking.router, site.router, unsubscribe.router):
        app.include_router(router)
    for router in (
        reps.pages_router,
        leads.router,
        reps.router,
        lead_changes.router,
        webhooks.router,
        webhook_endpoints.router,
        segments.router,
    ):
        app.include_router(router)
    return app
