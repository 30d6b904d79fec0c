"""The route class of the keyed routes: the API key checked before a CRM's body is read or validated."""

import json
import re
from collections.abc import Callable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from leadloop.domain.text import LONE_SURROGATE
from starter.http.deps import app_state
from starter.http.keys import key_ok

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


class KeyedRoute(APIRoute):
    """A route for CRMs and integrations: the API key is checked before the body is parsed or validated (a
    stranger's request gets 401 whatever its body), then a JSON body with a lone surrogate gets 422 without
    its text echoed (FastAPI's own 422 would echo it, and fail to encode it: a 500)."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            accepted = [k.get_secret_value() for k in app_state(request).settings.api_keys]
            if not key_ok(request.headers.get("x-api-key"), accepted):
                return JSONResponse({"detail": "missing or wrong X-API-Key"}, status_code=401)
            try:
                body = await request.body()  # kept on the request: the handler reads it again from memory
            except Exception:  # cut short by BodyLimit, or the client went away: the handler's answer stands
                body = b""
            if (loc := unpaired_surrogate(body)) is not None:
                return JSONResponse({"detail": [{"loc": loc, "msg": NOT_UNICODE, "type": "value_error"}]}, 422)
            response: Response = await handler(request)
            return response

        return keyed
