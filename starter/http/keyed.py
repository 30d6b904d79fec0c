"""The route class of the keyed routes: the API key and its scope checked before a CRM's body is read or validated."""

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from leadloop.domain.crm import Scope
from leadloop.domain.text import LONE_SURROGATE
from starter.http.deps import Scoped, app_state, refusal

# a JSON string escape of a lone surrogate (a pair is one character, fine); the body is parsed only if one shows
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
NOT_UNICODE = "text that is not valid Unicode (an unpaired surrogate escape); nothing changed"


def unpaired_surrogate(body: bytes) -> list[str | int] | None:
    """Where a JSON body holds text no database or answer can encode (a lone surrogate), as a 422's `loc`."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None  # not JSON: FastAPI answers that

    def find(value: Any, loc: list[str | int]) -> list[str | int] | None:
        if isinstance(value, str):
            return loc if LONE_SURROGATE.search(value) else None
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(key, str) and LONE_SURROGATE.search(key):
                return loc  # the name itself: not echoed either
            if (found := find(item, [*loc, key])) is not None:
                return found
        return None

    return find(data, ["body"])


def needed_scopes(route: APIRoute) -> tuple[Scope | tuple[Scope, ...], ...]:
    """The scopes a route's `scoped(...)` dependencies name (its router's included; a tuple: any one of them will
    do); none named: admin only."""

    def named(dependant: Dependant) -> list[Scope | tuple[Scope, ...]]:
        found = [dependant.call.need] if isinstance(dependant.call, Scoped) else []
        return found + [scope for sub in dependant.dependencies for scope in named(sub)]

    return tuple(dict.fromkeys(named(route.dependant))) or ("admin",)


class KeyedRoute(APIRoute):
    """A route for CRMs and integrations: the API key is checked before the body is parsed or validated (a
    stranger's request gets 401 whatever its body, a key without the route's scope 403), then a JSON body with
    a lone surrogate gets 422 without its text echoed (FastAPI's own 422 would echo it, and fail to encode it:
    a 500)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        needed = needed_scopes(self)

        async def keyed(request: Request) -> Response:
            caller = await app_state(request).callers.caller(request.headers.get("x-api-key"))
            if (refused := refusal(caller, needed)) is not None:
                return JSONResponse({"detail": refused[1]}, status_code=refused[0])
            request.state.caller = caller  # the route's scoped() dependency gives it on, not looked up again
            try:
                body = await request.body()  # kept on the request: the handler reads it again from memory
            except Exception:  # cut short by BodyLimit, or the client went away: the handler's answer stands
                body = b""
            if (loc := unpaired_surrogate(body)) is not None:
                return JSONResponse({"detail": [{"loc": loc, "msg": NOT_UNICODE, "type": "value_error"}]}, 422)
            response: Response = await handler(request)
            return response

        return keyed
