"""What routes are given through FastAPI's Depends: the app's state and the shared objects it holds."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from leadloop.domain.crm import Scope, allows
from leadloop.infra.settings import Settings
from starter.http.callers import Caller as Caller  # importable from here by the routes
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


#: The dependencies of every public link (pixel, click, beacon, unsubscribe, rep pages).
PUBLIC = [Depends(limited)]

NO_KEY = "missing or wrong X-API-Key"


def refusal(caller: Caller | None, needed: tuple[Scope | tuple[Scope, ...], ...]) -> tuple[int, str] | None:
    """Why a keyed request is refused (status, detail): no valid key (401), or a key without a scope the route
    needs (403, naming both); None when it may go on. A tuple among `needed` is satisfied by any one of its scopes."""
    if caller is None:
        return 401, NO_KEY
    for wanted in needed:
        either = wanted if isinstance(wanted, tuple) else (wanted,)
        if not any(allows(caller.scopes, scope) for scope in either):
            named = " or ".join(f"'{scope}'" for scope in either)
            return 403, f"the key '{caller.name}' lacks the {named} scope; nothing changed"
    return None


@dataclass(frozen=True)
class Scoped:
    """A keyed route's dependency naming the scope it needs (or the scopes any one of which will do); it gives the
    route its caller. KeyedRoute finds it among the route's dependencies and refuses a caller without the scope
    before the body is read; outside a KeyedRoute it checks the key itself."""

    scopes: tuple[Scope, ...]

    @property
    def need(self) -> Scope | tuple[Scope, ...]:
        """What `refusal` takes: the one scope, or the scopes any one of which will do."""
        return self.scopes[0] if len(self.scopes) == 1 else self.scopes

    async def __call__(
        self, request: Request, state: AppState, x_api_key: Annotated[str | None, Header()] = None
    ) -> Caller:
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            caller = await state.callers.caller(x_api_key)
        refused = refusal(caller, (self.need,))
        if refused is not None or caller is None:
            raise HTTPException(*(refused or (401, NO_KEY)))
        return caller


def scoped(scope: Scope, *others: Scope) -> Scoped:
    """The dependency of a route that needs `scope` (or any one of `others` instead):
    `Annotated[Caller, Depends(scoped("sales"))]`, `Depends(scoped("intake", "sales"))`."""
    return Scoped((scope, *others))
