"""Documented answers, so a client (and Schemathesis) knows every status and body a route can give."""

from typing import Annotated, Any

from fastapi import Path as PathParam

PROBLEM = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
LeadId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the lead's id")]
Answers = dict[int | str, dict[str, Any]]


def json_answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema or PROBLEM}}}


def html_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def form_body(properties: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads an HTML form itself."""
    schema = {"type": "object", "properties": properties}
    return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}}


TOO_LARGE: Answers = {
    413: json_answer("the body is larger than LEADLOOP_MAX_BODY_BYTES; refused before it was read, nothing changed")
}
RATE_LIMITED: Answers = {
    429: {
        **json_answer("too many requests from this address (LEADLOOP_RATE_LIMIT_PER_MINUTE); nothing was recorded"),
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    }
}
NEEDS_KEY: Answers = {401: json_answer("missing or wrong X-API-Key; nothing changed")}


def needs_scope(scope: str, also: str = "") -> Answers:
    """The 403 of a keyed route: its key lacks `scope` (`also`: the route's other reason for a 403)."""
    return {403: json_answer(f"{also}the key lacks the '{scope}' scope (the answer names both); nothing changed")}


NOT_JSON: Answers = {400: json_answer("the body could not be read (not UTF-8 JSON); nothing changed")}
VALIDATION = {
    "type": "object",
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"loc": {"type": "array"}, "msg": {"type": "string"}, "type": {"type": "string"}},
                "required": ["loc", "msg", "type"],
            },
        }
    },
    "required": ["detail"],
}
INVALID: Answers = {422: json_answer("invalid fields; nothing changed", VALIDATION)}
