"""The HTTP service's startup and shutdown: its state, the event and inbound relays, its own client's SDK metrics."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.infra.db import make_engine, make_sessionmaker
from leadloop.infra.settings import Settings
from leadloop.services.webhooks import Fetch
from starter.http.rate_limit import RateLimiter
from starter.http.state import State
from starter.metrics import HttpMetrics, SdkMetrics

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


async def drain_every(sdk: SdkMetrics, seconds: float, stop: asyncio.Event) -> None:
    """Empty the SDK's metric buffer between scrapes, so a full buffer never drops an update."""
    while not stop.is_set():
        sdk.drain()
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


def lifespan(
    settings: Settings,
    metrics: HttpMetrics,
    limiter: RateLimiter,
    sessionmaker: async_sessionmaker[AsyncSession] | None,
    client: Client | None,
    fetch: Fetch | None = None,
) -> Lifespan:
    """The app's lifespan; `sessionmaker`, `client` and `fetch` given by tests, built from settings otherwise."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        maker = sessionmaker
        if maker is None:
            engine = make_engine(settings.database_url, pool_pre_ping=True)
            maker = make_sessionmaker(engine)
        sdk = None
        if client is None:  # the app's own client: its SDK metrics are served with leadloop's
            sdk = SdkMetrics()
            metrics.registry.register(sdk)
        state = State(
            settings, maker, metrics, limiter, client=client, runtime=sdk.runtime if sdk else None, fetch=fetch
        )
        app.state.leadloop = state
        stop = asyncio.Event()
        relay = asyncio.create_task(state.signaller.relay(settings.relay_interval, stop))
        # webhook events Temporal could not take when they were stored are signalled by this relay
        inbound_relay = asyncio.create_task(state.inbound.relay(settings.relay_interval, stop))
        drain = asyncio.create_task(drain_every(sdk, 1.0, stop)) if sdk else None
        try:
            yield
        finally:
            stop.set()
            await relay
            await inbound_relay
            if drain is not None:
                await drain
            await state.signaller.drain()
            await state.inbound.drain()
            if engine is not None:
                await engine.dispose()
            if sdk is not None:
                metrics.registry.unregister(sdk)
                state.release_client()
                sdk.close()

    return run
