"""What routes are given through FastAPI's Depends: the app's state and the shared objects it holds."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.crm import Scope, allows
from leadloop.infra.settings import Settings
from starter.http.keys import key_ok
from starter.http.links import Links
from starter.http.pages import Pages
from starter.http.rate_limit import enforce
from starter.http.state import EventRecorder, State
from starter.metrics import HttpMetrics


def app_state(request: Request) -> State:
    """The state the lifespan built (the one place that reads it off the app)."""
    state: State = request.app.state.leadloop
    return state


AppState = Annotated[State, Depends(app_state)]


def _settings(state: AppState) -> Settings:
    return state.settings


def _sessionmaker(state: AppState) -> async_sessionmaker[AsyncSession]:
    return state.sessionmaker


def _temporal(state: AppState) -> Callable[[], Awaitable[Client]]:
    return state.client


def _links(state: AppState) -> Links:
    return state.links


def _pages(state: AppState) -> Pages:
    return state.pages


def _metrics(state: AppState) -> HttpMetrics:
    return state.metrics


def _recorder(state: AppState) -> EventRecorder:
    return state.recorder


AppSettings = Annotated[Settings, Depends(_settings)]
Sessions = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
#: The Temporal client, connected on first use: a route that never needs it never connects.
Temporal = Annotated[Callable[[], Awaitable[Client]], Depends(_temporal)]
SignedLinks = Annotated[Links, Depends(_links)]
HtmlPages = Annotated[Pages, Depends(_pages)]
Metrics = Annotated[HttpMetrics, Depends(_metrics)]
Recorder = Annotated[EventRecorder, Depends(_recorder)]


async def limited(request: Request, state: AppState) -> None:
    """The public links' pace, refused (429) before anything is read or recorded."""
    enforce(state.limiter, request, state.links.signed)


async def api_key(settings: AppSettings, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """The intake's and CRMs' key, checked before the body is looked at."""
    if not key_ok(x_api_key, [k.get_secret_value() for k in settings.api_keys]):
        raise HTTPException(401, "missing or wrong X-API-Key")


#: The dependencies of every public link (pixel, click, beacon, unsubscribe, rep pages).
PUBLIC = [Depends(limited)]
#: The dependencies of every route for CRMs and integrations.
KEYED = [Depends(api_key)]


@dataclass(frozen=True)
class Caller:
    """Who called a keyed route: the key's name (recorded as the actor of what it changes) and its scopes."""

    name: str
    scopes: tuple[Scope, ...]


def _settings_caller(settings: Settings, given: str | None) -> Caller | None:
    """A key from LEADLOOP_API_KEYS: every scope, named by its place in the list (api-key-1, api-key-2...)."""
    for index, key in enumerate(settings.api_keys, start=1):
        if key_ok(given, [key.get_secret_value()]):
            return Caller(f"api-key-{index}", ("admin",))
    return None


def scoped(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A keyed route's dependency: the caller, when its key carries `scope` (403 otherwise, nothing changed)."""

    async def caller(settings: AppSettings, x_api_key: Annotated[str | None, Header()] = None) -> Caller:
        found = _settings_caller(settings, x_api_key)
        if found is None:
            raise HTTPException(401, "missing or wrong X-API-Key")
        if not allows(found.scopes, scope):
            raise HTTPException(403, f"the key '{found.name}' lacks the '{scope}' scope; nothing changed")
        return found

    return caller
